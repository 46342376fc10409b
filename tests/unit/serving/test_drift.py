"""Drift against exact computations: PSI and JS from the sketches agree with the same
measures computed with numpy on the raw values (same bins), a shifted distribution is
flagged and an unchanged one is not, for numbers and categories."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from headwater.schemas.definitions import Feature, FeatureSet
from headwater.schemas.monitoring import Monitoring
from headwater.serving.drift import column_drift, drift_body, js_divergence, psi
from headwater.serving.stats_profile import ColumnProfile

rng = np.random.default_rng(21)


def _exact_shares(values: np.ndarray, cuts: list[float]) -> list[float]:
    edges = [-math.inf, *cuts, math.inf]
    counts, _ = np.histogram(values, bins=edges)
    return list(counts / values.size)


def test_psi_and_js_of_known_vectors() -> None:
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert psi([0.25, 0.75], [0.75, 0.25]) == pytest.approx(2 * 0.5 * math.log(3))
    assert js_divergence([1.0, 0.0], [0.0, 1.0]) == 1.0
    assert js_divergence([0.3, 0.7], [0.3, 0.7]) == 0.0


def test_shifted_numbers_are_flagged_and_unchanged_ones_are_not() -> None:
    reference = rng.normal(100, 15, 80_000)
    same = rng.normal(100, 15, 40_000)
    shifted = rng.normal(108, 15, 40_000)  # about half a standard deviation
    ref = ColumnProfile.of(pa.array(reference), "number")
    limits = (0.2, 0.05)
    calm = column_drift("amount", ref, ColumnProfile.of(pa.array(same), "number"), limits)
    moved = column_drift("amount", ref, ColumnProfile.of(pa.array(shifted), "number"), limits)
    assert not calm["drifted"] and calm["psi"] < 0.02
    assert moved["drifted"] and moved["psi"] > 0.2
    # The same measure computed exactly, on the raw values, with the bins the sketch cut.
    cuts = [float(b["label"].split(", ")[1].rstrip(")")) for b in moved["bins"][1:-1]]
    cuts.append(float(moved["bins"][-1]["label"].removeprefix(">= ")))
    exact = psi(_exact_shares(reference, cuts), _exact_shares(shifted, cuts))
    assert moved["psi"] == pytest.approx(exact, rel=0.15)
    exact_js = js_divergence(_exact_shares(reference, cuts), _exact_shares(shifted, cuts))
    assert moved["js"] == pytest.approx(exact_js, rel=0.15)
    assert len(moved["bins"]) == 10
    assert sum(b["reference"] for b in moved["bins"]) == pytest.approx(1.0)


def test_shifted_categories_are_flagged_with_exact_shares() -> None:
    names = np.array(["WEB", "APP", "STORE", "PHONE"])
    reference = rng.choice(names, 30_000, p=[0.5, 0.3, 0.15, 0.05])
    same = rng.choice(names, 20_000, p=[0.5, 0.3, 0.15, 0.05])
    moved_values = rng.choice(names, 20_000, p=[0.25, 0.55, 0.15, 0.05])
    ref = ColumnProfile.of(pa.array(reference.tolist()), "string")
    calm = column_drift(
        "channel", ref, ColumnProfile.of(pa.array(same.tolist()), "string"), (0.2, None)
    )
    moved = column_drift(
        "channel", ref, ColumnProfile.of(pa.array(moved_values.tolist()), "string"), (0.2, None)
    )
    assert not calm["drifted"] and moved["drifted"]
    shares = {b["label"]: b["current"] for b in moved["bins"]}
    assert shares["APP"] == pytest.approx(float((moved_values == "APP").mean()), abs=1e-12)
    assert shares["(other)"] == pytest.approx(0.0, abs=1e-12)


def test_body_uses_each_features_own_limit() -> None:
    fs = FeatureSet(
        name="s",
        entity="user",
        source="txns",
        features=(
            Feature(name="a", function="count"),
            Feature(name="b", function="count", monitoring=Monitoring(drift_psi=5.0)),
        ),
        monitoring=Monitoring(drift_psi=0.1),
    )
    ref = {n: ColumnProfile.of(pa.array(rng.normal(0, 1, 5_000)), "number") for n in "ab"}
    cur = {n: ColumnProfile.of(pa.array(rng.normal(1, 1, 5_000)), "number") for n in "ab"}
    body = drift_body(fs, ref, cur, ({"of": "history"}, {"of": "served"}))
    assert body["drifted"] == ["a"]
    assert [c["threshold"]["psi"] for c in body["columns"]] == [0.1, 5.0]


def test_event_time_and_identifiers_are_skipped_with_the_reason() -> None:
    fs = FeatureSet(
        name="s", entity="user", source="txns", features=(Feature(name="a", function="count"),)
    )
    ids = [f"t{i}" for i in range(3_000)]
    ref = {
        "ts": ColumnProfile.of(pa.array(np.arange(1_000, dtype=float)), "number"),
        "txn": ColumnProfile.of(pa.array(ids[:1_500]), "string"),
        "city": ColumnProfile.of(pa.array(["Oslo", "Lyon"] * 500), "string"),
    }
    cur = {
        "ts": ColumnProfile.of(pa.array(np.arange(5_000, 6_000, dtype=float)), "number"),
        "txn": ColumnProfile.of(pa.array(ids[1_500:]), "string"),
        "city": ColumnProfile.of(pa.array(["Oslo", "Lyon"] * 500), "string"),
    }
    body = drift_body(fs, ref, cur, ({}, {}), time_field="ts")
    assert [c["name"] for c in body["columns"]] == ["city"] and body["drifted"] == []
    reasons = {s["name"]: s["reason"] for s in body["skipped"]}
    assert reasons["ts"].startswith("the event time") and reasons["txn"].startswith("an identifier")
    # Unique identifiers have no most frequent values (the sketch's estimates would be noise).
    assert ColumnProfile.of(pa.array(ids), "string").top() == []
