"""Exactly-once under crashes: a worker killed with SIGKILL at random points, over and over,
and restarted each time, loses no event and counts none twice, online or offline (DESIGN §8).

Also: a Redis killed with SIGKILL and restarted keeps every state the worker wrote (it runs
as ``headwater up`` starts it, with an append-only file fsynced on every write), and a
broken store is not a silent failure. A worker that cannot reach Redis says so (the store,
its address, the error: one line per episode) and retries with backoff instead of exiting
into a crash loop, and the batch it could not finish is replayed by the next worker without
loss or duplication.

The yardstick is ``tests.reference.brute_force`` over the raw events, with the example
feature set's filter and transforms written out by hand in ``tests.reference.example_events_by_user``.

Kill -9 leaves the dead worker in the consumer group until its Kafka session expires, and a
restarted worker gets no partition before that (10 s by default here; faust's own is 60 s).
The workers here run with ``worker.session_timeout_seconds`` at 6 s, the broker's minimum,
so that a dozen crash/restart cycles fit in about a minute; it changes how soon a restart
resumes, not what it does.
"""

from __future__ import annotations

import os
import random
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis
from deltalake import DeltaTable

from headwater.connectors.kafka_groups import committed_offsets, consumer_lag
from headwater.connectors.offline_delta import DeltaOfflineStore, read_delta
from headwater.connectors.online_redis import RedisOnlineStore
from headwater.connectors.topic_epochs import current_epoch, positions_prefix
from headwater.ingest import Ingestor, ingest_files
from headwater.processes import HeadwaterProcess, free_port
from headwater.sample_data import generate_transactions
from headwater.schemas.settings import load_settings
from headwater.serving.features import resolve_features
from headwater.serving.historical import get_historical_features
from headwater.stack import process
from headwater.stack.redis import start_redis, stop_redis
from tests.integration.pipeline import Deployment
from tests.reference import brute_force
from tests.reference import example_events_by_user as _events_by_user

pytestmark = pytest.mark.integration

MINUTE = 60_000
DAY = 86_400_000
SEED = 20_261_126

FAST_FAILOVER = {"HEADWATER_WORKER__SESSION_TIMEOUT_SECONDS": "6"}
"""faust settings read from the environment: a dead member leaves the group after 6 s."""

APPLIED = re.compile(r": (\d+) events applied")


# Helpers shared with test_scale_out.py ------------------------------------------------------


def start_worker(deployment: Deployment, env: Mapping[str, str], name: str) -> HeadwaterProcess:
    """A ``headwater worker`` with ``env``, stopped by the fixture at the end of the test."""
    worker = HeadwaterProcess(
        ["worker"], env=dict(env), log_file=deployment.settings.home / f"{name}.log"
    )
    deployment.processes.append(worker)
    return worker


def log_text(worker: HeadwaterProcess) -> str:
    return worker.log_file.read_text(errors="replace")


def applied_batches(worker: HeadwaterProcess) -> list[int]:
    """Event counts of the batches ``worker`` logged as applied (replays included)."""
    return [int(n) for n in APPLIED.findall(log_text(worker))]


class SlowProducer(threading.Thread):
    """Produces ``table`` to the source's topic in chunks with pauses, in row order, through
    the same path as ``headwater ingest`` (``Ingestor.ingest_table``), so production overlaps crashes.
    ``finish`` drops the remaining pauses and waits until every row is acknowledged."""

    def __init__(
        self, deployment: Deployment, table: pa.Table, *, chunk: int, pause_s: float
    ) -> None:
        super().__init__(name="slow-producer", daemon=True)
        self._ingestor = Ingestor.for_source(
            deployment.settings, deployment.source, show_progress=False
        )
        self._table, self._chunk, self._pause = table, chunk, pause_s
        self._hurry = threading.Event()
        self.produced = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for start in range(0, self._table.num_rows, self._chunk):
                part = self._table.slice(start, self._chunk)
                self.produced += self._ingestor.ingest_table(part).produced
                self._hurry.wait(self._pause)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            self.error = exc

    def finish(self, timeout_s: float = 120) -> int:
        self._hurry.set()
        self.join(timeout_s)
        assert not self.is_alive(), "the producer thread did not finish"
        if self.error is not None:
            raise self.error
        assert self.produced == self._table.num_rows
        return self.produced


