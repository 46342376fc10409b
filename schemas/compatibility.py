"""Avro schema evolution under BACKWARD rules, checked by the Apache ``avro`` package.

BACKWARD: consumers using the new schema can read every event written with the old one, so
the stream workers (whose reader schema is always the source's current schema) can read the
whole topic. Adding a field needs a default; removing one is fine; changing a type only along
Avro's promotions (int -> long -> float -> double, string <-> bytes).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import avro.compatibility
import avro.schema

__all__ = ["backward_problems"]


def _field_at(schema: Mapping[str, Any], location: str) -> str:
    """Turn ``/fields/1/type`` into the field's name, for messages people can act on."""
    parts = [p for p in location.split("/") if p]
    if len(parts) >= 2 and parts[0] == "fields" and parts[1].isdigit():
        fields = schema.get("fields", [])
        index = int(parts[1])
        if index < len(fields):
            return str(fields[index]["name"])
    return location or "/"


def backward_problems(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Why ``new`` cannot read data written with ``old``; empty when it can.

    Each problem names the field and the fix.
    """
    reader = avro.schema.parse(json.dumps(new))
    writer = avro.schema.parse(json.dumps(old))
    checker = avro.compatibility.ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]  # avro lacks annotations here
    result = checker.get_compatibility(reader, writer)
    if result.compatibility is avro.compatibility.SchemaCompatibilityType.compatible:
        return []
    problems = []
    kinds = {str(getattr(k, "value", k)) for k in result.incompatibilities}
    locations = sorted(loc for loc in result.locations if loc != "/") or ["/"]
    for location in locations:
        field = _field_at(new, location)
        if "reader_field_missing_default_value" in kinds:
            hint = f"field {field!r} is new and has no default; add a default so old events can be read"
        else:
            hint = (
                f"field {field!r}: {'; '.join(sorted(result.messages)) or ', '.join(sorted(kinds))}"
            )
        problems.append(hint + " (BACKWARD compatibility)")
    return problems
