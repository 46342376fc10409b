"""The Confluent Schema Registry subset under ``/registry``, over a real SQLite catalog."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from headwater.connectors.catalog import Catalog
from headwater.serving.registry import CONTENT_TYPE, registry_router

V1: dict[str, Any] = {
    "type": "record",
    "name": "Order",
    "namespace": "dev.headwater.test",
    "fields": [{"name": "order_id", "type": "string"}, {"name": "amount", "type": "double"}],
}
# BACKWARD compatible: a new field with a default.
V2: dict[str, Any] = {
    **V1,
    "fields": [*V1["fields"], {"name": "note", "type": "string", "default": ""}],
}
# Incompatible with V2: a new field without a default.
V3_BAD: dict[str, Any] = {**V2, "fields": [*V2["fields"], {"name": "country", "type": "string"}]}
OTHER: dict[str, Any] = {
    "type": "record",
    "name": "Click",
    "fields": [{"name": "url", "type": "string"}],
}


def canonical(schema: dict[str, Any]) -> str:
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


def body(schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"schema": json.dumps(schema), **extra}


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    cat = Catalog("sqlite:///" + str(tmp_path / "c.db"))
    yield cat
    cat.close()


@pytest.fixture
def client(catalog: Catalog) -> Iterator[TestClient]:
    app = FastAPI()
    app.include_router(registry_router(catalog))
    with TestClient(app) as test_client:
        yield test_client


def post(client: TestClient, path: str, payload: Any) -> Any:
    """POST with Confluent's content type, as confluent-kafka sends it."""
    return client.post(
        "/registry" + path, content=json.dumps(payload), headers={"Content-Type": CONTENT_TYPE}
    )


def register(client: TestClient, subject: str, schema: dict[str, Any]) -> int:
    response = post(client, f"/subjects/{subject}/versions", body(schema))
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"id"}
    return int(response.json()["id"])


def test_ids_are_global_and_versions_increment(client: TestClient, catalog: Catalog) -> None:
    first = register(client, "orders-value", V1)
    assert register(client, "orders-value", V1) == first  # same schema, same id, no new version
    second = register(client, "orders-value", V2)
    assert second != first
    assert register(client, "mirror-value", V1) == first  # the same text under another subject
    assert register(client, "clicks-value", OTHER) not in (first, second)

    assert client.get("/registry/subjects").json() == [
        "clicks-value",
        "mirror-value",
        "orders-value",
    ]
    assert client.get("/registry/subjects/orders-value/versions").json() == [1, 2]
    assert client.get("/registry/subjects/mirror-value/versions").json() == [1]
    assert catalog.schema_by_id(second).canonical == canonical(V2)
    assert client.get(f"/registry/schemas/ids/{first}/versions").json() == [
        {"subject": "mirror-value", "version": 1},
        {"subject": "orders-value", "version": 1},
    ]
    assert client.get(f"/registry/schemas/ids/{first}/subjects").json() == [
        "mirror-value",
        "orders-value",
    ]


def test_schema_by_id_returns_the_stored_canonical_text(client: TestClient) -> None:
    schema_id = register(client, "orders-value", V1)
    response = client.get(f"/registry/schemas/ids/{schema_id}?subject=orders-value&format=x")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE
    assert response.json() == {"schema": canonical(V1)}

    missing = client.get("/registry/schemas/ids/999")
    assert missing.status_code == 404
    assert missing.json()["error_code"] == 40403
    assert "999" in missing.json()["message"]
    assert client.get("/registry/schemas/ids/999/versions").json()["error_code"] == 40403
    assert client.get("/registry/schemas/ids/abc").json()["error_code"] == 40403