def assert_offline_exactly_once(deployment: Deployment, data: pa.Table) -> pa.Table:
    """Delta holds every approved event of ``data`` exactly once, at unique Kafka positions."""
    fs = deployment.definitions().feature_set(deployment.feature_set)
    history = DeltaOfflineStore(deployment.settings.offline_location).history(fs)
    by_user = _events_by_user(data)
    approved = [row for rows in by_user.values() for row, _, _ in rows]
    got = Counter(history.column("transaction_id").to_pylist())
    want = Counter(r["transaction_id"] for r in approved)
    duplicated = {t: n for t, n in got.items() if n > 1}
    assert not duplicated, (
        f"{len(duplicated)} events stored more than once, e.g. {list(duplicated.items())[:5]}"
    )
    assert got == want, f"missing {sorted(want - got)[:10]}, unexpected {sorted(got - want)[:10]}"
    positions = list(
        zip(
            history.column("_partition").to_pylist(),
            history.column("_offset").to_pylist(),
            strict=True,
        )
    )
    assert len(set(positions)) == len(positions) == len(approved)
    cents = dict(
        zip(
            history.column("transaction_id").to_pylist(),
            history.column("amount_cents").to_pylist(),
            strict=True,
        )
    )
    assert cents == {r["transaction_id"]: r["amount_cents"] for r in approved}
    return history


