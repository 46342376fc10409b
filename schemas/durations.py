"""Durations as written in definitions (``90s``, ``15m``, ``1h``, ``7d``), held as milliseconds."""

from __future__ import annotations

import re

__all__ = ["format_duration", "parse_duration"]

_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_PATTERN = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")


def parse_duration(text: str | int) -> int:
    """Return the duration in milliseconds.

    Raises:
        ValueError: with a message giving the accepted forms.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        # Bare integers are ambiguous (seconds? ms?), so they are refused with the fix.
        msg = (
            f"got the bare number {text}; write a duration with a unit, e.g. '{text}s' or '{text}m'"
        )
        raise ValueError(msg)  # noqa: TRY004 - the loaders catch ValueError and name the field
    match = _PATTERN.match(str(text))
    if match is None or int(match.group(1)) == 0:
        msg = f"got {text!r}; expected a positive duration like '30s', '15m', '1h' or '7d'"
        raise ValueError(msg)
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def format_duration(ms: int) -> str:
    """The shortest exact spelling of ``ms`` in the definition syntax (``3600000`` -> ``1h``)."""
    for unit in ("d", "h", "m", "s"):
        if ms % _UNIT_MS[unit] == 0:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    return f"{ms}ms"
