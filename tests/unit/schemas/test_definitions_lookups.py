"""Lookups by name on the definitions raise one project error, ``UnknownNameError``: a
``FeatureStoreError`` (so the CLI and the API handle it like any other) and a ``KeyError``
(so code catching lookups the built-in way keeps working), whose text lists the known names."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from headwater.examples import EXAMPLES
from headwater.schemas.errors import FeatureStoreError, UnknownNameError
from headwater.schemas.loader import load_definitions

DEFS = load_definitions(EXAMPLES)


@pytest.mark.parametrize(
    ("lookup", "kind", "name", "text"),
    [
        (lambda: DEFS.entity("shop"), "entity", "shop", "unknown entity 'shop'; known: ['user']"),
        (
            lambda: DEFS.source("clicks"),
            "source",
            "clicks",
            "unknown source 'clicks'; known: ['transactions']",
        ),
        (
            lambda: DEFS.feature_set("nope"),
            "feature set",
            "nope",
            "unknown feature set 'nope'; known: ['user_spend']",
        ),
        (
            lambda: DEFS.feature_set("user_spend", 9),
            "feature set version",
            "user_spend@v9",
            "feature set 'user_spend' has no active version 9; it has ['v1']",
        ),
        (
            lambda: DEFS.feature_service("nope"),
            "feature service",
            "nope",
            "unknown feature service 'nope'; known: ['fraud_model']",
        ),
        (
            lambda: DEFS.feature_set("user_spend").feature("spend_1y"),
            "feature",
            "spend_1y",
            "feature set 'user_spend' has no feature 'spend_1y'; it has [",
        ),
    ],
)
def test_every_lookup_raises_one_error_naming_what_is_known(
    lookup: Callable[[], Any], kind: str, name: str, text: str
) -> None:
    with pytest.raises(UnknownNameError) as info:
        lookup()
    assert isinstance(info.value, FeatureStoreError) and isinstance(info.value, KeyError)
    assert (info.value.kind, info.value.name) == (kind, name)
    assert str(info.value).startswith(text)  # the sentence itself, not KeyError's repr of it