def assert_online_equals_brute_force(
    deployment: Deployment, url: str, data: pa.Table, headers: Mapping[str, str] | None = None
) -> int:
    """Every user's served values (and a never-seen user's) equal brute force at ``served_at``;
    returns ``served_at`` in epoch ms. ``headers``: the request's (an API key)."""
    fs = deployment.definitions().feature_set(deployment.feature_set)
    types = deployment.history_types()
    by_user = _events_by_user(data)
    users = sorted(set(data.column("user_id").to_pylist())) + ["nobody"]
    refs = [f"{fs.name}:{f.name}" for f in fs.features]
    response = httpx.post(
        f"{url}/v1/online-features",
        json={"features": refs, "entities": {"user_id": users}},
        headers=headers,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    t = round(datetime.fromisoformat(body["served_at"]).timestamp() * 1000)
    assert [r["entity"]["user_id"] for r in body["results"]] == users
    wrong = []
    for result in body["results"]:
        user = result["entity"]["user_id"]
        want, status = brute_force(fs, types, by_user.get(user, []), t)
        if result["values"] != want or result["statuses"] != [status] * len(refs):
            wrong.append((user, result["values"], result["statuses"][0], want, status))
    assert not wrong, (
        f"{len(wrong)} of {len(users)} users differ from brute force at {t}, e.g. {wrong[:3]}"
    )
    return t


def assert_point_in_time_equals_brute_force(
    deployment: Deployment, data: pa.Table, label_times: list[int]
) -> None:
    """Point-in-time retrieval for every user (and a never-seen one) at each label time."""
    defs = deployment.definitions()
    fs = defs.feature_set(deployment.feature_set)
    types = deployment.history_types()
    by_user = _events_by_user(data)
    users = sorted(set(data.column("user_id").to_pylist())) + ["nobody"]
    label_users = [u for _ in label_times for u in users]
    times = [t for t in label_times for _ in users]
    refs = [f"{fs.name}:{f.name}" for f in fs.features]
    offline = DeltaOfflineStore(deployment.settings.offline_location)
    training = get_historical_features(
        offline,
        resolve_features(defs, refs),
        pa.table({"user_id": label_users, "event_timestamp": times}),
    )
    assert training.column("user_id").to_pylist() == label_users
    wrong = []
    for i, row in enumerate(training.to_pylist()):
        want, _ = brute_force(fs, types, by_user.get(label_users[i], []), times[i])
        got = [row[f.name] for f in fs.features]
        if got != want:
            wrong.append((label_users[i], times[i], got, want))
    assert not wrong, (
        f"{len(wrong)} of {len(label_users)} label rows differ from brute force, e.g. {wrong[:3]}"
    )


# The crash test --------------------------------------------------------------------------


class _CrashState:
    """What each kill left behind, for the report (the end state is what the test asserts):
    per partition, the distance between Kafka's committed offset and the Delta history's
    position (a gap the restart must replay or catch up), and per entity whether Redis and
    Delta disagree (the kill fell between the writes of the two stores)."""

    def __init__(self, deployment: Deployment, users: list[str]) -> None:
        self.deployment = deployment
        self.users = users
        self.fs = deployment.definitions().feature_set(deployment.feature_set)
        self.offline = DeltaOfflineStore(deployment.settings.offline_location)
        self.online = RedisOnlineStore(deployment.settings.redis.url)
        self.kafka_behind_kills = 0  # stored events Kafka had not acknowledged: replayed
        self.delta_behind_kills = 0  # acknowledged events Delta lacks: caught up from Kafka
        self.between_stores_kills = 0

    def check(self) -> str:
        settings = self.deployment.settings
        acked = committed_offsets(settings.kafka, settings.worker.group_id, self.deployment.topic)
        prefix = positions_prefix(
            settings.worker.group_id, current_epoch(settings.kafka, None, self.deployment.topic)
        )
        written = self.offline.committed_offsets(self.fs, prefix, sorted(acked))
        kafka_behind = delta_behind = 0
        for p, next_offset in acked.items():
            gap = written.get(p, -1) - (next_offset - 1 if next_offset >= 0 else -1)
            kafka_behind += max(gap, 0)
            delta_behind += max(-gap, 0)
        self.kafka_behind_kills += kafka_behind > 0
        self.delta_behind_kills += delta_behind > 0

        table = read_delta(DeltaTable(self.offline.table_uri(self.fs)), ["user_id", "_offset"])
        in_delta: dict[str, int] = {}
        for user, offset in zip(
            table.column("user_id").to_pylist(), table.column("_offset").to_pylist(), strict=True
        ):
            in_delta[user] = max(in_delta.get(user, -1), offset)
        states = self.online.read(self.fs, [(u,) for u in self.users])
        # All of an entity's events travel on one partition.
        in_redis = {
            u: -1 if state is None else max(state.offsets.values(), default=-1)
            for u, state in zip(self.users, states, strict=True)
        }
        differ = [u for u in self.users if in_redis[u] != in_delta.get(u, -1)]
        self.between_stores_kills += bool(differ)
        return (
            f"Kafka behind stores by {kafka_behind}, Delta behind Kafka by {delta_behind}, "
            f"{len(differ)} entities differ between Redis and Delta"
        )

    def close(self) -> None:
        self.online.close()


def _wait_busy(deployment: Deployment, worker: HeadwaterProcess, timeout_s: float = 60) -> float:
    """Seconds until ``worker`` logs its first applied batch, or until it is plainly idle
    (ready for a second and the group has nothing left to consume): an idle kill proves
    little, but must not hang the test."""
    start = time.monotonic()
    ready_at = None
    settings = deployment.settings
    while not applied_batches(worker):
        assert worker.alive(), worker.tail(40)
        elapsed = time.monotonic() - start
        assert elapsed < timeout_s, f"worker not busy after {timeout_s:g} s:\n{worker.tail(40)}"
        if ready_at is None and "Worker ready" in log_text(worker):
            ready_at = elapsed
        idle_for = 0.0 if ready_at is None else elapsed - ready_at
        if (
            idle_for > 1
            and consumer_lag(settings.kafka, settings.worker.group_id, deployment.topic) == 0
        ):
            break
        time.sleep(0.05)
    return time.monotonic() - start


def test_kill_9_at_random_points_loses_nothing_and_counts_nothing_twice(
    deployment: Deployment, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    t0 = time.monotonic()
    # Small batches: many Delta commits and Redis writes per second, so kills land anywhere.
    env = {**deployment.env, **FAST_FAILOVER, "HEADWATER_WORKER__BATCH_MAX_EVENTS": "20"}
    now = time.time_ns() // 1_000_000
    data = generate_transactions(
        end_ms=now // MINUTE * MINUTE, users=60, days=2, events_per_user_day=50, seed=SEED % 1000
    )
    # 60 % produced before the first worker starts, the rest while workers are being killed.
    upfront = data.num_rows * 3 // 5
    first, second = data.slice(0, upfront), data.slice(upfront)
    pq.write_table(first, tmp_path / "first.parquet")
    produced = ingest_files(
        deployment.settings, deployment.source, [tmp_path / "first.parquet"], show_progress=False
    )
    assert produced == upfront

    kills, kills_while_producing, produce_from_kill = 11, 0, 3
    # Workers SIGKILLed, and of those, killed while applying batches (``_wait_busy`` lets an
    # idle worker be killed rather than hang, which proves little: most kills must be busy).
    sigkilled = killed_busy = 0
    # Paced to outlast the remaining kills (about 7 s each); ``finish`` sends what is left.
    producer = SlowProducer(deployment, second, chunk=50, pause_s=0.8)
    crashes = _CrashState(deployment, sorted(set(data.column("user_id").to_pylist())))
    timeline = []
    try:
        for i in range(kills):
            if i == produce_from_kill:
                producer.start()
            # Half the workers commit Delta only every 30 s, i.e. never before their kill,
            # while Kafka offsets are committed every second: the next worker must catch
            # Delta up from Kafka (the others leave at most 0.3 s of rows unwritten).
            flush_s = rng.choice(["0.3", "30"])
            life_env = {
                **env,
                "HEADWATER_WORKER__OFFLINE_FLUSH_SECONDS": flush_s,
                "HEADWATER_WORKER__OFFLINE_IDLE_FLUSH_SECONDS": flush_s,
            }
            worker = start_worker(deployment, life_env, f"worker{i}")
            # Kill soon after the worker starts applying batches: a random moment within its
            # first 1.2 s of work, which spans many batches and at most one offset commit.
            waited = _wait_busy(deployment, worker)
            delay = rng.uniform(0.0, 1.2)
            time.sleep(delay)
            assert worker.alive(), worker.tail(40)
            producing = producer.is_alive()
            batches_before_kill = len(applied_batches(worker))
            worker.kill()
            sigkilled += worker.proc.returncode == -signal.SIGKILL
            killed_busy += worker.proc.returncode == -signal.SIGKILL and batches_before_kill > 0
            kills_while_producing += producing
            state = crashes.check()
            timeline.append(
                f"kill {i}: busy {waited:.1f}s after start, killed {delay:.2f}s later, "
                f"{len(applied_batches(worker))} batches logged, Delta flush {flush_s}s, producing={producing}, {state}"
            )
        producer.finish()
        final = start_worker(deployment, env, "worker_final")
        deployment.wait_caught_up(final)
        assert final.alive()
    finally:
        crashes.close()
    crash_phase_s = time.monotonic() - t0
    assert sigkilled == kills, timeline
    assert killed_busy >= kills - 3, timeline
    assert kills_while_producing >= 3, timeline

    workers = [p for p in deployment.processes if p.log_file.name.startswith("worker")]
    logs = "\n".join(log_text(w) for w in workers)
    assert "CRITICAL" not in logs, [line for line in logs.splitlines() if "CRITICAL" in line][:5]
    applied = sum(sum(applied_batches(w)) for w in workers)
    catch_ups = logs.count("catching up partition")
    assert applied >= data.num_rows  # every event applied at least once, replays on top

    history = assert_offline_exactly_once(deployment, data)
    url = deployment.start_api()
    served_at = assert_online_equals_brute_force(deployment, url, data)
    end = now // MINUTE * MINUTE
    label_times = [
        end - 2 * DAY - MINUTE,
        end - 36 * 3_600_000 + 17,
        end - DAY,
        end - 3_600_000 - 1,
        end,
        served_at,
    ]
    assert_point_in_time_equals_brute_force(deployment, data, label_times)

    print(
        f"\n{kills} kills ({kills_while_producing} while producing); after {crashes.kafka_behind_kills} "
        f"the stores held events Kafka had not acknowledged, after {crashes.delta_behind_kills} Delta "
        f"lacked acknowledged events ({catch_ups} partition catch-ups), after "
        f"{crashes.between_stores_kills} Redis and Delta differed; "
        f"{applied} events applied for {data.num_rows} produced ({history.num_rows} approved); "
        f"crash phase {crash_phase_s:.1f}s, total {time.monotonic() - t0:.1f}s\n"
        + "\n".join(timeline)
    )


# A broken store -------------------------------------------------------------------------


def test_worker_that_cannot_reach_redis_retries_loudly_and_a_restart_loses_nothing(
    deployment: Deployment, tmp_path: Path
) -> None:
    closed_port = free_port()  # bound a moment ago and released: nobody listens there
    broken_url = f"redis://127.0.0.1:{closed_port}/0"
    data = generate_transactions(
        end_ms=time.time_ns() // 1_000_000 // MINUTE * MINUTE,
        users=8,
        days=1,
        events_per_user_day=10,
        seed=5,
    )
    pq.write_table(data, tmp_path / "data.parquet")

    broken = start_worker(
        deployment,
        {**deployment.env, **FAST_FAILOVER, "HEADWATER_REDIS__URL": broken_url},
        "worker_broken",
    )
    ingest_files(
        deployment.settings, deployment.source, [tmp_path / "data.parquet"], show_progress=False
    )
    # An outage is waited out, not turned into a crash loop: the worker stays up, names the
    # store, its address and the error once, and retries with backoff.
    deadline = time.monotonic() + 60
    while "is failing" not in log_text(broken) and time.monotonic() < deadline:
        assert broken.alive(), f"the worker exited without Redis:\n{broken.tail(40)}"
        time.sleep(0.5)
    time.sleep(3)
    assert broken.alive(), broken.tail(40)
    text = log_text(broken)
    failing = [line for line in text.splitlines() if "is failing" in line]
    assert failing, f"no line names the failing store:\n{text[-3000:]}"
    assert "redis is failing" in failing[0] and broken_url in failing[0], failing[0]
    assert len(failing) == 1, failing  # one line per episode, not one per retry
    assert "CRITICAL" not in text
    broken.stop()

    # Part of the batch may have reached Delta before Redis failed, but nothing was
    # acknowledged: a healthy worker replays it and neither store ends up short or doubled.
    healthy = start_worker(deployment, {**deployment.env, **FAST_FAILOVER}, "worker_healthy")
    deployment.wait_caught_up(healthy)
    assert "CRITICAL" not in log_text(healthy)
    assert_offline_exactly_once(deployment, data)
    url = deployment.start_api()
    assert_online_equals_brute_force(deployment, url, data)


def test_redis_killed_and_restarted_keeps_every_state_the_worker_wrote(
    deployment: Deployment, tmp_path: Path
) -> None:
    """The worker commits Kafka offsets once states are in Redis, and nothing replays events
    into a state Redis lost: an online store that came back empty, or without its last
    writes, would serve short windows with no error anywhere."""
    # A private redis-server, started as `headwater up` starts one: the shared one stays up.
    own = load_settings(
        home=tmp_path / "redis", redis={"url": f"redis://127.0.0.1:{free_port()}/0"}
    )
    first = start_redis(own)
    assert first.state == "started" and first.pid is not None
    deployment.env["HEADWATER_REDIS__URL"] = own.redis.url
    try:
        data = generate_transactions(
            end_ms=time.time_ns() // 1_000_000 // MINUTE * MINUTE,
            users=12,
            days=2,
            events_per_user_day=20,
            seed=7,
        )
        half = data.num_rows // 2
        assert RedisOnlineStore(own.redis.url).durability_problem() is None
        worker = start_worker(deployment, {**deployment.env, **FAST_FAILOVER}, "worker0")
        deployment.ingest(data.slice(0, half), worker)  # all of it in Redis, offsets committed

        pid = first.pid
        os.kill(pid, signal.SIGKILL)
        assert process.wait_until(lambda: not process.pid_alive(pid), 10.0)
        again = start_redis(own)
        assert again.state == "started" and again.pid != first.pid

        # A worker that wrote to the dead server retries until it is back.
        assert worker.alive(), worker.tail(40)
        deployment.ingest(data.slice(half), worker)
        url = deployment.start_api()
        assert_online_equals_brute_force(deployment, url, data)
        assert_offline_exactly_once(deployment, data)
    finally:
        stop_redis(own)


def test_a_redis_that_would_lose_acknowledged_states_is_named(tmp_path: Path) -> None:
    own = load_settings(
        home=tmp_path / "redis", redis={"url": f"redis://127.0.0.1:{free_port()}/0"}
    )
    start_redis(own)
    store = RedisOnlineStore(own.redis.url)
    try:
        assert store.durability_problem() is None  # as `headwater up` starts it
        client = redis.Redis.from_url(own.redis.url)
        client.config_set("appendfsync", "everysec")
        problem = store.durability_problem()
        assert problem is not None
        assert "appendfsync=everysec" in problem and "--appendfsync always" in problem
        client.config_set("appendonly", "no")
        assert "appendonly=no" in (store.durability_problem() or "")
        client.close()
    finally:
        store.close()
        stop_redis(own)
