"""Scale-out: worker processes in one consumer group share a source's partitions and take
over each other's when one leaves, gracefully or by crashing, while events keep arriving;
in the end the online and offline values equal brute force, with nothing lost or doubled
(DESIGN §7, §8).

The second test provokes the handover race this suite once found (rows waiting for their
Delta commit while partitions change hands were written twice; fixed by committing them in
``on_partitions_revoked``): now every Kafka position must be in Delta exactly once.

Workers run with ``worker.session_timeout_seconds`` at 6 s (see test_exactly_once.py) so a
crashed worker's partitions move on within seconds.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from headwater.connectors.kafka import admin_client
from headwater.connectors.kafka_groups import consumer_lag
from headwater.ingest import ingest_files
from headwater.processes import HeadwaterProcess
from headwater.sample_data import generate_transactions
from tests.integration import test_exactly_once as exactly_once
from tests.integration.pipeline import Deployment

pytestmark = pytest.mark.integration

MINUTE = 60_000
DAY = 86_400_000
ALL = {0, 1, 2, 3}


def _partition_set(text: str) -> set[int]:
    """faust's ``{0-1, 3}`` notation as a set."""
    out: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        low, _, high = part.partition("-")
        out.update(range(int(low), int(high or low) + 1))
    return out


def assignment(worker: HeadwaterProcess, topic: str) -> set[int]:
    """The partitions of ``topic`` the worker was last assigned, from its log."""
    text = exactly_once.log_text(worker)
    marker = "Setting newly assigned partitions"
    at = text.rfind(marker)
    if at < 0:
        return set()
    tail = text[at + len(marker) : at + len(marker) + 2000]
    end = tail.find(" for group ")
    block = tail if end < 0 else tail[:end]
    match = re.search(rf"\|\s*{re.escape(topic)}\s*\|\s*\{{([^}}]*)\}}", block)
    return _partition_set(match.group(1)) if match else set()


def _wait(predicate, what: str, workers: list[HeadwaterProcess], timeout_s: float = 60) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while not predicate():
        for w in workers:
            assert w.alive(), (
                f"{w.log_file.name} exited with {w.proc.returncode} waiting for {what}:\n{w.tail(40)}"
            )
        if time.monotonic() - start > timeout_s:
            tails = "\n".join(f"--- {w.log_file.name}\n{w.tail(25)}" for w in workers)
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}\n{tails}")
        time.sleep(0.1)
    return time.monotonic() - start


def _applied(worker: HeadwaterProcess) -> int:
    return sum(exactly_once.applied_batches(worker))


