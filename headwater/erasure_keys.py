"""Which entity key an erasure names: ``--entity FIELD=VALUE`` pairs read against the
definitions, with errors that name the field and the fix.

Shared by ``headwater erase`` and (through ``erase_entity``) the API, so both refuse the
same things the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from headwater.schemas.definitions import Definitions, Entity
from headwater.schemas.errors import FeatureStoreError

__all__ = ["ErasureRequestError", "parse_entity_pairs", "resolve_entity_key"]


class ErasureRequestError(FeatureStoreError, ValueError):
    """An erasure request does not name one entity key; the message names the field and the fix.

    Attributes:
        field: the key field at fault (``None``: the request as a whole).
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def parse_entity_pairs(pairs: Sequence[str]) -> dict[str, str]:
    """``["user_id=u00001", ...]`` as ``{"user_id": "u00001"}`` (values kept verbatim: only
    the first ``=`` separates).

    Raises:
        ErasureRequestError: no pair, a pair without ``=``, an empty field or value, or a
            field given twice.
    """
    if not pairs:
        msg = "name the entity to erase with --entity FIELD=VALUE (e.g. --entity user_id=u00001)"
        raise ErasureRequestError(msg)
    fields: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            msg = f"--entity {pair!r}: write FIELD=VALUE, e.g. --entity user_id=u00001"
            raise ErasureRequestError(msg, field=name or None)
        if not value:
            msg = f"--entity {pair!r}: field {name!r} has no value; write {name}=VALUE"
            raise ErasureRequestError(msg, field=name)
        if name in fields:
            msg = f"--entity: field {name!r} is given twice ({fields[name]!r} and {value!r}); give it once"
            raise ErasureRequestError(msg, field=name)
        fields[name] = value
    return fields


def resolve_entity_key(
    defs: Definitions, fields: Mapping[str, str], entity_name: str | None = None
) -> tuple[Entity, tuple[str, ...]]:
    """The entity whose key fields are exactly ``fields``' names (or ``entity_name``), and the
    key's values in the order of its ``keys``.

    Raises:
        ErasureRequestError: a field no entity (or not that entity) has, a key field
            missing, several entities with those fields and no ``entity_name``.
        UnknownNameError: ``entity_name`` names no entity (the known ones are listed).
    """
    given = set(fields)
    if entity_name is not None:
        entity = defs.entity(entity_name)
    else:
        exact = [e for e in defs.entities if set(e.keys) == given]
        if len(exact) > 1:
            names = sorted(e.name for e in exact)
            msg = (
                f"entities {names} all have the key fields {sorted(given)}; "
                f"choose one with --entity-name (e.g. --entity-name {names[0]})"
            )
            raise ErasureRequestError(msg)
        if exact:
            entity = exact[0]
        else:
            wider = [e for e in defs.entities if given < set(e.keys)]
            if len(wider) == 1:
                entity = wider[0]
            else:
                known = sorted({k for e in defs.entities for k in e.keys})
                unknown = sorted(given - set(known))
                if unknown:
                    msg = (
                        f"--entity: unknown key field {unknown[0]!r}; the entities' key fields "
                        f"are {known} (or give --entity-name)"
                    )
                    raise ErasureRequestError(msg, field=unknown[0])
                keys = {e.name: list(e.keys) for e in defs.entities}
                msg = (
                    f"--entity: no single entity has exactly the key fields {sorted(given)}; "
                    f"entities and their keys: {keys}; give every key field of one, "
                    "or --entity-name"
                )
                raise ErasureRequestError(msg)
    unknown = [f for f in fields if f not in entity.keys]
    if unknown:
        msg = (
            f"--entity: {unknown[0]!r} is not a key field of entity {entity.name!r}; "
            f"its key fields are {list(entity.keys)}"
        )
        raise ErasureRequestError(msg, field=unknown[0])
    missing = [k for k in entity.keys if k not in fields]
    if missing:
        msg = (
            f"--entity: entity {entity.name!r} is keyed by {list(entity.keys)}; key field "
            f"{missing[0]!r} is missing: add --entity {missing[0]}=VALUE"
        )
        raise ErasureRequestError(msg, field=missing[0])
    try:
        key = entity.key_from_parts([fields[k] for k in entity.keys])
    except FeatureStoreError as exc:  # EventError: a value holds the key separator
        raise ErasureRequestError(str(exc), field=getattr(exc, "field", None)) from exc
    return entity, key
