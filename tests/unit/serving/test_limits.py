"""Limits on every endpoint: body sizes, entity counts, error sizes, event-time range, and no
500 from deep nesting or integers beyond 64 bits.

The app is the real ``create_app`` over a SQLite catalog holding the example definitions;
Kafka and Redis point at a closed port, so a request that passes every check is answered
503 (a store fault), never produced or stored.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from headwater.connectors.catalog import Catalog
from headwater.examples import EXAMPLES
from headwater.schemas.loader import load_definitions
from headwater.schemas.settings import KafkaSettings, RedisSettings, ServingSettings, Settings
from headwater.serving.app import create_app

CLOSED = "127.0.0.1:9"
BODY_LIMIT = 64 * 1024
PUSH = "/v1/push/transactions"
ONLINE = "/v1/online-features"
HISTORICAL = "/v1/historical-features"
REGISTER = "/registry/subjects/s-value/versions"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        home=tmp_path,
        kafka=KafkaSettings(bootstrap_servers=CLOSED),
        redis=RedisSettings(url=f"redis://{CLOSED}/0"),
        serving=ServingSettings(
            max_body_bytes=BODY_LIMIT,
            push_max_body_bytes=4 * BODY_LIMIT,
            online_max_entities=50,
            redis_connect_timeout_seconds=0.2,
        ),
    )
    defs = load_definitions(EXAMPLES)
    catalog = Catalog(settings.catalog_url)
    catalog.save(defs, defs.feature_sets, {})
    catalog.close()
    with TestClient(create_app(settings), follow_redirects=False) as test_client:
        yield test_client


def _event(**fields: object) -> dict[str, object]:
    return {
        "transaction_id": "t1",
        "user_id": "u1",
        "merchant_id": "m1",
        "amount": 1.5,
        "currency": "EUR",
        "status": "approved",
        "event_time": 1_700_000_000_000,
        **fields,
    }


def test_every_post_refuses_a_body_over_its_limit(client: TestClient) -> None:
    big = b'{"pad": "' + b"x" * BODY_LIMIT + b'"}'
    json_type = {"content-type": "application/json"}
    for path in (ONLINE, HISTORICAL, REGISTER, "/registry/subjects/s-value"):
        response = client.post(path, content=big, headers=json_type)
        assert response.status_code == 413, (path, response.status_code, response.text[:200])
        assert "over the limit of 65536 bytes" in response.json()["detail"]

    # Without Content-Length (a chunked upload) the limit holds while the body streams in.
    def chunks() -> Iterator[bytes]:
        yield b'{"pad": "'
        for _ in range(BODY_LIMIT // 1024 + 1):
            yield b"x" * 1024
        yield b'"}'

    chunked = client.post(ONLINE, content=chunks(), headers=json_type)
    assert chunked.status_code == 413, chunked.text[:200]
    assert chunked.json()["detail"].startswith("request body is over the limit")

    # Push has its own, larger limit: this body is under it, so its events are judged.
    under_push_limit = client.post(PUSH, json={"events": [_event(pad="x" * BODY_LIMIT)]})
    assert under_push_limit.status_code == 422
    assert under_push_limit.json()["errors"][0]["field"] == "pad"


def test_online_lookups_refuse_too_many_entities(client: TestClient) -> None:
    response = client.post(
        ONLINE,
        json={
            "features": ["user_spend:spend_1h"],
            "entities": {"user_id": [f"u{i}" for i in range(51)]},
        },
    )
    assert response.status_code == 413
    assert "51 entities is over the limit of 50" in response.json()["detail"]
    assert [e["field"] for e in response.json()["errors"]] == ["entities"]


def test_an_error_body_is_bounded_whatever_the_request(client: TestClient) -> None:
    # ~200 KB of unknown fields used to produce a 3.4 MB answer (each problem repeated the
    # schema's field list); now the first 100 problems are listed and the rest counted.
    fields = {f"unknown_field_{i:06d}": i for i in range(8000)}
    body = orjson.dumps({"events": [_event(**fields)]})
    assert len(body) > 200_000
    response = client.post(PUSH, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    answer = response.json()
    assert len(answer["errors"]) == 100
    assert answer["errors_total"] == 8000
    assert "the first 100 of 8000 problems are listed" in answer["detail"]
    assert answer["errors"][0]["field"] == "unknown_field_000000"
    assert len(response.content) < 100_000, len(response.content)

    many = client.post(ONLINE, json={"features": list(range(5000)), "entities": {}})
    assert many.status_code == 422
    assert len(many.json()["errors"]) == 100 and many.json()["errors_total"] == 5000
    assert len(many.content) < 50_000


@pytest.mark.parametrize("event_time", [-(2**63), -1, 2**63 - 1, 7_258_118_400_000])
def test_push_refuses_event_times_outside_1970_2200(client: TestClient, event_time: int) -> None:
    response = client.post(PUSH, json={"events": [_event(event_time=event_time)]})
    assert response.status_code == 422, response.text
    (problem,) = response.json()["errors"]
    assert problem["field"] == "event_time" and problem["index"] == 0
    assert "outside 1970-01-01..2200-01-01" in problem["reason"]


def test_historical_refuses_label_times_outside_1970_2200(client: TestClient) -> None:
    response = client.post(
        HISTORICAL,
        json={
            "features": ["user_spend:spend_1h"],
            "entities": {"user_id": ["u1", "u2"], "event_timestamp": [1, -(2**63)]},
        },
    )
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["entities.event_timestamp[1]"]


@pytest.mark.parametrize("path", [ONLINE, HISTORICAL, PUSH, REGISTER, "/registry/subjects/s"])
def test_deep_nesting_is_a_4xx_not_a_500(client: TestClient, path: str) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    nested_value = b'{"entities": {"user_id": [' + b"[" * 5000 + b"]" * 5000 + b"]}}"
    for body in (deep, nested_value):
        response = client.post(path, content=body, headers={"content-type": "application/json"})
        assert 400 <= response.status_code < 500, (path, response.status_code, response.text[:300])


def test_integers_beyond_64_bits_are_not_a_500(client: TestClient) -> None:
    huge = 2**70
    responses = [
        client.post(
            ONLINE, json={"features": ["user_spend:spend_1h"], "entities": {"user_id": [huge]}}
        ),
        client.post(
            HISTORICAL,
            json={
                "features": ["user_spend:spend_1h"],
                "entities": {"user_id": [huge], "event_timestamp": [huge]},
            },
        ),
        client.post(PUSH, json={"events": [_event(amount=huge, event_time=huge, user_id=huge)]}),
    ]
    for response in responses:
        assert response.status_code in (422, 503), (response.status_code, response.text[:300])