def test_versions_by_number_and_latest(client: TestClient) -> None:
    id1 = register(client, "orders-value", V1)
    id2 = register(client, "orders-value", V2)
    expected = {"subject": "orders-value", "id": id2, "version": 2, "schema": canonical(V2)}
    assert client.get("/registry/subjects/orders-value/versions/latest").json() == expected
    assert client.get("/registry/subjects/orders-value/versions/-1").json() == expected
    assert client.get("/registry/subjects/orders-value/versions/1").json() == {
        "subject": "orders-value",
        "id": id1,
        "version": 1,
        "schema": canonical(V1),
    }
    assert client.get("/registry/subjects/orders-value/versions/2/schema").json() == V2

    unknown_version = client.get("/registry/subjects/orders-value/versions/7")
    assert unknown_version.status_code == 404
    assert unknown_version.json()["error_code"] == 40402
    bad_version = client.get("/registry/subjects/orders-value/versions/first")
    assert (bad_version.status_code, bad_version.json()["error_code"]) == (422, 42202)
    unknown_subject = client.get("/registry/subjects/nope-value/versions/latest")
    assert unknown_subject.status_code == 404
    assert unknown_subject.json()["error_code"] == 40401
    assert "nope-value" in unknown_subject.json()["message"]
    assert client.get("/registry/subjects/nope-value/versions").json()["error_code"] == 40401


def test_lookup(client: TestClient) -> None:
    id1 = register(client, "orders-value", V1)
    register(client, "orders-value", V2)
    found = post(client, "/subjects/orders-value?normalize=False&deleted=false", body(V1))
    assert found.status_code == 200
    assert found.json() == {
        "subject": "orders-value",
        "id": id1,
        "version": 1,
        "schema": canonical(V1),
    }

    not_there = post(client, "/subjects/orders-value", body(OTHER))
    assert (not_there.status_code, not_there.json()["error_code"]) == (404, 40403)
    no_subject = post(client, "/subjects/nope-value", body(V1))
    assert (no_subject.status_code, no_subject.json()["error_code"]) == (404, 40401)


def test_incompatible_registration_is_refused_naming_the_field(client: TestClient) -> None:
    register(client, "orders-value", V1)
    register(client, "orders-value", V2)
    refused = post(client, "/subjects/orders-value/versions", body(V3_BAD))
    assert refused.status_code == 409
    assert refused.headers["content-type"] == CONTENT_TYPE
    assert refused.json()["error_code"] == 409
    assert "'country'" in refused.json()["message"]
    assert "version 2" in refused.json()["message"]
    assert client.get("/registry/subjects/orders-value/versions").json() == [1, 2]


def test_compatibility_check(client: TestClient) -> None:
    register(client, "orders-value", V1)
    register(client, "orders-value", V2)
    bad = post(
        client, "/compatibility/subjects/orders-value/versions/latest?verbose=true", body(V3_BAD)
    )
    assert bad.status_code == 200
    assert bad.json()["is_compatible"] is False
    assert len(bad.json()["messages"]) == 1
    assert "'country'" in bad.json()["messages"][0]

    good = post(client, "/compatibility/subjects/orders-value/versions/1", body(V2))
    assert good.json() == {"is_compatible": True, "messages": []}
    # Dropping a field is BACKWARD compatible.
    assert post(client, "/compatibility/subjects/orders-value/versions", body(V1)).json() == {
        "is_compatible": True,
        "messages": [],
    }
    # Nothing registered yet: anything is compatible with "latest"; an explicit version is not found.
    fresh = post(client, "/compatibility/subjects/new-value/versions/latest", body(V1))
    assert fresh.json() == {"is_compatible": True, "messages": []}
    missing = post(client, "/compatibility/subjects/new-value/versions/1", body(V1))
    assert (missing.status_code, missing.json()["error_code"]) == (404, 40401)
    wrong_version = post(client, "/compatibility/subjects/orders-value/versions/9", body(V1))
    assert wrong_version.json()["error_code"] == 40402


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"schema": "{not json"}, "not JSON"),
        ({"schema": json.dumps({"type": "record", "name": "X"})}, "Invalid schema"),
        ({"schema": json.dumps("string")}, "record"),
        ({"schema": json.dumps(V1), "schemaType": "PROTOBUF"}, "'PROTOBUF'"),
        (
            {"schema": json.dumps(V1), "references": [{"name": "a", "subject": "b", "version": 1}]},
            "references",
        ),
        ({"schemaType": "AVRO"}, "'schema'"),
    ],
)
def test_invalid_schemas_are_42201(
    client: TestClient, payload: dict[str, Any], fragment: str
) -> None:
    response = post(client, "/subjects/orders-value/versions", payload)
    assert response.status_code == 422
    assert response.json()["error_code"] == 42201
    assert fragment in response.json()["message"]
    assert client.get("/registry/subjects").json() == []


