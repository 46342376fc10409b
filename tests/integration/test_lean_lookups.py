"""Lookups answered by the lean ASGI path and by the full FastAPI app agree (a real
``headwater serve``, Kafka, Redis and worker).

The lean path takes a lookup only from a caller the Guard can accept without the catalog: a
key's first request goes to the full app, which verifies the key; its next ones are taken by
the lean path (``serving.lookup_route``). So a key's first and second identical requests
exercise the two paths, and both must equal brute force, give the same errors and be counted
in ``/metrics``.
"""

from __future__ import annotations

import re
import time

import httpx
import pytest

from headwater.sample_data import generate_transactions
from tests.integration.pipeline import Deployment
from tests.integration.test_access_control import bearer, make_key
from tests.integration.test_exactly_once import assert_online_equals_brute_force

pytestmark = pytest.mark.integration


def lookups_counted(url: str, key: str) -> dict[str, float]:
    """``headwater_http_requests_total`` of the lookup route, by status."""
    text = httpx.get(f"{url}/metrics", headers=bearer(key), timeout=10).text
    pattern = r'headwater_http_requests_total\{route="/v1/online-features",status="(\d+)"\} (\S+)'
    return {status: float(value) for status, value in re.findall(pattern, text)}


def test_both_paths_answer_alike_and_are_counted(deployment: Deployment) -> None:
    now = time.time_ns() // 1_000_000
    data = generate_transactions(end_ms=now - 60_000, users=30, days=2, seed=11)
    worker = deployment.start_worker()
    deployment.ingest(data, worker)
    reader = make_key(deployment, "--name", "reader", "--scope", "read")
    other = make_key(deployment, "--name", "other", "--scope", "read")
    url = deployment.start_api()
    before = lookups_counted(url, reader)

    # The key's first lookup (full app), then its second (lean path): both exact.
    assert_online_equals_brute_force(deployment, url, data, headers=bearer(reader))
    assert_online_equals_brute_force(deployment, url, data, headers=bearer(reader))

    fs = deployment.feature_set
    wrong = {"features": [f"{fs}:spend_1h", f"{fs}:nope"], "entities": {"user_id": ["u00001"]}}
    missing = {"features": [f"{fs}:spend_1h"], "entities": {"account": ["a"]}}
    with httpx.Client(base_url=url, timeout=30) as client:
        for body, status, field in (
            (wrong, 404, "features[1]"),
            (missing, 422, "entities.user_id"),
        ):
            first = client.post("/v1/online-features", json=body, headers=bearer(other))
            second = client.post("/v1/online-features", json=body, headers=bearer(other))
            assert first.status_code == second.status_code == status, (first.text, second.text)
            assert first.json() == second.json()
            assert [e["field"] for e in first.json()["errors"]] == [field], first.text
        # The shapes only FastAPI's model checks are still answered by it, field named.
        extra = client.post(
            "/v1/online-features",
            json={"entities": {"user_id": ["u1"]}, "limit": 3},
            headers=bearer(reader),
        )
        assert extra.status_code == 422, extra.text
        assert [e["field"] for e in extra.json()["errors"]] == ["limit"]
        anonymous = client.post("/v1/online-features", json=wrong)
        assert anonymous.status_code == 401, anonymous.text

    after = lookups_counted(url, reader)
    grew = {s: after.get(s, 0.0) - before.get(s, 0.0) for s in after}
    assert grew == {"200": 2.0, "404": 2.0, "422": 3.0, "401": 1.0}, grew
