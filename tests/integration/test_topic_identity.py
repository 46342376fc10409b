"""Stored positions carry the topic's identity: offsets going backwards are never trusted.

A source topic deleted and created again (or a Kafka that lost its data, as ``docker compose
down`` without a volume does) numbers its events from 0 again. Before, Redis skipped them as
already applied and the Delta position filter dropped them: both stores lost them without a
word. Now the Kafka topic id is part of every stored position; a new id is a new epoch whose
events all count, while the old topic's events stay counted. A log that lost its end under
the same id stops the source with one CRITICAL line naming ``headwater reset-epoch``.
"""

from __future__ import annotations

import time
from collections import Counter

import pyarrow as pa
import pytest

from headwater.connectors.catalog import Catalog
from headwater.connectors.kafka import delete_topics, ensure_topics, log_ends
from headwater.connectors.offline_delta import DeltaOfflineStore
from headwater.connectors.topic_epochs import current_epoch, positions_prefix
from headwater.sample_data import generate_transactions
from tests.integration.pipeline import Deployment
from tests.integration.test_exactly_once import (
    FAST_FAILOVER,
    assert_online_equals_brute_force,
    log_text,
    start_worker,
)
from tests.reference import example_events_by_user as events_by_user

pytestmark = pytest.mark.integration

MINUTE = 60_000


def _data(seed: int, users: int = 10) -> pa.Table:
    return generate_transactions(
        end_ms=time.time_ns() // 1_000_000 // MINUTE * MINUTE,
        users=users,
        days=1,
        events_per_user_day=20,
        seed=seed,
    )


def _assert_history_holds_once(deployment: Deployment, data: pa.Table) -> None:
    fs = deployment.definitions().feature_set(deployment.feature_set)
    history = DeltaOfflineStore(deployment.settings.offline_root).history(fs)
    want = Counter(
        row["transaction_id"] for rows in events_by_user(data).values() for row, _, _ in rows
    )
    got = Counter(history.column("transaction_id").to_pylist())
    assert got == want, f"missing {sorted(want - got)[:5]}, extra {sorted(got - want)[:5]}"


def test_a_recreated_topic_is_a_new_epoch_and_none_of_its_events_is_skipped(
    deployment: Deployment,
) -> None:
    old, new = _data(seed=41), _data(seed=42)
    worker = start_worker(deployment, {**deployment.env, **FAST_FAILOVER}, "worker0")
    deployment.ingest(old, worker)
    worker.stop()
    before = current_epoch(deployment.settings.kafka, None, deployment.topic)

    # The topic is replaced: same name, new id, offsets from 0 again.
    delete_topics(deployment.settings.kafka, [deployment.topic])
    ensure_topics(deployment.settings.kafka, [deployment.topic])
    after = current_epoch(deployment.settings.kafka, None, deployment.topic)
    assert after.name != before.name

    worker = start_worker(deployment, {**deployment.env, **FAST_FAILOVER}, "worker1")
    deployment.ingest(new, worker)
    both = pa.concat_tables([old, new])
    url = deployment.start_api()
    assert_online_equals_brute_force(deployment, url, both)
    _assert_history_holds_once(deployment, both)
    assert "CRITICAL" not in log_text(worker)


def test_a_log_that_lost_its_end_stops_the_source_until_reset_epoch(
    deployment: Deployment,
) -> None:
    first, later = _data(seed=43), _data(seed=44)
    worker = start_worker(deployment, {**deployment.env, **FAST_FAILOVER}, "worker0")
    deployment.ingest(first, worker)
    worker.stop()

    # As if Kafka lost the end of its log under the same topic id: the stored positions are
    # past the end of every partition (100 events the log no longer has).
    settings = deployment.settings
    fs = deployment.definitions().feature_set(deployment.feature_set)
    epoch = current_epoch(settings.kafka, None, deployment.topic)
    ends = log_ends(settings.kafka, deployment.topic)
    DeltaOfflineStore(settings.offline_root).append(
        fs,
        pa.Table.from_pylist(
            [], schema=DeltaOfflineStore(settings.offline_root).history(fs).schema
        ),
        positions_prefix(settings.worker.group_id, epoch),
        {p: end + 99 for p, end in ends.items()},
    )

    worker = start_worker(deployment, {**deployment.env, **FAST_FAILOVER}, "worker1")
    deadline = time.monotonic() + 60
    while "reset-epoch" not in log_text(worker) and time.monotonic() < deadline:
        assert worker.alive(), worker.tail(40)
        time.sleep(0.5)
    critical = [line for line in log_text(worker).splitlines() if "[CRITICAL]" in line]
    assert len(critical) == 1, critical
    assert (
        deployment.topic in critical[0]
        and f"headwater reset-epoch {deployment.source}" in critical[0]
    )
    time.sleep(6)  # it stays stopped, quietly: no crash loop, no second line
    assert worker.alive()
    assert len([line for line in log_text(worker).splitlines() if "[CRITICAL]" in line]) == 1

    reset = deployment.cli("reset-epoch", deployment.source)
    assert reset.returncode == 0, reset.stdout + reset.stderr
    assert "new epoch" in reset.stdout
    recorded = Catalog(settings.catalog_url).topic_epoch(deployment.topic)
    assert recorded is not None and recorded[0] == epoch.name and recorded[1] == 1
    assert recorded[2] == {p: end - 1 for p, end in ends.items()}

    deployment.ingest(later, worker)  # new events, at offsets the old positions covered
    both = pa.concat_tables([first, later])
    url = deployment.start_api()
    assert_online_equals_brute_force(deployment, url, both)
    _assert_history_holds_once(deployment, both)
