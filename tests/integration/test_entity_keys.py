"""An entity key of several fields is one text joined by U+001F (``KEY_SEPARATOR``): in the
Kafka message key, the Redis key and the offline join. A field value holding that character
would make two entities one (``("a\\x1fb", "c")`` and ``("a", "b\\x1fc")``), so every way in
refuses it, naming the field: the push endpoint (422), file ingest (the row), the worker (a
dead letter with reason ``invalid_key``, the other events stored), online lookups and
point-in-time labels (422). Runs against the real Kafka, Redis and Delta, with the API as a
process.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from headwater.apply import apply_definitions
from headwater.connectors.catalog import Catalog
from headwater.connectors.dlq import read_dead_letters
from headwater.connectors.kafka import EventProducer, RawMessage
from headwater.connectors.offline_delta import DeltaOfflineStore
from headwater.connectors.online_redis import RedisOnlineStore
from headwater.connectors.replay import BadRowError
from headwater.ingest import ingest_files
from headwater.schemas.avro import encode_wire
from headwater.schemas.definitions import KEY_SEPARATOR
from headwater.stream_workers.processor_factory import processor_from_settings
from tests.integration.pipeline import Deployment

pytestmark = pytest.mark.integration

PAIRS = """
entities:
  - name: card_shop_{s}
    keys: [user_id, merchant_id]
sources:
  - name: pairs_{s}
    schema: transactions.avsc
    timestamp: event_time
feature_sets:
  - name: pair_spend_{s}
    entity: card_shop_{s}
    source: pairs_{s}
    resolution: 1m
    features:
      - {{name: txn_count, function: count}}
      - {{name: spend, function: sum, field: amount}}
"""


def _event(user: str, merchant: str, amount: float, t: int, n: int) -> dict[str, object]:
    return {
        "transaction_id": f"t{n}",
        "user_id": user,
        "merchant_id": merchant,
        "amount": amount,
        "currency": "EUR",
        "status": "approved",
        "event_time": t,
    }


@pytest.fixture
def pairs(deployment: Deployment) -> Deployment:
    (deployment.defs_dir / "pairs.yaml").write_text(PAIRS.format(s=deployment.suffix))
    apply_definitions(deployment.settings, deployment.defs_dir)
    return deployment


def test_a_key_field_holding_the_separator_is_refused_on_every_way_in(
    pairs: Deployment, redis_url: str, tmp_path: Path
) -> None:
    s = pairs.suffix
    settings = pairs.settings
    catalog = Catalog(settings.catalog_url)
    defs = catalog.definitions()
    source, fs = defs.source(f"pairs_{s}"), defs.feature_set(f"pair_spend_{s}")
    now = time.time_ns() // 1_000_000
    bad_user = f"a{KEY_SEPARATOR}b"

    # The worker: the colliding event goes to the DLQ, naming the field; the others are stored.
    schema_id = catalog.register_schema(source.subject, source.schema)
    events = [
        _event("a", f"b{KEY_SEPARATOR}c", 5.0, now - 3000, 1),
        _event(bad_user, "c", 7.0, now - 2000, 2),
        _event("a", "b", 11.0, now - 1000, 3),
    ]
    messages = [
        RawMessage(
            0,
            i,
            b"k",
            encode_wire(source.schema, schema_id, e),
            now,
        )
        for i, e in enumerate(events)
    ]
    processor = processor_from_settings(
        settings,
        defs,
        source,
        (fs,),
        catalog=catalog,
        online=RedisOnlineStore(redis_url),
        offline=DeltaOfflineStore(settings.offline_root),
        dlq=EventProducer(settings.kafka, delivery_timeout_s=10),
    )
    processor.process(messages)
    letters = list(read_dead_letters(settings.kafka, source.dlq_topic))
    assert sorted((d.reason, d.field) for d in letters) == [
        ("invalid_key", "merchant_id"),
        ("invalid_key", "user_id"),
    ]
    assert "U+001F" in letters[0].error
    history = DeltaOfflineStore(settings.offline_root).history(fs)
    assert history.column("transaction_id").to_pylist() == ["t3"]
    online = RedisOnlineStore(redis_url)
    assert online.read(fs, [("a", "b")])[0] is not None
    assert list(online.stored_keys(fs)) == [online.key(fs, ("a", "b"))]

    # File ingest: the row and field are named, nothing of the file is sent.
    path = tmp_path / "pairs.parquet"
    pq.write_table(pa.Table.from_pylist([_event("x", "y", 1.0, now, 4), events[1]]), path)
    with pytest.raises(BadRowError, match=r"row 2.*user_id.*U\+001F"):
        ingest_files(settings, f"pairs_{s}", [path], show_progress=False)

    url = pairs.start_api()
    with httpx.Client(base_url=url, timeout=30) as client:
        # Push: 422 naming the event and field; nothing accepted.
        r = client.post(f"/v1/push/pairs_{s}", json={"events": [events[2], events[1]]})
        assert r.status_code == 422, r.text
        assert r.json()["errors"] == [
            {"index": 1, "field": "user_id", "reason": r.json()["errors"][0]["reason"]}
        ]
        assert "U+001F" in r.json()["errors"][0]["reason"]

        # Online lookup: 422 naming the field; a valid pair is served.
        body = {"features": [f"pair_spend_{s}:txn_count", f"pair_spend_{s}:spend"]}
        r = client.post(
            "/v1/online-features",
            json={**body, "entities": {"user_id": [bad_user], "merchant_id": ["c"]}},
        )
        assert r.status_code == 422, r.text
        assert "user_id" in r.json()["detail"] and "U+001F" in r.json()["detail"]
        r = client.post(
            "/v1/online-features",
            json={**body, "entities": {"user_id": ["a"], "merchant_id": ["b"]}},
        )
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["values"] == [1, 11.0]

        # Point-in-time labels: 422 naming the column.
        r = client.post(
            "/v1/historical-features",
            json={
                **body,
                "entities": {
                    "user_id": [bad_user],
                    "merchant_id": ["c"],
                    "event_timestamp": [now],
                },
            },
        )
        assert r.status_code == 422, r.text
        assert "'user_id'" in r.json()["detail"]