def test_workers_share_partitions_and_take_over_after_stop_and_crash(
    deployment: Deployment,
) -> None:
    t0 = time.monotonic()
    topic = deployment.topic
    env = {
        **deployment.env,
        **exactly_once.FAST_FAILOVER,
        "HEADWATER_WORKER__BATCH_MAX_EVENTS": "20",
    }
    now = time.time_ns() // 1_000_000
    end = now // MINUTE * MINUTE
    data = generate_transactions(end_ms=end, users=60, days=2, events_per_user_day=30, seed=23)
    # About 30 s of steady production: it outlasts both departures below.
    producer = exactly_once.SlowProducer(deployment, data, chunk=50, pause_s=0.35)

    a = exactly_once.start_worker(deployment, env, "worker_a")
    b = exactly_once.start_worker(deployment, env, "worker_b")
    producer.start()
    phases = []

    # Both are members, split the four partitions between them, and both apply events.
    def shared() -> bool:
        sa, sb = assignment(a, topic), assignment(b, topic)
        return bool(sa) and bool(sb) and not (sa & sb) and (sa | sb) == ALL

    waited = _wait(shared, "a and b to split the partitions", [a, b])
    split = (assignment(a, topic), assignment(b, topic))
    base_a, base_b = _applied(a), _applied(b)
    _wait(
        lambda: _applied(a) >= base_a + 100 and _applied(b) >= base_b + 100 and shared(),
        "a and b to both apply events",
        [a, b],
    )
    phases.append(f"shared after {waited:.1f}s: a={split[0]} b={split[1]}")

    # Phase 1: a leaves gracefully while events arrive; b takes over all four partitions.
    assert producer.is_alive(), "production ended before the graceful stop; slow the producer down"
    assert a.stop() == 0, a.tail(40)
    before = _applied(b)
    waited = _wait(lambda: assignment(b, topic) == ALL, "b to take over a's partitions", [b])
    _wait(lambda: _applied(b) > before, "b to apply events after the takeover", [b])
    phases.append(f"b took over all partitions {waited:.1f}s after a stopped")

    # A replacement joins and gets a share; then b crashes (kill -9) while events arrive.
    c = exactly_once.start_worker(deployment, env, "worker_c")

    def rebalanced() -> bool:
        sb, sc = assignment(b, topic), assignment(c, topic)
        return bool(sb) and bool(sc) and not (sb & sc) and (sb | sc) == ALL

    waited = _wait(rebalanced, "c to share the partitions with b", [b, c])
    before_b, before_c = _applied(b), _applied(c)
    _wait(
        lambda: _applied(b) >= before_b + 100 and _applied(c) >= before_c + 100 and rebalanced(),
        "b and c to both apply events",
        [b, c],
    )
    phases.append(f"c joined in {waited:.1f}s: b={assignment(b, topic)} c={assignment(c, topic)}")
    assert producer.is_alive(), "production ended before the crash; slow the producer down"
    b.kill()
    waited = _wait(
        lambda: assignment(c, topic) == ALL, "c to take over the crashed b's partitions", [c]
    )
    phases.append(f"c took over all partitions {waited:.1f}s after b was killed")

    producer.finish()
    deployment.wait_caught_up(c)
    assert c.alive()

    workers = [a, b, c]
    for w in workers:
        text = exactly_once.log_text(w)
        assert "CRITICAL" not in text, (
            w.log_file.name,
            [line for line in text.splitlines() if "CRITICAL" in line][:5],
        )
    counts = {w.log_file.stem: _applied(w) for w in workers}
    assert all(counts.values()), counts  # sharing, not just failover
    assert sum(counts.values()) >= data.num_rows, counts

    url = deployment.start_api()
    served_at = exactly_once.assert_online_equals_brute_force(deployment, url, data)
    history = exactly_once.assert_offline_exactly_once(deployment, data)
    label_times = [end - 2 * DAY + 5 * MINUTE, end - DAY + 1, end - 3_600_000, end, served_at]
    exactly_once.assert_point_in_time_equals_brute_force(deployment, data, label_times)
    print(
        f"\n{data.num_rows} events ({history.num_rows} approved), applied per worker {counts}; "
        f"total {time.monotonic() - t0:.1f}s\n" + "\n".join(phases)
    )


