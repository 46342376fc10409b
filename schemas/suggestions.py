"""The known name nearest an unknown one, for error messages (``summ``: did you mean ``sum``?).

One wording and one measure of "near" (difflib's ratio, at its default cutoff 0.6) for every
error that names an unknown name from a closed set: the definitions loader, the definition
objects' own checks and the expression compiler.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["did_you_mean"]


def did_you_mean(name: object, known: Iterable[str]) -> str:
    """``"; did you mean 'sum'?"`` naming the known name nearest ``name``, or ``""`` when none
    is close; appended to the end of a message."""
    close = difflib.get_close_matches(str(name), list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
