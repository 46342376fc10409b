"""Access control end to end: every endpoint x {no key, wrong scope, missing grant, right key}.

A real ``headwater serve`` process on loopback, real Kafka, Redis and catalog; keys made with
the real ``headwater keys`` command. Keys are required from the first key on (loopback), and
a refused request must change nothing: the topic's high watermarks, the registry's subjects
and the deployment's Redis keys are compared before and after the refusals. Every refusal is
in the audit, with its actor and outcome.
"""

from __future__ import annotations

import base64
import json
import re
import time
from typing import Any

import httpx
import pytest
import redis
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from headwater.client import ApiError, HeadwaterClient
from headwater.connectors.catalog import Catalog
from headwater.connectors.kafka import log_ends
from headwater.processes import HeadwaterProcess, free_port, wait_http_ok
from headwater.schemas.settings import load_settings
from tests.integration.pipeline import Deployment

pytestmark = pytest.mark.integration

_KEY = re.compile(r"hw_[0-9a-f]{12}_\S+")


def make_key(deployment: Deployment, *args: str) -> str:
    done = deployment.cli("keys", "create", *args)
    assert done.returncode == 0, done.stderr
    match = _KEY.search(done.stdout)
    assert match is not None, done.stdout
    return match.group(0)


def bearer(key: str | None) -> dict[str, str]:
    return {} if key is None else {"Authorization": f"Bearer {key}"}


def event(now_ms: int) -> dict[str, Any]:
    return {
        "transaction_id": "t1",
        "user_id": "u1",
        "merchant_id": "m1",
        "amount": 3.0,
        "currency": "EUR",
        "status": "approved",
        "event_time": now_ms,
    }


def tag_pii(deployment: Deployment) -> None:
    """Tag the example's ``last_merchant`` feature pii (a metadata change: same version)."""
    path = deployment.defs_dir / "features.yaml"
    text = path.read_text()
    tagged = text.replace(
        "{name: last_merchant, function: last, field: merchant_id}",
        "{name: last_merchant, function: last, field: merchant_id, tags: [pii]}",
    )
    assert tagged != text
    path.write_text(tagged)
    done = deployment.cli("apply", str(deployment.defs_dir))
    assert done.returncode == 0, done.stderr
    fs = deployment.definitions().feature_set(deployment.feature_set)
    assert fs.version == 1 and fs.is_pii(fs.feature("last_merchant"))


def state(deployment: Deployment) -> tuple[object, ...]:
    """What a refused request must not change: topic ends, subjects, this deployment's keys."""
    client = redis.Redis.from_url(deployment.settings.redis.url)
    keys = sorted(client.scan_iter(match=f"*_{deployment.suffix}*", count=1000))
    client.close()
    subjects = Catalog(deployment.settings.catalog_url).schema_versions()
    return (
        log_ends(deployment.settings.kafka, deployment.topic),
        [(s.subject, s.version, s.id) for s in subjects],
        keys,
    )


