"""``headwater erase --entity FIELD=VALUE``: which entity key the pairs name, and errors that
name the field and the fix."""

from __future__ import annotations

import pytest

from headwater.erasure_keys import ErasureRequestError, parse_entity_pairs, resolve_entity_key
from headwater.schemas.definitions import Definitions, Entity
from headwater.schemas.errors import UnknownNameError

DEFS = Definitions(
    entities=(
        Entity(name="user", keys=("user_id",)),
        Entity(name="user_merchant", keys=("user_id", "merchant_id")),
        Entity(name="card", keys=("card_id", "issuer")),
    )
)


def test_pairs_keep_the_value_verbatim_after_the_first_equals_sign() -> None:
    assert parse_entity_pairs(["user_id=u=1 'x'"]) == {"user_id": "u=1 'x'"}
    assert parse_entity_pairs([" user_id=u1", "merchant_id=m1"]) == {
        "user_id": "u1",
        "merchant_id": "m1",
    }


@pytest.mark.parametrize(
    ("pairs", "field", "words"),
    [
        ([], None, "--entity FIELD=VALUE"),
        (["user_id"], "user_id", "write FIELD=VALUE"),
        (["=u1"], None, "write FIELD=VALUE"),
        (["user_id="], "user_id", "has no value"),
        (["user_id=a", "user_id=b"], "user_id", "given twice"),
    ],
)
def test_malformed_pairs_are_refused_naming_the_field_and_the_fix(
    pairs: list[str], field: str | None, words: str
) -> None:
    with pytest.raises(ErasureRequestError, match=words) as caught:
        parse_entity_pairs(pairs)
    assert caught.value.field == field


def test_the_entity_is_the_one_keyed_by_exactly_the_given_fields() -> None:
    entity, key = resolve_entity_key(DEFS, {"user_id": "u1"})
    assert (entity.name, key) == ("user", ("u1",))
    # Given in any order, the key comes back in the order of the entity's keys.
    entity, key = resolve_entity_key(DEFS, {"merchant_id": "m1", "user_id": "u1"})
    assert (entity.name, key) == ("user_merchant", ("u1", "m1"))
    entity, key = resolve_entity_key(
        DEFS, {"user_id": "u1", "merchant_id": "m1"}, entity_name="user_merchant"
    )
    assert key == ("u1", "m1")


def test_an_unknown_field_is_named_with_the_known_key_fields() -> None:
    with pytest.raises(ErasureRequestError, match="unknown key field 'usr_id'") as caught:
        resolve_entity_key(DEFS, {"usr_id": "u1"})
    assert caught.value.field == "usr_id"
    assert "'user_id'" in str(caught.value)
    with pytest.raises(ErasureRequestError, match="'card_id' is not a key field of entity 'user'"):
        resolve_entity_key(DEFS, {"card_id": "c1"}, entity_name="user")


def test_a_missing_key_field_is_named_with_the_option_that_adds_it() -> None:
    with pytest.raises(ErasureRequestError, match="add --entity issuer=VALUE") as caught:
        resolve_entity_key(DEFS, {"card_id": "c1"})
    assert caught.value.field == "issuer"
    with pytest.raises(ErasureRequestError, match="add --entity merchant_id=VALUE"):
        resolve_entity_key(DEFS, {"user_id": "u1"}, entity_name="user_merchant")


def test_an_unknown_entity_name_lists_the_known_ones() -> None:
    with pytest.raises(UnknownNameError, match="known: \\['card', 'user', 'user_merchant'\\]"):
        resolve_entity_key(DEFS, {"user_id": "u1"}, entity_name="users")


def test_entities_sharing_key_fields_need_a_name() -> None:
    defs = Definitions(
        entities=(Entity(name="buyer", keys=("id",)), Entity(name="seller", keys=("id",)))
    )
    with pytest.raises(ErasureRequestError, match="--entity-name"):
        resolve_entity_key(defs, {"id": "7"})
    assert resolve_entity_key(defs, {"id": "7"}, entity_name="seller")[0].name == "seller"


def test_a_value_that_would_join_into_another_key_is_refused() -> None:
    with pytest.raises(ErasureRequestError, match="U\\+001F") as caught:
        resolve_entity_key(DEFS, {"card_id": "c\x1f1", "issuer": "x"})
    assert caught.value.field == "card_id"
