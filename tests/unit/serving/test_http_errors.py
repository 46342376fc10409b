"""One error body for every JSON endpoint, and ``/metrics`` where a scrape expects it.

The app is the real ``create_app`` over a SQLite catalog holding the example definitions;
every request here is refused (or answered) before it would reach Kafka or Redis, whose
addresses point at a closed port.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from headwater.connectors.catalog import Catalog
from headwater.connectors.errors import OnlineStoreError
from headwater.examples import EXAMPLES
from headwater.schemas.errors import EventError, UnknownNameError
from headwater.schemas.loader import load_definitions
from headwater.schemas.settings import KafkaSettings, RedisSettings, ServingSettings, Settings
from headwater.serving.app import create_app
from headwater.serving.error_handlers import install_error_handlers
from headwater.serving.errors import InvalidEventsError, ServingError, UnavailableError

CLOSED = "127.0.0.1:9"  # discard port: nothing listens there


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        home=tmp_path,
        kafka=KafkaSettings(bootstrap_servers=CLOSED),
        redis=RedisSettings(url=f"redis://{CLOSED}/0"),
        serving=ServingSettings(historical_max_rows=2),
    )
    defs = load_definitions(EXAMPLES)
    catalog = Catalog(settings.catalog_url)
    catalog.save(defs, defs.feature_sets, {})
    catalog.close()
    with TestClient(create_app(settings), follow_redirects=False) as test_client:
        yield test_client


def test_metrics_answers_200_at_the_path_a_scrape_names(client: TestClient) -> None:
    client.get("/healthz")
    for path in ("/metrics", "/metrics/"):
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code, response.headers)
        assert response.headers["content-type"].startswith("text/plain")
        assert 'headwater_http_requests_total{route="/healthz",status="200"}' in response.text


def test_push_names_each_element_of_events_that_is_not_an_object(client: TestClient) -> None:
    response = client.post("/v1/push/transactions", json={"events": [1, None]})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["detail"] == "2 of 2 event(s) are invalid; nothing was accepted"
    assert body["errors"] == [
        {
            "index": 0,
            "field": "events[0]",
            "reason": "an event must be a JSON object, got integer 1",
        },
        {"index": 1, "field": "events[1]", "reason": "an event must be a JSON object, got null"},
    ]


def test_push_body_problems_name_the_field(client: TestClient) -> None:
    push = "/v1/push/transactions"
    not_json = client.post(push, content=b"{nope", headers={"content-type": "application/json"})
    assert not_json.status_code == 422
    assert not_json.json()["detail"].startswith("body is not valid JSON")
    assert [e["field"] for e in not_json.json()["errors"]] == ["body"]

    wrong = client.post(push, json={"event": [{}], "events": {"a": 1}})
    assert wrong.status_code == 422
    assert wrong.json()["detail"].startswith('body must be a JSON object {"events"')
    assert wrong.json()["errors"] == [
        {"field": "events", "reason": "expected a list of event objects, got object {'a': 1}"},
        {"field": "event", "reason": "unknown field; the body holds only 'events'"},
    ]
    absent = client.post(push, json=[])
    assert absent.status_code == 422
    assert absent.json()["errors"] == [{"field": "body", "reason": "got array []"}]


def test_request_validation_errors_name_the_path_of_each_field(client: TestClient) -> None:
    response = client.post(
        "/v1/online-features",
        json={"features": ["user_spend:spend_1h", 7], "entities": {"user_id": "u1"}, "extra": 1},
    )
    assert response.status_code == 422
    body = response.json()
    assert body["errors"] == [
        {"field": "features[1]", "reason": "Input should be a valid string"},
        {"field": "entities.user_id", "reason": "Input should be a valid list"},
        {"field": "extra", "reason": "Extra inputs are not permitted"},
    ]
    assert body["detail"].startswith("the request does not match the endpoint's schema")
    assert "entities.user_id: Input should be a valid list" in body["detail"]

    broken = client.post(
        "/v1/online-features",
        content=b'{"entities": ',
        headers={"content-type": "application/json"},
    )
    assert broken.status_code == 422
    (item,) = broken.json()["errors"]
    assert item["field"] == "body" and "not valid JSON" in item["reason"]


def test_project_and_serving_errors_share_the_shape(client: TestClient) -> None:
    unknown_set = client.post(
        "/v1/online-features", json={"features": ["nope:x"], "entities": {"user_id": ["u1"]}}
    )
    assert unknown_set.status_code == 404
    detail = "unknown feature set 'nope'; known: ['user_spend']"
    assert unknown_set.json() == {
        "detail": detail,
        "errors": [{"field": "features[0]", "reason": detail}],
    }
    unknown_feature = client.post(
        "/v1/online-features",
        json={"features": ["user_spend:nope"], "entities": {"user_id": ["u1"]}},
    )
    assert unknown_feature.status_code == 404
    assert "has no feature 'nope'" in unknown_feature.json()["detail"]
    assert [e["field"] for e in unknown_feature.json()["errors"]] == ["features[0]"]
    unknown_service = client.post(
        "/v1/online-features", json={"feature_service": "nope", "entities": {"user_id": ["u1"]}}
    )
    assert unknown_service.status_code == 404
    assert [e["field"] for e in unknown_service.json()["errors"]] == ["feature_service"]

    unknown_source = client.post("/v1/push/nope", json={"events": []})
    assert unknown_source.status_code == 404
    assert unknown_source.json()["detail"] == "unknown source 'nope'; known: ['transactions']"

    bad_ref = client.post(
        "/v1/online-features", json={"features": ["spend"], "entities": {"user_id": ["u1"]}}
    )
    assert bad_ref.status_code == 422
    assert [e["field"] for e in bad_ref.json()["errors"]] == ["features[0]"]

    missing_key = client.post(
        "/v1/online-features", json={"features": ["user_spend:spend_1h"], "entities": {"u": [1]}}
    )
    assert missing_key.status_code == 422
    assert missing_key.json()["errors"] == [
        {
            "field": "entities.user_id",
            "reason": "missing: a key column of the requested features' entity",
        }
    ]

    naive = client.post(
        "/v1/historical-features",
        json={
            "features": ["user_spend:spend_1h"],
            "entities": {"user_id": ["u1"], "event_timestamp": ["2026-01-01T00:00:00"]},
        },
    )
    assert naive.status_code == 422
    assert [e["field"] for e in naive.json()["errors"]] == ["entities.event_timestamp[0]"]
    assert "no time zone" in naive.json()["errors"][0]["reason"]

    too_many = client.post(
        "/v1/historical-features",
        json={
            "features": ["user_spend:spend_1h"],
            "entities": {"user_id": ["a", "b", "c"], "event_timestamp": [1, 2, 3]},
        },
    )
    assert too_many.status_code == 413
    assert "historical_max_rows=2" in too_many.json()["detail"]
    assert [e["field"] for e in too_many.json()["errors"]] == ["entities"]

    assert client.get("/v1/feature-sets/nope").json() == {
        "detail": "unknown feature set 'nope'; known: ['user_spend']",
        "errors": [],
    }


def test_framework_errors_share_the_shape(client: TestClient) -> None:
    missing = client.get("/v1/nothing-here")
    assert (missing.status_code, missing.json()) == (404, {"detail": "Not Found", "errors": []})
    wrong_method = client.get("/v1/online-features")
    assert wrong_method.status_code == 405
    assert wrong_method.json() == {"detail": "Method Not Allowed", "errors": []}
    assert wrong_method.headers["allow"] == "POST"


def test_the_registry_keeps_the_confluent_body(client: TestClient) -> None:
    response = client.get("/registry/subjects/nope-value/versions")
    assert response.status_code == 404
    assert response.json()["error_code"] == 40401 and "nope-value" in response.json()["message"]
    assert set(response.json()) == {"error_code", "message"}
    elsewhere = client.get("/registry/not/an/endpoint")
    assert elsewhere.json() == {"error_code": 404, "message": "HTTP 404 Not Found"}


def _app_raising(exc: Exception) -> TestClient:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    def boom() -> dict[str, Any]:
        raise exc

    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize(
    ("exc", "status", "body", "headers"),
    [
        (
            UnknownNameError("unknown source 'x'; known: []", kind="source", name="x"),
            404,
            {"detail": "unknown source 'x'; known: []", "errors": []},
            {},
        ),
        (
            EventError("field 'ts': no time zone", field="ts"),
            422,
            {
                "detail": "field 'ts': no time zone",
                "errors": [{"field": "ts", "reason": "field 'ts': no time zone"}],
            },
            {},
        ),
        (
            UnavailableError("Kafka did not answer; retry later", headers={"Retry-After": "5"}),
            503,
            {"detail": "Kafka did not answer; retry later", "errors": []},
            {"retry-after": "5"},
        ),
        (
            ServingError("broken"),
            500,
            {"detail": "broken", "errors": []},
            {},
        ),
    ],
)
def test_each_error_class_has_its_status(
    exc: Exception, status: int, body: dict[str, Any], headers: dict[str, str]
) -> None:
    response = _app_raising(exc).get("/boom")
    assert response.status_code == status
    assert response.json() == body
    for name, value in headers.items():
        assert response.headers[name] == value


def test_push_problems_keep_their_index() -> None:
    from headwater.serving.errors import ErrorItem

    exc = InvalidEventsError([ErrorItem("amount", "expected a number", 3)], total=5)
    response = _app_raising(exc).get("/boom")
    assert response.status_code == 422
    assert response.json() == {
        "detail": "1 of 5 event(s) are invalid; nothing was accepted",
        "errors": [{"index": 3, "field": "amount", "reason": "expected a number"}],
    }


def test_store_faults_answer_503_and_unexpected_errors_500_without_their_text() -> None:
    secret = "redis://:hunter2@db:6379"
    store = _app_raising(OnlineStoreError(f"Redis at {secret} did not answer")).get("/boom")
    assert store.status_code == 503  # a store outage is the client's to retry, not a bug
    assert store.headers["retry-after"] == "1"
    assert store.json() == {
        "detail": "the redis store failed (OnlineStoreError); see the server's log",
        "errors": [],
    }
    crash = _app_raising(RuntimeError(secret)).get("/boom")
    assert crash.status_code == 500
    assert crash.json() == {
        "detail": "internal error (RuntimeError); see the server's log",
        "errors": [],
    }
