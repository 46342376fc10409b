"""Request-time features end to end on a real deployment (Kafka, Redis, worker, ``headwater
serve``): applied as an additive change, served over HTTP by the lean path and the full
FastAPI app, through the SDK and the HTTP client, and computed per label row in a saved
training set that rebuilds equal; the same row gives the same value online and offline."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
import yaml

from headwater import FeatureStore
from headwater.apply import apply_definitions
from headwater.client import ApiError, HeadwaterClient
from headwater.serving.errors import BadRequestError
from tests.integration.pipeline import Deployment
from tests.integration.test_access_control import bearer, make_key

pytestmark = pytest.mark.integration

# u1: two approved events (10 and 30) and a declined one the filter drops; u2: one event
# of 0, so its mean is 0 and the ratio divides by nullif(0, 0), null; u3 has no event.
EVENTS = [("u1", 10.0, "approved"), ("u1", 30.0, "approved"), ("u1", 999.0, "declined")]
EVENTS += [("u2", 0.0, "approved")]


def _add_request_features(deployment: Deployment) -> None:
    path = deployment.defs_dir / "features.yaml"
    doc = yaml.safe_load(path.read_text())
    (fs,) = doc["feature_sets"]
    fs["request_schema"] = {"amount": "double", "channel": "string"}
    fs["request_features"] = {
        "amount_vs_avg": "request.amount / nullif(avg_amount_7d, 0)",
        "web_and_big": f"request.channel == 'web' and request.amount > {fs['name']}:max_amount_1d",
        "same_merchant": "request.channel == last_merchant",
    }
    for feature in fs["features"]:  # a pii feature: what reads it needs the pii grant
        if feature["name"] == "last_merchant":
            feature["tags"] = ["pii"]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    report = apply_definitions(deployment.settings, deployment.defs_dir)
    described = [item.describe() for item in report.plan.items if item.kind == "feature_set"]
    assert len(described) == 1 and described[0].startswith("update"), described
    assert (
        "new request feature(s) ['amount_vs_avg', 'web_and_big', 'same_merchant']" in described[0]
    )


def _events(now: int) -> pa.Table:
    rows = [
        {
            "transaction_id": f"t{i}",
            "user_id": user,
            "merchant_id": "m1",
            "amount": amount,
            "currency": "EUR",
            "status": status,
            "event_time": now - 600_000 + i * 1_000,
        }
        for i, (user, amount, status) in enumerate(EVENTS)
    ]
    return pa.Table.from_pylist(rows)


def test_request_features_online_offline_and_errors(deployment: Deployment, tmp_path: Path) -> None:
    _add_request_features(deployment)
    now = time.time_ns() // 1_000_000
    worker = deployment.start_worker()
    deployment.ingest(_events(now), worker)
    key = make_key(deployment, "--name", "reader", "--scope", "read")
    url = deployment.start_api()
    fs = deployment.feature_set
    features = [f"{fs}:amount_vs_avg", f"{fs}:avg_amount_7d", f"{fs}:web_and_big"]
    body: dict[str, Any] = {
        "features": features,
        "entities": {"user_id": ["u1", "u2", "u3"]},
        "request": {"amount": [50.0, 7.0, 5.0], "channel": ["web", "web", "app"]},
    }
    want_values = [[2.5, 20.0, True], [None, 0.0, True], [None, None, False]]
    want_statuses = [["PRESENT"] * 3, ["PRESENT"] * 3, ["NOT_FOUND"] * 3]

    with httpx.Client(base_url=url, timeout=30) as client:
        # The key's first lookup is answered by the full app, its second by the lean path.
        answers = [
            client.post("/v1/online-features", json=body, headers=bearer(key)) for _ in range(2)
        ]
        for answer in answers:
            assert answer.status_code == 200, answer.text
            results = answer.json()["results"]
            assert [r["values"] for r in results] == want_values
            assert [r["statuses"] for r in results] == want_statuses
            assert answer.json()["features"] == features

        # Each error body from a fresh key: its first request is answered by the full app,
        # its second by the lean path; both give the same status and errors.
        request = body["request"]
        for changed, status, fields in (
            ({"request": {"channel": request["channel"]}}, 422, ["request.amount"]),
            ({"request": {**request, "amount": [1.0, "x", 2.0]}}, 422, ["request.amount[1]"]),
            ({"request": {**request, "amount": [1.0]}}, 422, ["request.amount"]),
            ({"request": {**request, "channel": "web"}}, 422, ["request.channel"]),
            ({"features": [f"{fs}:amount_vs_nothing"]}, 404, ["features[0]"]),
        ):
            fresh = make_key(deployment, "--name", f"k{uuid.uuid4().hex[:6]}", "--scope", "read")
            first, second = (
                client.post("/v1/online-features", json={**body, **changed}, headers=bearer(fresh))
                for _ in range(2)
            )
            assert first.status_code == second.status_code == status, (first.text, second.text)
            assert first.json() == second.json()
            assert [e["field"] for e in first.json()["errors"]] == fields, first.text
            assert fields[0].split("[")[0] in first.json()["detail"], first.text

        # A request feature over a pii feature needs the pii grant, like the feature itself.
        pii_reader = make_key(deployment, "--name", "pii", "--scope", "read", "--pii", fs)
        same = {**body, "features": [f"{fs}:same_merchant"]}
        refused = client.post("/v1/online-features", json=same, headers=bearer(key))
        assert refused.status_code == 403, refused.text
        (error,) = refused.json()["errors"]
        assert error["field"] == "features[0]"
        assert f"reads {fs}:last_merchant, which is tagged pii" in error["reason"]
        for _ in range(2):  # full app, then lean path
            allowed = client.post("/v1/online-features", json=same, headers=bearer(pii_reader))
            assert allowed.status_code == 200, allowed.text
            assert [r["values"] for r in allowed.json()["results"]] == [[False], [False], [None]]

    with HeadwaterClient(url=url, api_key=key, settings=deployment.settings) as http:
        answer = http.get_online_features(
            body["entities"], features=features, request=body["request"]
        )
        assert [r["values"] for r in answer["results"]] == want_values
        with pytest.raises(ApiError) as info:
            http.get_online_features(body["entities"], features=features)
        assert info.value.status == 422
        assert [e["field"] for e in info.value.errors] == ["request.amount", "request.channel"]
        label_at = time.time_ns() // 1_000_000
        historical = http.get_historical_features(
            {**body["entities"], **body["request"], "event_timestamp": [label_at] * 3},
            features=features,
        )
        assert [r["values"] for r in historical["results"]] == want_values
        with pytest.raises(ApiError) as info:
            http.get_historical_features(
                {**body["entities"], "channel": ["web"] * 3, "event_timestamp": [label_at] * 3},
                features=features,
            )
        assert info.value.status == 422
        assert [e["field"] for e in info.value.errors] == ["entities.amount"]

    with FeatureStore(deployment.settings) as store:
        online = store.get_online_features(body["entities"], features, request=body["request"])
        assert online.values == want_values
        assert [[s.value for s in row] for row in online.statuses] == want_statuses

        labels = pa.table(
            {
                "user_id": ["u1", "u2", "u3", "u1"],
                "event_timestamp": pa.array([online.served_at_ms] * 3 + [now - 3_600_000]),
                "amount": [50.0, 7.0, 5.0, 4.0],
                "channel": ["web", "web", "app", "web"],
            }
        )
        training = store.get_historical_features(labels, features, save_as="with_request")
        # Before any event (the last row), the mean is null and so is the ratio; max is null,
        # so `amount > max` is null and `true and null` is null.
        assert training.select(["amount_vs_avg", "avg_amount_7d", "web_and_big"]).to_pylist() == [
            dict(zip(["amount_vs_avg", "avg_amount_7d", "web_and_big"], row, strict=True))
            for row in [*want_values, [None, None, None]]
        ]
        assert training.column_names == [
            "user_id",
            "event_timestamp",
            "amount",
            "channel",
            "amount_vs_avg",
            "avg_amount_7d",
            "web_and_big",
        ]
        assert store.rebuild_training_set("with_request").equals(training)

        with pytest.raises(BadRequestError, match="no column 'amount'"):
            store.get_historical_features(labels.drop_columns(["amount"]), features)
