"""Which events a worker skips after an erasure: the erased key's, below the recorded end of
their partition, under the recorded topic id; and the catalog side (request + audit)."""

from __future__ import annotations

from pathlib import Path

from headwater.connectors.catalog import Catalog, TopicEnd
from headwater.connectors.catalog.audit import AuditQuery, acting_as
from headwater.schemas.definitions import KEY_SEPARATOR, Entity
from headwater.schemas.tiles import TopicEpoch
from headwater.stream_workers.erasure_skips import applicable, skips_for

USER = Entity(name="user", keys=("user_id",))
PAIR = Entity(name="pair", keys=("a", "b"))


def test_requests_are_recorded_with_their_audit_entry_and_read_back(tmp_path: Path) -> None:
    catalog = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    assert catalog.erasures.state() == (0, 0)
    with acting_as("cli:tester@host"):
        first = catalog.erasures.record("user", ("u1",), {"raw.t": TopicEnd("tid", {0: 5, 1: 9})})
    assert catalog.erasures.state() == (1, first.id)
    (entry,) = catalog.audit(AuditQuery(action="erase"))
    assert (entry.actor, entry.outcome, entry.target) == ("cli:tester@host", "ok", 'user:["u1"]')
    assert entry.detail["topics"]["raw.t"]["ends"] == {"0": 5, "1": 9}
    catalog.erasures.update(first.id, {"completed_at_ms": 1})
    (read,) = catalog.erasures.all()
    assert read.entity_key == ("u1",) and read.actor == "cli:tester@host"
    assert read.topics == {"raw.t": TopicEnd("tid", {0: 5, 1: 9})}
    assert read.detail["completed_at_ms"] == 1
    catalog.close()


def test_old_events_of_the_erased_key_are_skipped_and_new_ones_are_not(tmp_path: Path) -> None:
    catalog = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    catalog.erasures.record("user", ("u1",), {"raw.t": TopicEnd("tid", {0: 5})})
    catalog.erasures.record("user", ("u1",), {"raw.t": TopicEnd("tid", {0: 8})})
    catalog.erasures.record("user", ("u2",), {"raw.other": TopicEnd("x", {0: 100})})
    skips = skips_for(catalog.erasures.all(), "raw.t", [USER])
    assert skips is not None and skips.topic_id == "tid"
    assert skips.erased(0, 7, {"user_id": "u1"})  # the later request's end wins
    assert not skips.erased(0, 8, {"user_id": "u1"})  # produced after the erasure: new
    assert not skips.erased(0, 3, {"user_id": "u2"})  # erased on another topic only
    assert not skips.erased(1, 0, {"user_id": "u1"})  # its partition had no events then
    assert skips.erased_message(0, 2, b"u1") and not skips.erased_message(0, 2, b"u3")
    assert not skips.erased_message(0, 2, None)
    # No request for this topic or entity: nothing to check at all.
    assert skips_for(catalog.erasures.all(), "raw.none", [USER]) is None
    assert skips_for(catalog.erasures.all(), "raw.t", [PAIR]) is None
    catalog.close()


def test_keys_of_several_fields_and_integer_values_match_as_stored(tmp_path: Path) -> None:
    catalog = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    catalog.erasures.record("pair", ("7", "x"), {"raw.t": TopicEnd("tid", {0: 5})})
    skips = skips_for(catalog.erasures.all(), "raw.t", [PAIR])
    assert skips is not None
    assert skips.erased(0, 1, {"a": 7, "b": "x"})  # str() of a non-text key, as stored
    assert not skips.erased(0, 1, {"a": 7, "b": "y"})
    assert skips.erased_message(0, 1, f"7{KEY_SEPARATOR}x".encode())
    catalog.close()


def test_a_recreated_topic_is_not_skipped_by_offsets_of_the_old_one(tmp_path: Path) -> None:
    catalog = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    catalog.erasures.record("user", ("u1",), {"raw.t": TopicEnd("old", {0: 5})})
    skips = skips_for(catalog.erasures.all(), "raw.t", [USER])
    assert applicable(skips, TopicEpoch("old")) is skips
    assert applicable(skips, TopicEpoch("old~2", {0: 3})) is skips  # a reset, same topic
    assert applicable(skips, None) is skips
    assert applicable(skips, TopicEpoch("new")) is None
    assert applicable(None, TopicEpoch("old")) is None
    catalog.close()
