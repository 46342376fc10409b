"""``headwater demo``: the whole pipeline on the bundled sample data, end to end.

It starts (or reuses) Kafka and Redis, applies ``examples/features.yaml``, generates the
sample card transactions ending at the current minute, replays them into Kafka, runs a real
worker process until every event is in Redis and Delta, serves features over HTTP, builds a
point-in-time training set, and checks that online and offline agree.

It keeps to names of its own and never deletes or writes anything your definitions could
own (DESIGN §6): topics start with ``headwater-demo.`` (``kafka.topic_prefix``; a source's
default topic is ``raw.<name>`` and source names cannot hold ``-``), online keys with
``hw-demo:`` (``redis.key_prefix``) in Redis database 15, its home is ``<home>/demo`` (marked
as the demo's by a ``.headwater-demo`` file) and its consumer group ``headwater-demo``. It
resets exactly those on every run, then stops everything it started.
"""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa
from rich.console import Console
from rich.table import Table

from headwater.apply import apply_definitions
from headwater.client import HeadwaterClient
from headwater.connectors.catalog import Catalog, Scope, load_server_secret
from headwater.connectors.kafka import delete_topics
from headwater.connectors.offline_delta import DeltaOfflineStore
from headwater.connectors.redis_client import delete_keys, redis_client
from headwater.examples import EXAMPLES
from headwater.ingest import ingest_files
from headwater.processes import HeadwaterProcess, free_port, wait_caught_up, wait_http_ok
from headwater.sample_data import write_transactions
from headwater.schemas.errors import ConfigError
from headwater.schemas.loader import load_definitions
from headwater.schemas.settings import Settings, load_settings
from headwater.serving.features import resolve_features
from headwater.serving.historical import get_historical_features
from headwater.stack import ServiceStatus, start_kafka, start_redis, stop_kafka, stop_redis

__all__ = ["EXAMPLES", "run_demo"]

_DEMO_DB = 15
_TOPIC_PREFIX = "headwater-demo."
_KEY_PREFIX = "hw-demo"
_GROUP = "headwater-demo"
_MARKER = ".headwater-demo"
_MINUTE = 60_000


def _demo_settings(base: Settings, port: int) -> tuple[Settings, dict[str, str]]:
    parts = urlsplit(base.redis.url)
    redis_url = urlunsplit((parts.scheme, parts.netloc, f"/{_DEMO_DB}", "", ""))
    env = {
        "HEADWATER_HOME": str((base.home / "demo").resolve()),
        "HEADWATER_REDIS__URL": redis_url,
        "HEADWATER_REDIS__KEY_PREFIX": _KEY_PREFIX,
        "HEADWATER_WORKER__GROUP_ID": _GROUP,
        "HEADWATER_KAFKA__BOOTSTRAP_SERVERS": base.kafka.bootstrap_servers,
        "HEADWATER_KAFKA__TOPIC_PREFIX": _TOPIC_PREFIX,
        "HEADWATER_SERVING__PORT": str(port),
        # The demo's worker shares the machine with yours: no second metrics port.
        "HEADWATER_WORKER__METRICS_PORT": "0",
    }
    settings = load_settings(
        home=Path(env["HEADWATER_HOME"]),
        kafka={**base.kafka.model_dump(), "topic_prefix": _TOPIC_PREFIX},
        redis={**base.redis.model_dump(), "url": redis_url, "key_prefix": _KEY_PREFIX},
        worker={**base.worker.model_dump(), "group_id": _GROUP, "metrics_port": 0},
        serving={"host": "127.0.0.1", "port": port},
    )
    return settings, env


def _reset_own_state(settings: Settings) -> None:
    """Forget the previous run: the demo's home, topics and online keys, nothing else.

    Raises:
        ConfigError: ``<home>/demo`` exists but is not the demo's (no marker file in it).
    """
    home = settings.home
    if home.exists():
        if not (home / _MARKER).is_file():
            msg = (
                f"{home} exists and is not the demo's (no {_MARKER} file in it); the demo keeps "
                "its state there and will not delete yours: move it, or run the demo with another "
                "HEADWATER_HOME"
            )
            raise ConfigError(msg)
        shutil.rmtree(home)
    home.mkdir(parents=True)
    (home / _MARKER).write_text("state of `headwater demo`; deleted by its next run\n")
    sources = [s.with_topic_prefix(_TOPIC_PREFIX) for s in load_definitions(EXAMPLES).sources]
    topics = [t for s in sources for t in (s.topic, s.dlq_topic)]
    own = [t for t in topics if t.startswith(_TOPIC_PREFIX)]
    if own != topics:  # the bundled definitions name a topic of their own: never delete it
        msg = f"the demo's definitions name topics {sorted(set(topics) - set(own))} outside {_TOPIC_PREFIX}*"
        raise ConfigError(msg)
    delete_topics(settings.kafka, own)
    client = redis_client(settings.redis)
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{_KEY_PREFIX}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                delete_keys(client, batch)
                batch.clear()
        if batch:
            delete_keys(client, batch)
    finally:
        client.close()


