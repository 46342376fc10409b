"""The owners of the key and subject invariants on the definitions (``Entity``, ``Source``,
``Definitions.entity_of_source``): every writer and reader calls these."""

from __future__ import annotations

import pytest

from headwater.examples import EXAMPLES
from headwater.schemas.avro import AvroSchema
from headwater.schemas.definitions import (
    KEY_SEPARATOR,
    Definitions,
    Entity,
    Feature,
    FeatureSet,
    Source,
)
from headwater.schemas.errors import DefinitionError, EventError

SCHEMA = AvroSchema.from_file(EXAMPLES / "transactions.avsc")
PAIR = Entity(name="pair", keys=("user_id", "merchant_id"))
USER = Entity(name="user", keys=("user_id",))


def test_a_key_is_the_text_of_each_field_and_the_message_key_joins_them() -> None:
    assert USER.key_of({"user_id": 42}) == ("42",)
    assert PAIR.key_of({"user_id": "u1", "merchant_id": 7, "x": 1}) == ("u1", "7")
    assert PAIR.message_key({"user_id": "u1", "merchant_id": "m1"}) == b"u1\x1fm1"
    assert USER.message_key({"user_id": "u1"}) == b"u1"


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"user_id": f"a{KEY_SEPARATOR}b", "merchant_id": "c"}, "user_id"),
        ({"user_id": "a", "merchant_id": f"b{KEY_SEPARATOR}c"}, "merchant_id"),
    ],
)
def test_two_keys_that_would_join_to_one_text_are_refused(
    record: dict[str, str], field: str
) -> None:
    with pytest.raises(EventError, match=f"'{field}'.*U\\+001F") as info:
        PAIR.key_of(record)
    assert (info.value.field, info.value.reason) == (field, "invalid_key")


def test_a_key_of_one_field_may_hold_the_separator_as_it_cannot_collide() -> None:
    assert USER.message_key({"user_id": f"a{KEY_SEPARATOR}b"}) == b"a\x1fb"


def test_the_subject_follows_the_topic_name_strategy() -> None:
    source = Source(name="tx", schema=SCHEMA, timestamp="event_time")
    assert source.subject == "raw.tx-value"
    assert source.with_topic_prefix("team.").subject == "team.raw.tx-value"


def _set(name: str, entity: str, source: str = "tx") -> FeatureSet:
    return FeatureSet(
        name=name,
        entity=entity,
        source=source,
        features=(Feature(name="n", function="count"),),
    )


def test_the_entity_of_a_source_is_the_one_its_feature_sets_describe() -> None:
    source = Source(name="tx", schema=SCHEMA, timestamp="event_time")
    defs = Definitions(entities=(USER, PAIR), sources=(source,), feature_sets=(_set("a", "user"),))
    assert defs.entity_of_source("tx") == USER
    assert Definitions(entities=(USER,), sources=(source,)).entity_of_source("tx") is None
    mixed = Definitions(
        entities=(USER, PAIR),
        sources=(source,),
        feature_sets=(_set("a", "user"), _set("b", "pair")),
    )
    with pytest.raises(DefinitionError, match="several entities"):
        mixed.entity_of_source("tx")
