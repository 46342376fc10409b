"""A private Headwater deployment per test: own topic, feature set, consumer group and home.

Everything runs for real: definitions are applied to the session's Kafka broker, a worker
runs as a separate ``python -m headwater worker`` process, and the API (when asked for) as
``python -m headwater serve``. Names carry a random suffix so tests never see each other's
data on the shared broker and Redis.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from headwater.apply import apply_definitions
from headwater.connectors.catalog import Catalog
from headwater.connectors.offline_delta import DeltaOfflineStore
from headwater.examples import EXAMPLES, write_example_definitions
from headwater.ingest import ingest_files
from headwater.processes import HeadwaterProcess, free_port, wait_caught_up, wait_http_ok
from headwater.schemas.definitions import Definitions
from headwater.schemas.settings import Settings, load_settings
from headwater.schemas.tiles import FeatureSetPlan

__all__ = ["EXAMPLES", "Deployment", "deployment", "make_deployment"]


@dataclass
class Deployment:
    """One isolated deployment; ``start_worker``/``start_api`` launch real processes."""

    settings: Settings
    env: dict[str, str]
    suffix: str
    defs_dir: Path
    processes: list[HeadwaterProcess] = field(default_factory=list)

    @property
    def topic(self) -> str:
        return f"raw.transactions_{self.suffix}"

    @property
    def feature_set(self) -> str:
        return f"user_spend_{self.suffix}"

    @property
    def source(self) -> str:
        return f"transactions_{self.suffix}"

    def definitions(self) -> Definitions:
        return Catalog(self.settings.catalog_url).definitions()

    def start_worker(self) -> HeadwaterProcess:
        n = sum(1 for p in self.processes if "worker" in p.log_file.name)
        worker = HeadwaterProcess(
            ["worker"], env=self.env, log_file=self.settings.home / f"worker{n}.log"
        )
        self.processes.append(worker)
        return worker

    def start_api(self) -> str:
        api = HeadwaterProcess(["serve"], env=self.env, log_file=self.settings.home / "api.log")
        self.processes.append(api)
        url = f"http://127.0.0.1:{self.settings.serving.port}"
        wait_http_ok(f"{url}/healthz", api)
        return url

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``headwater ARGS`` as a user runs it in this deployment (output kept on wide lines)."""
        return subprocess.run(
            [sys.executable, "-m", "headwater", *args],
            env={**os.environ, **self.env, "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def history_types(self) -> dict[str, str]:
        """Field types of the feature set's history (source fields and transform outputs)."""
        defs = self.definitions()
        fs = defs.feature_set(self.feature_set)
        return FeatureSetPlan(fs, defs.source(fs.source)).history_types

    def ingest(self, data: pa.Table, worker: HeadwaterProcess) -> None:
        """``data`` through ``headwater ingest`` into the source topic, until ``worker`` has it
        all in Redis and Delta."""
        path = self.settings.home / f"ingest-{uuid.uuid4().hex[:8]}.parquet"
        pq.write_table(data, path)
        ingest_files(self.settings, self.source, [path], show_progress=False)
        self.wait_caught_up(worker)

    def wait_caught_up(self, worker: HeadwaterProcess, timeout_s: float = 120) -> None:
        """Until every event on the topic is in Redis and in every active version's Delta table."""
        sets = [fs for fs in self.definitions().feature_sets if fs.source == self.source]
        offline = DeltaOfflineStore(self.settings.offline_location)
        wait_caught_up(
            self.settings.kafka,
            self.settings.worker.group_id,
            self.topic,
            worker,
            timeout_s,
            offline=(offline, sets),
            catalog=Catalog(self.settings.catalog_url),
        )


def _section_env(section: str, values: Mapping[str, object]) -> dict[str, str]:
    """``HEADWATER_<SECTION>__<NAME>`` variables for settings given to ``make_deployment``
    (secrets in plain text: the environment is how child processes get them, never argv)."""
    env = {}
    for name, value in values.items():
        shown = value.get_secret_value() if hasattr(value, "get_secret_value") else value
        # Lists (redis.cluster_nodes) are read from the environment as JSON.
        text = json.dumps(shown) if isinstance(shown, list | dict) else str(shown)
        env[f"HEADWATER_{section.upper()}__{name.upper()}"] = text
    return env


def _offline_env(offline: Mapping[str, object]) -> dict[str, str]:
    """``HEADWATER_OFFLINE__*`` variables, the option maps one variable per option."""
    env = {}
    for name, value in offline.items():
        if isinstance(value, Mapping):
            for key, item in value.items():
                shown = item.get_secret_value() if hasattr(item, "get_secret_value") else item
                env[f"HEADWATER_OFFLINE__{name.upper()}__{key.upper()}"] = str(shown)
        else:
            env[f"HEADWATER_OFFLINE__{name.upper()}"] = str(value)
    return env


@contextmanager
def make_deployment(
    tmp_path: Path,
    kafka_bootstrap: str,
    redis_url: str,
    *,
    kafka: Mapping[str, object] | None = None,
    redis: Mapping[str, object] | None = None,
    offline: Mapping[str, object] | None = None,
) -> Iterator[Deployment]:
    """A deployment on the given Kafka and Redis; removes its topics and keys at the end.

    ``kafka``, ``redis`` and ``offline`` add settings of those sections (credentials, TLS,
    object storage), for the test's own clients and, through the environment, for its worker
    and API processes.
    """
    suffix = uuid.uuid4().hex[:8]
    port = free_port()
    env = {
        **_section_env("kafka", kafka or {}),
        **_section_env("redis", redis or {}),
        **_offline_env(offline or {}),
        "HEADWATER_HOME": str(tmp_path / "home"),
        "HEADWATER_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "HEADWATER_REDIS__URL": redis_url,
        "HEADWATER_WORKER__GROUP_ID": f"test-{suffix}",
        "HEADWATER_WORKER__BATCH_MAX_EVENTS": "500",
        "HEADWATER_WORKER__BATCH_MAX_SECONDS": "0.2",
        "HEADWATER_WORKER__RELOAD_CHECK_SECONDS": "1",
        "HEADWATER_WORKER__METRICS_PORT": "0",
        "HEADWATER_WORKER__OFFLINE_FLUSH_SECONDS": "0.3",
        "HEADWATER_SERVING__PORT": str(port),
    }
    settings = load_settings(
        home=tmp_path / "home",
        kafka={**(kafka or {}), "bootstrap_servers": kafka_bootstrap},
        redis={**(redis or {}), "url": redis_url},
        worker={
            "group_id": f"test-{suffix}",
            "batch_max_events": 500,
            "batch_max_seconds": 0.2,
            "reload_check_seconds": 1,
        },
        serving={"port": port},
        **({"offline": dict(offline)} if offline else {}),
    )
    write_example_definitions(tmp_path / "defs", suffix)
    apply_definitions(settings, tmp_path / "defs")
    dep = Deployment(settings=settings, env=env, suffix=suffix, defs_dir=tmp_path / "defs")
    try:
        yield dep
    finally:
        for process in dep.processes:
            process.stop()
        # Every topic and key named with this deployment's random suffix is its own: the
        # example's, and those of sources, sets and DLQ ledgers a test added beside it.
        from headwater.connectors.kafka import admin_client, delete_topics

        admin = admin_client(settings.kafka)
        own = [t for t in admin.list_topics(timeout=10).topics if f"_{suffix}" in t]
        delete_topics(settings.kafka, own)
        from headwater.connectors.redis_client import delete_keys, redis_client

        client = redis_client(settings.redis)
        keys = list(client.scan_iter(match=f"hw:*_{suffix}*", count=1000))
        delete_keys(client, keys)  # a Redis Cluster's keys span slots
        client.close()


@pytest.fixture
def deployment(tmp_path: Path, kafka_bootstrap: str, redis_url: str) -> Iterator[Deployment]:
    with make_deployment(tmp_path, kafka_bootstrap, redis_url) as dep:
        yield dep


def dump(obj: object) -> str:
    return json.dumps(obj, indent=1, default=str)