def test_partitions_handed_over_while_rows_wait_for_delta_are_written_once(
    deployment: Deployment, tmp_path: Path
) -> None:
    """A worker holding many rows not yet committed to Delta hands partitions to a newcomer,
    twice (a to b; then b leaves gracefully, and a to c): the rows end up in Delta once,
    committed by one of them.

    Rows must be written once. The
    window is tens of milliseconds wide (the old owner's flush against the newcomer's first
    batch), so a handover trips it only part of the time; with these settings, most runs."""
    settings = deployment.settings
    topic = deployment.topic
    # The old owners keep everything they consume in their Delta buffers (30 s flush); the
    # newcomers take small, quick batches so that they read the Delta position of their new
    # partitions right away.
    slow_flush = {
        **deployment.env,
        **exactly_once.FAST_FAILOVER,
        "HEADWATER_WORKER__OFFLINE_FLUSH_SECONDS": "30",
        "HEADWATER_WORKER__OFFLINE_IDLE_FLUSH_SECONDS": "30",
        "HEADWATER_WORKER__BATCH_MAX_EVENTS": "5000",
    }
    quick = {
        **slow_flush,
        "HEADWATER_WORKER__BATCH_MAX_EVENTS": "20",
        "HEADWATER_WORKER__BATCH_MAX_SECONDS": "0.01",
    }
    end = time.time_ns() // 1_000_000 // MINUTE * MINUTE
    data = generate_transactions(end_ms=end, users=300, days=2, events_per_user_day=50, seed=31)
    n = data.num_rows
    upfront, trickle1, burst, trickle2 = (
        data.slice(0, n - 14_000),
        data.slice(n - 14_000, 2000),
        data.slice(n - 12_000, 10_000),
        data.slice(n - 2000),
    )

    def produce_now(part: pa.Table, name: str) -> None:
        pq.write_table(part, tmp_path / f"{name}.parquet")
        ingest_files(
            settings, deployment.source, [tmp_path / f"{name}.parquet"], show_progress=False
        )

    def no_lag() -> bool:
        return consumer_lag(settings.kafka, settings.worker.group_id, topic) == 0

    def handover(
        newcomer_name: str, trickle: pa.Table, members: list[HeadwaterProcess]
    ) -> HeadwaterProcess:
        producer = exactly_once.SlowProducer(deployment, trickle, chunk=10, pause_s=0.05)
        producer.start()
        newcomer = exactly_once.start_worker(deployment, quick, newcomer_name)
        _wait(
            lambda: bool(assignment(newcomer, topic)) and _applied(newcomer) > 0,
            f"{newcomer_name} to apply events",
            [*members, newcomer],
        )
        producer.finish()
        return newcomer

    produce_now(upfront, "upfront")
    a = exactly_once.start_worker(deployment, slow_flush, "worker_a")
    _wait(no_lag, "a to consume the upfront events", [a])
    b = handover("worker_b", trickle1, [a])
    assert b.stop() == 0, b.tail(40)  # b commits what it buffered before it leaves
    _wait(lambda: assignment(a, topic) == ALL, "a to take b's partitions back", [a])
    produce_now(burst, "burst")
    _wait(no_lag, "a to consume the burst", [a])
    c = handover("worker_c", trickle2, [a])
    for w in (a, c):
        assert w.stop() == 0, w.tail(40)  # each commits what it buffered

    final = exactly_once.start_worker(deployment, deployment.env, "worker_final")
    deployment.wait_caught_up(final)
    exactly_once.assert_offline_exactly_once(deployment, data)


def test_one_command_runs_several_worker_processes_in_the_group(
    deployment: Deployment, tmp_path: Path
) -> None:
    """`headwater worker --processes 2`: both join the group and split the partitions, the
    result equals brute force, a crashed child takes the command down loudly, and stopping
    the command stops every child."""
    now = time.time_ns() // 1_000_000
    data = generate_transactions(
        end_ms=now // MINUTE * MINUTE, users=30, days=2, events_per_user_day=15, seed=17
    )
    pq.write_table(data, tmp_path / "d.parquet")
    pool = HeadwaterProcess(
        ["worker", "--processes", "2"], env=deployment.env, log_file=tmp_path / "pool.log"
    )
    deployment.processes.append(pool)
    admin = admin_client(deployment.settings.kafka)
    group = deployment.settings.worker.group_id
    deadline = time.monotonic() + 90
    members: list[Any] = []
    while time.monotonic() < deadline:
        described = admin.describe_consumer_groups([group])[group].result(timeout=10)
        members = [m for m in described.members if m.assignment.topic_partitions]
        if len(members) == 2:
            break
        time.sleep(0.5)
    # Both processes are in the group and split the 4 partitions.
    assert sorted(len(m.assignment.topic_partitions) for m in members) == [2, 2], members
    ingest_files(
        deployment.settings, deployment.source, [tmp_path / "d.parquet"], show_progress=False
    )
    deployment.wait_caught_up(pool)
    url = deployment.start_api()
    exactly_once.assert_online_equals_brute_force(deployment, url, data)
    exactly_once.assert_offline_exactly_once(deployment, data)

    children = [
        int(p) for p in Path(f"/proc/{pool.pid}/task/{pool.pid}/children").read_text().split()
    ]
    assert len(children) == 2
    os.kill(children[0], signal.SIGKILL)  # a crash of one child ...
    deadline = time.monotonic() + 30
    while pool.alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not pool.alive()  # ... takes the command down, with the others stopped
    assert pool.proc.returncode not in (0, None)
    assert "exited with code" in (tmp_path / "pool.log").read_text(errors="replace")
    assert (
        not Path(f"/proc/{children[1]}").exists()
        or "zombie" in Path(f"/proc/{children[1]}/status").read_text()
    )