def test_explicit_avro_schema_type_and_empty_references_are_accepted(client: TestClient) -> None:
    response = post(
        client, "/subjects/orders-value/versions", body(V1, schemaType="AVRO", references=[])
    )
    assert response.status_code == 200


def test_content_types(client: TestClient) -> None:
    plain_json = client.post("/registry/subjects/orders-value/versions", json=body(V1))
    assert plain_json.status_code == 200
    no_type = client.post(
        "/registry/subjects/orders-value/versions", content=json.dumps(body(V2)).encode()
    )
    assert no_type.status_code == 200
    assert no_type.json()["id"] != plain_json.json()["id"]
    listing = client.get("/registry/subjects/orders-value/versions")
    assert listing.headers["content-type"] == CONTENT_TYPE

    broken = client.post(
        "/registry/subjects/orders-value/versions",
        content=b"schema=nope",
        headers={"Content-Type": CONTENT_TYPE},
    )
    assert broken.status_code == 400
    assert broken.json()["error_code"] == 400
    assert "not JSON" in broken.json()["message"]
    not_an_object = post(client, "/subjects/orders-value/versions", ["x"])
    assert (not_an_object.status_code, not_an_object.json()["error_code"]) == (400, 400)


def test_delete_subject(client: TestClient) -> None:
    schema_id = register(client, "orders-value", V1)
    register(client, "orders-value", V2)
    deleted = client.delete("/registry/subjects/orders-value?permanent=false")
    assert (deleted.status_code, deleted.json()) == (200, [1, 2])
    assert client.get("/registry/subjects").json() == []
    again = client.delete("/registry/subjects/orders-value")
    assert (again.status_code, again.json()["error_code"]) == (404, 40401)
    # The id stays valid for messages already written with it.
    assert client.get(f"/registry/schemas/ids/{schema_id}").json() == {"schema": canonical(V1)}
    assert client.get(f"/registry/schemas/ids/{schema_id}/versions").json() == []


def test_config_is_backward(client: TestClient) -> None:
    assert client.get("/registry/config").json() == {"compatibilityLevel": "BACKWARD"}
    assert client.get("/registry/config/orders-value").json() == {"compatibilityLevel": "BACKWARD"}
    for path in ("/config", "/config/orders-value"):
        accepted = client.put(
            "/registry" + path,
            content=json.dumps({"compatibility": "backward"}),
            headers={"Content-Type": CONTENT_TYPE},
        )
        assert accepted.status_code == 200
        assert accepted.json()["compatibilityLevel"] == "BACKWARD"
        refused = client.put("/registry" + path, json={"compatibility": "FULL"})
        assert refused.status_code == 422
        assert refused.json()["error_code"] == 42203
        assert "'FULL'" in refused.json()["message"]
        assert "'BACKWARD'" in refused.json()["message"]
    assert (
        client.put("/registry/config", json={"compatibilityLevel": "BACKWARD"}).status_code == 200
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/associations/resources/-/orders?resourceType=topic&associationType=value"),
        ("POST", "/associations"),
        ("GET", "/mode"),
        ("GET", "/contexts"),
        ("DELETE", "/subjects/orders-value/versions/1"),
        ("GET", "/schemas/guids/0b9d"),
        ("PUT", "/subjects"),
        ("GET", "/"),
    ],
)
def test_unknown_endpoints_answer_confluent_404(client: TestClient, method: str, path: str) -> None:
    response = client.request(method, "/registry" + path)
    assert response.status_code == 404
    assert response.headers["content-type"] == CONTENT_TYPE
    assert response.json() == {"error_code": 404, "message": "HTTP 404 Not Found"}


def test_schema_types(client: TestClient) -> None:
    assert client.get("/registry/schemas/types").json() == ["AVRO"]
