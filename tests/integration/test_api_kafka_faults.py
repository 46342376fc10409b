"""Push while Kafka stops: a 503 writes nothing, and retries count every event exactly once.

A PRIVATE Kafka broker (the session's shared one is never touched), a real ``headwater
serve`` and ``headwater worker``. Clients push distinct events concurrently, each request
with its own ``Idempotency-Key``, while the broker is stopped. Every request is answered
202 (written) or 503 (aborted: none of its events will ever be read); after the broker is
back, each client retries its unanswered requests with the same key until they are accepted.
In the end the topic holds every event exactly once (read-committed), and the worker counted
each one once (``txn_count_total`` per user).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from headwater.sample_data import generate_transactions
from headwater.schemas.settings import Settings
from headwater.stack import start_kafka, stop_kafka
from tests.integration.pipeline import Deployment, make_deployment
from tests.integration.test_push import committed_messages

pytestmark = pytest.mark.integration

MINUTE = 60_000
CLIENTS = 4
REQUEST_EVENTS = 10


class _Client(threading.Thread):
    """Pushes its requests one after the other, each with its own Idempotency-Key, retrying
    any that was not accepted (with the same key) until it is, or until ``give_up`` is set."""

    def __init__(self, url: str, requests: list[list[dict[str, Any]]], name: str) -> None:
        super().__init__(name=name)
        self.url, self.requests = url, requests
        self.first_answers: Counter[int] = Counter()
        self.answers: Counter[int] = Counter()
        self.replayed = 0
        self.pending: set[int] = set(range(len(requests)))
        self.give_up = threading.Event()
        self.problems: list[str] = []

    def run(self) -> None:
        with httpx.Client(timeout=60) as client:
            tried: set[int] = set()
            while self.pending and not self.give_up.is_set():
                for i in sorted(self.pending):
                    key = f"{self.name}-{i}"
                    try:
                        response = client.post(
                            self.url,
                            json={"events": self.requests[i]},
                            headers={"Idempotency-Key": key},
                        )
                    except httpx.HTTPError as exc:  # the server itself should never fail
                        self.problems.append(f"{key}: {exc!r}")
                        continue
                    status = response.status_code
                    self.answers[status] += 1
                    if i not in tried:
                        self.first_answers[status] += 1
                        tried.add(i)
                    if status == 202:
                        assert response.json() == {"accepted": len(self.requests[i])}
                        self.replayed += response.headers.get("idempotent-replayed") == "true"
                        self.pending.discard(i)
                    elif status in (503, 409, 504):
                        assert "retry-after" in response.headers, response.text
                    else:
                        self.problems.append(f"{key}: {status} {response.text[:300]}")
                    time.sleep(0.1)


def test_kafka_stopped_during_pushes_loses_and_duplicates_nothing(
    tmp_path: Path, redis_url: str, private_kafka: Settings
) -> None:
    own = private_kafka
    now_ms = time.time_ns() // 1_000_000
    rows = generate_transactions(
        end_ms=now_ms // MINUTE * MINUTE, users=40, days=1, events_per_user_day=60, seed=14
    ).to_pylist()
    warm_up, rows = rows[:REQUEST_EVENTS], rows[REQUEST_EVENTS:]
    per_client = len(rows) // CLIENTS
    with make_deployment(tmp_path, own.kafka.bootstrap_servers, redis_url) as deployment:
        url = deployment.start_api()
        worker = deployment.start_worker()
        push = f"{url}/v1/push/{deployment.source}"
        # The worker is up and consuming (faust gives up if Kafka is gone while it starts).
        assert httpx.post(push, json={"events": warm_up}, timeout=60).status_code == 202
        _wait_counted(deployment, url, warm_up)
        clients = []
        for c in range(CLIENTS):
            mine = rows[c * per_client : (c + 1) * per_client]
            chunks = [mine[i : i + REQUEST_EVENTS] for i in range(0, len(mine), REQUEST_EVENTS)]
            clients.append(_Client(push, chunks, f"client{c}"))
        total = sum(len(r) for client in clients for r in client.requests)

        for client in clients:
            client.start()
        time.sleep(1.0)  # pushes are flowing
        stop_kafka(own)
        time.sleep(5.0)  # pushes keep coming while Kafka is down
        start_kafka(own)
        deadline = time.monotonic() + 180
        for client in clients:
            client.join(timeout=max(0.1, deadline - time.monotonic()))
        for client in clients:
            client.give_up.set()
            client.join(timeout=70)
        for client in clients:
            assert not client.is_alive(), f"{client.name} still has {client.pending}"
            assert not client.problems, client.problems
            assert not client.pending
        answers = sum((client.answers for client in clients), Counter())
        firsts = sum((client.first_answers for client in clients), Counter())
        assert answers[503] > 0, answers  # Kafka was really down during some pushes
        assert firsts[202] > 0, firsts  # and up during others
        assert set(answers) <= {202, 503, 409, 504}, answers

        # Exactly once on the topic: every event, none twice (read-committed, as workers read).
        values = [
            value for _, value in committed_messages(own.kafka.bootstrap_servers, deployment.topic)
        ]
        assert len(values) == total + len(warm_up), (len(values), total, answers)
        assert len(set(values)) == len(values)

        # A retry of an accepted request gets the first answer and produces nothing.
        first = clients[0]
        again = httpx.post(
            push, json={"events": first.requests[0]}, headers={"Idempotency-Key": "client0-0"}
        )
        assert again.status_code == 202 and again.headers["idempotent-replayed"] == "true"
        assert again.json() == {"accepted": len(first.requests[0])}
        other_body = httpx.post(
            push, json={"events": first.requests[1]}, headers={"Idempotency-Key": "client0-0"}
        )
        assert other_body.status_code == 422
        assert [e["field"] for e in other_body.json()["errors"]] == ["Idempotency-Key"]
        assert len(committed_messages(own.kafka.bootstrap_servers, deployment.topic)) == len(values)

        # Exactly once in the worker's counts (polled through the API: the test process's
        # Kafka admin client, created before the restart, may not answer group requests).
        everything = warm_up + rows[: per_client * CLIENTS]
        _wait_counted(deployment, url, everything)
        time.sleep(3)  # nothing more arrives: no event is counted twice later
        assert _counted(deployment, url, everything) == _expected(everything)
        assert worker.alive()


def _expected(rows: list[dict[str, Any]]) -> dict[str, int]:
    """``txn_count_total`` per user: the example feature set counts approved transactions."""
    users = {row["user_id"] for row in rows}
    approved = Counter(row["user_id"] for row in rows if row["status"] == "approved")
    return {user: approved[user] for user in users}


def _counted(deployment: Deployment, url: str, rows: list[dict[str, Any]]) -> dict[str, int]:
    users = sorted(_expected(rows))
    response = httpx.post(
        f"{url}/v1/online-features",
        json={
            "features": [f"{deployment.feature_set}:txn_count_total"],
            "entities": {"user_id": users},
        },
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return {r["entity"]["user_id"]: r["values"][0] for r in response.json()["results"]}


def _wait_counted(
    deployment: Deployment, url: str, rows: list[dict[str, Any]], timeout_s: float = 180
) -> None:
    deadline = time.monotonic() + timeout_s
    while (counted := _counted(deployment, url, rows)) != _expected(rows):
        assert time.monotonic() < deadline, (counted, _expected(rows))
        time.sleep(0.5)