def test_every_endpoint_enforces_scopes_and_grants(deployment: Deployment) -> None:
    tag_pii(deployment)
    fs, source = deployment.feature_set, deployment.source
    subject = f"{deployment.topic}-value"
    reader = make_key(deployment, "--name", "reader", "--scope", "read")
    pii_reader = make_key(deployment, "--name", "pii", "--scope", "read", "--pii", fs)
    stranger = make_key(deployment, "--name", "other", "--scope", "read", "--feature-set", "x")
    writer = make_key(deployment, "--name", "writer", "--scope", "write", "--source", source)
    other_writer = make_key(deployment, "--name", "ow", "--scope", "write", "--source", "x")
    admin = make_key(deployment, "--name", "admin", "--scope", "admin")
    url = deployment.start_api()
    before = state(deployment)
    now = time.time_ns() // 1_000_000
    schema = json.dumps(
        {"schema": Catalog(deployment.settings.catalog_url).schema_versions(subject)[0].schema}
    )

    lookup = {"features": [f"{fs}:spend_1h"], "entities": {"user_id": ["u1"]}}
    pii_lookup = {
        "features": [f"{fs}:spend_1h", f"{fs}:last_merchant"],
        "entities": lookup["entities"],
    }
    historical = {
        "features": [f"{fs}:spend_1h"],
        "entities": {"user_id": ["u1"], "event_timestamp": [now]},
    }
    reg = {"Content-Type": "application/vnd.schemaregistry.v1+json"}
    # (method, path, body, extra headers, {key or None: expected status})
    cases: list[tuple[str, str, Any, dict[str, str], dict[str | None, int]]] = [
        ("POST", "/v1/online-features", lookup, {}, {None: 401, stranger: 403, reader: 200}),
        ("POST", "/v1/online-features", pii_lookup, {}, {reader: 403, pii_reader: 200}),
        (
            "POST",
            "/v1/historical-features",
            historical,
            {},
            {None: 401, stranger: 403, reader: 200},
        ),
        ("GET", "/v1/feature-sets", None, {}, {None: 401, reader: 200}),
        ("GET", f"/v1/feature-sets/{fs}", None, {}, {None: 401, reader: 200}),
        ("GET", "/v1/features?q=spend", None, {}, {None: 401, reader: 200}),
        ("GET", f"/v1/lineage/{fs}", None, {}, {None: 401, reader: 200}),
        ("GET", "/metrics", None, {}, {None: 401, reader: 200}),
        # Statistics and drift show values: a pii feature in the set needs the pii grant;
        # health shows none.
        (
            "GET",
            f"/v1/stats/{fs}",
            None,
            {},
            {None: 401, stranger: 403, reader: 403, pii_reader: 200},
        ),
        ("GET", f"/v1/drift/{fs}", None, {}, {None: 401, reader: 403, pii_reader: 200}),
        ("GET", f"/v1/monitor/{fs}", None, {}, {None: 401, stranger: 403, reader: 200}),
        ("GET", "/v1/monitor", None, {}, {None: 401, reader: 200}),
        ("GET", "/v1/audit", None, {}, {None: 401, writer: 403, admin: 200}),
        (
            "POST",
            f"/v1/push/{source}",
            {"events": [event(now)]},
            {},
            {None: 401, reader: 403, other_writer: 403},
        ),
        ("GET", "/registry/subjects", None, {}, {None: 401, reader: 200}),
        (
            "POST",
            f"/registry/subjects/{subject}/versions",
            schema,
            reg,
            {None: 401, reader: 403, other_writer: 403, writer: 200},
        ),
        (
            "POST",
            "/registry/subjects/not-a-source-value/versions",
            schema,
            reg,
            {writer: 403},
        ),
        (
            "PUT",
            "/registry/config",
            json.dumps({"compatibility": "BACKWARD"}),
            reg,
            {writer: 403, admin: 200},
        ),
        ("DELETE", f"/registry/subjects/{subject}", None, {}, {None: 401, writer: 403}),
    ]
    with httpx.Client(base_url=url, timeout=30) as client:
        for method, path, body, headers, expected in cases:
            for key, status in expected.items():
                kwargs: dict[str, Any] = {"headers": {**headers, **bearer(key)}}
                if isinstance(body, dict):
                    kwargs["json"] = body
                elif body is not None:
                    kwargs["content"] = body
                response = client.request(method, path, **kwargs)
                who = "no key" if key is None else key[:15]
                assert response.status_code == status, (method, path, who, response.text)
                if status == 401:
                    assert "WWW-Authenticate" in response.headers
        # The refusals changed nothing (the registration above was of the existing schema).
        assert state(deployment) == before

        # pii: the refusal names the feature.
        refused = client.post("/v1/online-features", json=pii_lookup, headers=bearer(reader))
        assert refused.json()["errors"] == [
            {
                "field": "features[1]",
                "reason": f"{fs}:last_merchant is tagged pii: reading it needs a pii grant "
                f"(keys create --pii {fs})",
            }
        ]
        # A write key may read; its push is accepted and reaches Kafka.
        pushed = client.post(
            f"/v1/push/{source}", json={"events": [event(now)]}, headers=bearer(writer)
        )
        assert pushed.status_code == 202, pushed.text
        ends = log_ends(deployment.settings.kafka, deployment.topic)
        # One event, plus the transaction's commit marker (pushes are transactional).
        assert sum(ends.values()) == sum(before[0].values()) + 2  # type: ignore[union-attr]

        # The key header forms: X-API-Key and HTTP basic (the registry clients' form).
        assert client.get("/v1/feature-sets", headers={"X-API-Key": reader}).status_code == 200
        basic = base64.b64encode(f"anyone:{reader}".encode()).decode()
        answer = client.get("/registry/subjects", headers={"Authorization": f"Basic {basic}"})
        assert answer.status_code == 200 and subject in answer.json()
        denied = client.get("/registry/subjects")
        assert denied.json()["error_code"] == 401  # Confluent's error body on the registry

        # Cross-site forms and DNS rebinding.
        form = client.post(
            f"/v1/push/{source}",
            content=json.dumps({"events": [event(now)]}),
            headers={**bearer(writer), "Content-Type": "text/plain"},
        )
        assert form.status_code == 415 and "application/json" in form.json()["detail"]
        rebound = client.get("/healthz", headers={"Host": "evil.example"})
        assert rebound.status_code == 400 and "trusted_hosts" in rebound.json()["detail"]
        assert log_ends(deployment.settings.kafka, deployment.topic) == ends

        # Health stays open and says nothing about the deployment.
        health = client.get("/healthz")
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        assert "server" not in health.headers  # no software named, no versions
        ready = client.get("/readyz").text
        assert deployment.settings.redis.url not in ready
        assert "127.0.0.1" not in ready and "9092" not in ready

        # A revoked key stops working at once (the API sees the catalog file change).
        reader_id = reader.split("_")[1]
        assert deployment.cli("keys", "revoke", reader_id).returncode == 0
        gone = client.get("/v1/feature-sets", headers=bearer(reader))
        assert gone.status_code == 401 and "revoked" in gone.json()["detail"]

        # Confluent's client with basic auth, as producers configure it.
        registry = SchemaRegistryClient(
            {"url": f"{url}/registry", "basic.auth.user.info": f"svc:{writer}"}
        )
        assert subject in registry.get_subjects()
        anonymous = SchemaRegistryClient({"url": f"{url}/registry"})
        with pytest.raises(SchemaRegistryError) as info:
            anonymous.get_subjects()
        assert info.value.http_status_code == 401

        # The audit: refusals with who and why, admin actions with their actor.
        audit = client.get("/v1/audit?outcome=refused", headers=bearer(admin)).json()
        assert audit and all(e["outcome"] == "refused" for e in audit)
        reasons = {(e["target"], e["detail"]["status"]) for e in audit}
        assert (f"POST /v1/push/{source}", 401) in reasons
        assert (f"POST /v1/push/{source}", 403) in reasons
        by_reader = [e for e in audit if e["actor"] == f"key:{reader_id}:reader"]
        assert by_reader and by_reader[0]["detail"]["features"] == [f"{fs}:last_merchant"]
        stranger_id = stranger.split("_")[1]
        by_stranger = [e for e in audit if e["actor"] == f"key:{stranger_id}:other"]
        every = deployment.definitions().feature_set(fs).features
        plain = tuple(f"{fs}:{f.name}" for f in every if f.name != "last_merchant")
        assert {tuple(e["detail"]["features"]) for e in by_stranger} == {
            (f"{fs}:spend_1h",),  # the lookups
            tuple(f"{fs}:{f.name}" for f in every),  # the statistics
            plain,  # the health, which needs no pii grant
        }
    # The Python client takes its key from the settings (HEADWATER_SECURITY__API_KEY).
    with HeadwaterClient(
        url, settings=load_settings(security={"api_key": pii_reader})
    ) as python_client:
        answer = python_client.get_online_features(
            {"user_id": ["u1"]}, features=pii_lookup["features"]
        )
        assert answer["features"] == pii_lookup["features"]
    with HeadwaterClient(url, api_key=stranger) as python_client:
        with pytest.raises(ApiError) as refused_info:
            python_client.get_online_features({"user_id": ["u1"]}, features=lookup["features"])
        assert refused_info.value.status == 403
        assert f"{fs}:spend_1h" in str(refused_info.value)
    cli_audit = deployment.cli("audit", "--action", "key_revoke", "--json")
    entries = [json.loads(line) for line in cli_audit.stdout.splitlines()]
    assert [e["target"] for e in entries] == [reader_id]
    assert entries[0]["actor"].startswith("cli:")


def test_beyond_loopback_keys_are_required_from_the_start(deployment: Deployment) -> None:
    """Listening on every interface with no key made yet: everything but health is refused.

    (``require_keys=false`` is refused beyond loopback: a unit test covers it.)
    """
    port = free_port()
    api = HeadwaterProcess(
        ["serve", "--host", "0.0.0.0", "--port", str(port)],
        env=deployment.env,
        log_file=deployment.settings.home / "api-any.log",
    )
    deployment.processes.append(api)
    url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{url}/healthz", api)
    refused = httpx.get(f"{url}/v1/feature-sets", timeout=10)
    assert refused.status_code == 401
    assert "headwater keys create" in refused.json()["detail"]
    assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
    assert "API keys required (listening beyond loopback)" in api.tail(20)