def run_demo(
    console: Console | None = None, *, base: Settings | None = None, card_holders: int = 3_000
) -> None:
    """Run the demo; raises ``FeatureStoreError`` subclasses with a one-line cause.

    Args:
        base: the settings whose Kafka, Redis and home the demo uses (its own names inside
            them); default: this directory's settings.
        card_holders: users in the generated sample (about 119 transactions each).
    """
    console = console or Console(width=max(Console().width, 110))
    base = base or load_settings()
    started: list[ServiceStatus] = []
    processes: list[HeadwaterProcess] = []
    t0 = time.monotonic()
    try:
        console.rule("[bold]1. Kafka and Redis")
        for start in (start_kafka, start_redis):
            status = start(base)
            console.print(f"  {status.name}: {status.state} at {status.address}")
            if status.state == "started":
                started.append(status)
        settings, env = _demo_settings(base, free_port())

        console.rule("[bold]2. Definitions and sample data")
        _reset_own_state(settings)
        report = apply_definitions(settings, EXAMPLES)
        console.print(f"  applied {EXAMPLES / 'features.yaml'}: topics {report.topics_created}")
        topic = report.plan.definitions.source("transactions").topic
        end_ms = (time.time_ns() // 1_000_000) // _MINUTE * _MINUTE
        sample = settings.home / "sample" / "transactions.parquet"
        table = write_transactions(sample, end_ms=end_ms, users=card_holders)
        console.print(f"  generated {table.num_rows:,} card transactions over 30 days -> {sample}")

        console.rule("[bold]3. Stream worker")
        worker = HeadwaterProcess(
            ["worker"], env=env, log_file=settings.home / "logs" / "worker.log"
        )
        processes.append(worker)
        console.print(f"  worker pid {worker.pid} (log {worker.log_file})")
        produce_start = time.monotonic()
        ingest_files(settings, "transactions", [sample])
        produced_s = time.monotonic() - produce_start
        offline = DeltaOfflineStore(settings.offline_location)
        waited = wait_caught_up(
            settings.kafka,
            _GROUP,
            topic,
            worker,
            offline=(offline, Catalog(settings.catalog_url).definitions().feature_sets),
        )
        total_s = produced_s + waited
        console.print(
            f"  {table.num_rows:,} events produced in {produced_s:.1f} s; all in Redis and Delta "
            f"after {total_s:.1f} s ({table.num_rows / total_s:,.0f} events/s end to end)"
        )

        console.rule("[bold]4. Online features over HTTP")
        api = HeadwaterProcess(["serve"], env=env, log_file=settings.home / "logs" / "api.log")
        processes.append(api)
        url = f"http://127.0.0.1:{settings.serving.port}"
        wait_http_ok(f"{url}/healthz", api)
        recent = sorted(
            {
                u
                for u, e in zip(
                    table["user_id"].to_pylist(), table["event_time"].to_pylist(), strict=True
                )
                if e > end_ms - 3_600_000
            }
        )[:3]
        users = [*recent, "u99999"]
        # A read key of the demo's own catalog: the lookup goes through the API's key check
        # as a model's would (and still works where HEADWATER_SECURITY__REQUIRE_KEYS=true).
        key = (
            Catalog(settings.catalog_url)
            .key_store(load_server_secret(settings.security, settings.home))
            .create("demo", Scope.READ)
        )
        with HeadwaterClient(url, api_key=key.token) as client:
            response = client.get_online_features({"user_id": users}, feature_service="fraud_model")
        online = Table(title=f"POST /v1/online-features  (served_at {response['served_at']})")
        online.add_column("user_id")
        for ref in response["features"]:
            online.add_column(ref.split(":")[1], justify="right")
        online.add_column("status")
        for result in response["results"]:
            online.add_row(
                result["entity"]["user_id"],
                *[_fmt(v) for v in result["values"]],
                result["statuses"][0],
            )
        console.print(online)

        console.rule("[bold]5. Point-in-time training set from Delta")
        catalog = Catalog(settings.catalog_url)
        defs = catalog.definitions()
        resolved = resolve_features(defs, feature_service="fraud_model")
        # Label rows as a fraud model would have them: a moment after some past transactions
        # (so the short windows hold something), plus a user with no history at all.
        rng = random.Random(1)
        picks = [rng.randrange(table.num_rows // 2) for _ in range(6)]
        label_users = [table["user_id"][i].as_py() for i in picks] + ["u99999"]
        label_times = [
            table["event_time"][i].as_py() + rng.randrange(60_000, 1_800_000) for i in picks
        ]
        labels = pa.table(
            {
                "user_id": label_users,
                "event_timestamp": [*label_times, end_ms - 86_400_000],
                "label_is_fraud": [rng.random() < 0.2 for _ in label_users],
            }
        )
        training = get_historical_features(offline, resolved, labels)
        shown = Table(
            title=f"training set: {training.num_rows} label rows in, {training.num_rows} out"
        )
        for name in training.column_names:
            shown.add_column(name, justify="right")
        for row in training.to_pylist():
            row["event_timestamp"] = time.strftime(
                "%Y-%m-%d %H:%M", time.gmtime(row["event_timestamp"] / 1000)
            )
            shown.add_row(*[_fmt(v) for v in row.values()])
        console.print(shown)

        served_ms = _parse_served_at(response["served_at"])
        check = get_historical_features(
            offline,
            resolved,
            pa.table({"user_id": users, "event_timestamp": [served_ms] * len(users)}),
        )
        names = [ref.split(":")[1] for ref in response["features"]]
        offline_rows = [[row[n] for n in names] for row in check.to_pylist()]
        online_rows = [r["values"] for r in response["results"]]
        verdict = "[green]identical[/]" if offline_rows == online_rows else "[red]DIFFERENT[/]"
        console.print(f"  offline values at served_at vs the values served online: {verdict}")
        console.rule(f"[bold]done in {time.monotonic() - t0:.0f} s")
    finally:
        for process in processes:
            process.stop()
        for status in reversed(started):
            (stop_kafka if status.name == "kafka" else stop_redis)(base)


def _parse_served_at(text: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(text).timestamp() * 1000)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    return "null" if value is None else str(value)
