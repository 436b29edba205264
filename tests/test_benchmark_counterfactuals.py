"""benchmarks/counterfactuals.py's DiCE comparison: what it hands DiCE and reads back is the
audit's own model and encoding, and without DiCE the part is skipped with its install line.
(Its timings are not tested: they are measurements.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "counterfactuals.py"


@pytest.fixture(scope="module")
def bench():
    """The benchmark as a module (loading it sets TQDM_DISABLE: kept as it was)."""
    from tests.conftest import load_benchmark

    before = os.environ.get("TQDM_DISABLE")
    try:
        return load_benchmark("counterfactuals")
    finally:
        if before is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = before


@pytest.fixture(scope="module")
def adult(bench):
    from audit.methods._cf.space import Constraints, Space

    model, data, train = bench.load_adult()
    space = Space(data.encoding, train.X, Constraints(immutable=(*bench.IMMUTABLE, "sex", "race")))
    return model, data, train, space


def test_dice_part_without_dice_prints_the_install_commands_and_exits_0():
    code = ("import runpy, sys; sys.modules['dice_ml'] = None; "  # None: `import dice_ml` fails
            f"sys.argv = [{str(BENCH)!r}, '--only', 'dice']; runpy.run_path({str(BENCH)!r}, run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "pip install --no-deps --target /tmp/dice_pkgs dice-ml==0.12 raiutils" in proc.stdout
    assert "PYTHONPATH=/tmp/dice_pkgs:$PWD" in proc.stdout
    assert "comparison is skipped" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_raw_frame_wrapper_scores_exactly_as_the_audit_scores_encoded_rows(bench, adult):
    model, data, _, space = adult
    rows = np.random.default_rng(0).choice(data.n_rows, 300, replace=False)
    frame = bench.dice_frame(space, data.X[rows])
    wrapped = bench.RawFrameModel(model, data.encoding)
    np.testing.assert_array_equal(wrapped.predict_proba(frame), model.predict_proba(data.X[rows]))
    np.testing.assert_array_equal(wrapped.predict(frame), model.predict(data.X[rows]))
    # raw values DiCE sees: level names as in the data, integer features as integers
    assert set(frame["workclass"]) <= set(data.encoding.feature("workclass").levels)
    assert frame["age"].dtype == np.int64 and frame["hours-per-week"].dtype == np.int64


def test_dice_rows_read_back_unchanged_and_a_fractional_integer_counts_as_a_violation(bench, adult):
    _, data, _, space = adult
    num0, cat0 = space.split(data.X[:50])
    num, cat = bench.from_dice_frame(space, bench.dice_frame(space, data.X[:50]))
    np.testing.assert_array_equal(num, num0)
    np.testing.assert_array_equal(cat, cat0)
    assert space.violations(num, cat, num0, cat0).sum() == 0
    # a value DiCE might return between integers is read as it is, not rounded into validity
    frame = bench.dice_frame(space, data.X[:50]).astype({"hours-per-week": float})
    frame.loc[0, "hours-per-week"] += 0.5
    num, cat = bench.from_dice_frame(space, frame)
    assert space.violations(num, cat, num0, cat0).tolist() == [1] + [0] * 49
    # a changed immutable feature is a violation too
    frame = bench.dice_frame(space, data.X[:50])
    frame.loc[3, "sex"] = next(lv for lv in data.encoding.feature("sex").levels if lv != frame.loc[3, "sex"])
    num, cat = bench.from_dice_frame(space, frame)
    assert space.violations(num, cat, num0, cat0)[3] == 1


def test_search_limits_are_the_ones_the_method_searches_within(bench, adult):
    """Every counterfactual the project's method returns lies inside the per-row ranges and
    permitted levels the benchmark hands DiCE."""
    from audit.core.method import RunContext
    from audit.methods.counterfactuals import Counterfactuals, CounterfactualsConfig

    model, data, train, space = adult
    cfg = CounterfactualsConfig(max_search_rows=40, n_counterfactuals=1, immutable=bench.IMMUTABLE,
                                n_bootstrap=10, n_permutations=9)
    res = Counterfactuals().run(model, data, cfg, RunContext(rng=np.random.default_rng(0), train=train, seed=0))
    rows = np.array([r.row for r in res.rows])
    num0, cat0, lo, hi, masks = bench.search_limits(space, data, train, rows)
    assert masks[[s.name for s in space.cat].index("sex")].sum(axis=1).tolist() == [1] * len(rows)
    cf = {c.row: c for c in res.counterfactuals}
    checked = 0
    for i, r in enumerate(rows):
        if r not in cf:
            continue
        values = {ch.feature: ch.counterfactual for ch in cf[r].changes}
        for j, s in enumerate(space.num):
            if s.name in values:
                v = float(values[s.name].replace(",", ""))
                assert lo[i, j] - 1e-6 <= v <= hi[i, j] + 1e-6, (s.name, v, lo[i, j], hi[i, j])
                checked += 1
        for g, s in enumerate(space.cat):
            if s.name in values:
                assert masks[g][i, s.levels.index(values[s.name])], (s.name, values[s.name])
                checked += 1
    assert checked >= 40
