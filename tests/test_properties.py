"""Property-based tests (hypothesis): random data through the loader and the fairness metrics.

The contract: any input gives either a result or an :class:`AuditError` with a one-line
message, never another exception; and the numbers obey the metrics' invariants (rates in
[0, 1], max-min differences >= 0 and unchanged when the groups are relabelled, ratios in
[0, 1] under the min/max convention). Fairness is exercised through the public
``audit_model(..., methods=["fairness"])`` and its JSON, not its internals.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from audit.core.dataset import DatasetSpec, build_audit_data, read_table
from audit.errors import AuditError
from audit.runner import audit_model

SETTINGS = settings(max_examples=50, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# ---- random data frames ----------------------------------------------------------------------

_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                min_size=0, max_size=6)
_CELLS = {
    "float": st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.none()),
    "int": st.integers(-10**6, 10**6),
    "text": st.sampled_from(["a", "b", "c", "NA", "?", " b ", "1,000", "é", "\u202e"]),
    "free_text": _TEXT,
    "bool": st.booleans(),
    "mixed": st.one_of(st.integers(-5, 5), st.sampled_from(["x", "", "nan", "inf"]), st.none()),
}


_CLEAN = {
    "float": st.floats(-1e6, 1e6, width=32),
    "int": st.integers(-10**6, 10**6),
    "text": st.sampled_from(["a", "b", "c", "NA", "?", " b ", "é", "\u202e", "<i>"]),
    "bool": st.booleans(),
}


@st.composite
def frames(draw) -> tuple[pd.DataFrame, DatasetSpec]:
    """Half the frames are clean (they must load), half have missing, odd or broken cells."""
    dirty = draw(st.booleans())
    n = draw(st.integers(1, 25) if dirty else st.integers(2, 25))
    n_cols = draw(st.integers(1, 4))
    names = draw(st.lists(st.one_of(st.sampled_from(["x", "age", "<b>", "名前", "a b", "y2"]), _TEXT),
                          min_size=n_cols, max_size=n_cols, unique=True))
    cells = _CELLS if dirty else _CLEAN
    data: dict[str, list[Any]] = {}
    for name in names:
        kind = draw(st.sampled_from(sorted(cells)))
        data[name] = draw(st.lists(cells[kind], min_size=n, max_size=n))
    target_kind = draw(st.sampled_from(["01", "text", "one_class", "with_none", "float"]
                                       if dirty else ["01", "text"]))
    target = {
        "01": st.integers(0, 1), "text": st.sampled_from(["yes", "no"]),
        "one_class": st.just("yes"), "with_none": st.one_of(st.sampled_from([0, 1]), st.none()),
        "float": st.floats(-1, 2),
    }[target_kind]
    data["target"] = draw(st.lists(target, min_size=n, max_size=n))
    group = st.sampled_from(["F", "M", "X"])
    data["group"] = draw(st.lists(st.one_of(group, st.none()) if dirty else group,
                                  min_size=n, max_size=n))
    frame = pd.DataFrame(data)
    positive = draw(st.sampled_from([None, "yes", 1, "missing-label"] if dirty
                                    else [{"01": 1, "text": "yes"}[target_kind]]))
    task = draw(st.sampled_from(["binary", "binary", "multiclass", "regression"] if dirty
                                else ["binary", "multiclass"]))
    return frame, DatasetSpec(target="target", sensitive=("group",), positive_label=positive,
                              task=task)


def _check_error(exc: AuditError) -> None:
    msg = str(exc)
    assert msg.strip(), f"{type(exc).__name__} without a message"


@SETTINGS
@given(frames())
def test_build_audit_data_gives_data_or_an_audit_error(case):
    frame, spec = case
    try:
        data = build_audit_data(frame, spec, source="random.csv")
    except AuditError as exc:
        _check_error(exc)
        return
    assert data.X.shape[0] == len(frame) >= 2
    assert np.isfinite(data.X).all()
    if spec.task == "binary":
        assert set(np.unique(data.y)) <= {0, 1}
    assert list(data.sensitive["group"]) == [str(v).strip() for v in frame["group"]]


@SETTINGS
@given(frames(), st.sampled_from([",", ";"]))
def test_csv_round_trip_through_read_table(tmp_path_factory, case, sep):
    frame, spec = case
    path = tmp_path_factory.mktemp("csv") / "random.csv"
    frame.to_csv(path, index=False, sep=sep)
    try:
        loaded = read_table(path)
        build_audit_data(loaded, spec, source=path.name)
    except AuditError as exc:
        _check_error(exc)


@SETTINGS
@given(st.binary(max_size=300))
def test_read_table_on_arbitrary_bytes(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("bytes") / "data.csv"
    path.write_bytes(blob)
    try:
        frame = read_table(path)
    except AuditError as exc:
        _check_error(exc)
        return
    assert len(frame) >= 1


# ---- fairness metrics ------------------------------------------------------------------------

FAST = {"fairness": {"n_bootstrap": 0, "n_permutations": 0, "what_if": False, "min_group_size": 3}}
RATES = {"base_rate", "selection_rate", "accuracy", "balanced_accuracy", "tpr", "fpr", "fnr",
         "tnr", "ppv", "npv", "auc"}


def _estimates(obj: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], float]]:
    """Every ``{"value": number, ...}`` in the fairness JSON, with the keys leading to it."""
    if isinstance(obj, dict):
        if isinstance(obj.get("value"), (int, float)) and not isinstance(obj.get("value"), bool):
            yield path, float(obj["value"])
        for k, v in obj.items():
            yield from _estimates(v, (*path, str(k)))
    elif isinstance(obj, list):
        for v in obj:
            yield from _estimates(v, path)


@st.composite
def scored_groups(draw) -> tuple[pd.DataFrame, float]:
    n = draw(st.integers(6, 120))
    k = draw(st.integers(2, 4))
    seed = draw(st.integers(0, 2**32 - 1))
    labels = draw(st.lists(st.sampled_from(["F", "M", "X", "<i>", "ذكر", "0", "None", "a,b"]),
                           min_size=k, max_size=k, unique=True))
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.ones(k))
    frame = pd.DataFrame({
        "x": rng.normal(size=n).round(3),
        "g": rng.choice(labels, size=n, p=weights),
        "y": rng.integers(0, 2, size=n),
    })
    return frame, draw(st.floats(0.5, 5))


def _fairness(frame: pd.DataFrame, slope: float) -> dict | None:
    try:
        report = audit_model(lambda X: 1 / (1 + np.exp(-slope * X[:, 0])), frame, target="y",
                             sensitive=["g"], methods=["fairness"], method_options=FAST)
    except AuditError as exc:
        _check_error(exc)
        return None
    doc = report.to_json()["methods"]["fairness"]
    assert doc["status"] in ("ok", "skipped"), doc  # never "failed" (an internal error)
    return doc.get("result") if doc["status"] == "ok" else None


@SETTINGS
@given(scored_groups())
def test_fairness_metrics_obey_their_invariants(case):
    frame, slope = case
    result = _fairness(frame, slope)
    if result is None:
        return
    json.dumps(result, allow_nan=False)  # undefined is None, never NaN or inf
    for path, value in _estimates(result):
        assert math.isfinite(value), path
        leaf = next((p for p in reversed(path) if p in RATES or "ratio" in p or "difference" in p), None)
        if leaf in RATES:
            assert -1e-12 <= value <= 1 + 1e-12, (path, value)
        elif leaf is not None and "ratio" in leaf:
            assert -1e-12 <= value <= 1 + 1e-12, (path, value)
        elif leaf is not None and "difference" in leaf and "accuracy" not in leaf and "auc" not in leaf:
            assert -1e-12 <= value <= 1 + 1e-12, (path, value)


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(scored_groups())
def test_fairness_disparities_do_not_depend_on_group_names(case):
    """Relabel the groups (reverse their names): every max-min difference and min/max ratio
    stays the same, so a disparity is symmetric in the groups it compares."""
    frame, slope = case
    names = sorted(frame["g"].unique())
    assume(len(names) >= 2)
    swapped = frame.assign(g=frame["g"].map(dict(zip(names, reversed(names)))))
    a, b = _fairness(frame, slope), _fairness(swapped, slope)
    if a is None or b is None:
        assert (a is None) == (b is None)
        return

    def disparities(result: dict) -> dict[tuple[str, ...], float]:
        return {p: v for p, v in _estimates(result)
                if any(("difference" in k or "ratio" in k) for k in p) and "groups" not in p}

    da, db = disparities(a), disparities(b)
    assert da.keys() == db.keys()
    for key in da:
        assert da[key] == pytest.approx(db[key], abs=1e-9), key
