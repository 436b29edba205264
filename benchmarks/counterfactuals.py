"""Benchmark: counterfactual search on the Adult MLP against a random-sampling baseline and DiCE.

1,000 rows the model predicts "<=50K" (seeded sample), with sex, race, age and native-country
immutable. Both searches run in this process, one torch thread, and are measured by the same
quality code (``audit.methods._cf.quality.measure``). Targets (issue 7): the batched gradient
search under 30 s, validity >= 99%, no constraint violations, at most 2 features changed on
average, rare-level share reported.

The baseline is the simple approach the method should beat: for each row, draw candidates that
change 1-3 random mutable features to random permitted values (uniform over the observed range
and over every permitted level, rare ones included) in batches of 50, and stop at the first
candidate the model flips (at most 40 batches).

Second part (issue 13): an ordinary scikit-learn model, where every model call costs a few
milliseconds whatever its size -- a HistGradientBoosting pipeline (one-hot encoder + trees, fed
the raw data frame) trained on 70% of German credit (``benchmarks/data/german_credit.csv``),
audited on the other 300 rows, with ``sex`` and ``age_group`` (age under 25, derived from
``age``) as sensitive attributes. Counterfactuals (default options) and LIME (default options)
are timed with the current code and with the code of ``BASE_COMMIT`` (the last commit before they
batched their model calls, extracted with ``git archive`` into a temporary folder and run in a
subprocess of this run), and LIME also with its row-by-row path (``batch_samples`` =
``num_samples``) in this process. It prints the time ratios, the number of model calls, whether
the results are identical, and the share of counterfactuals that move a row out of its age
group with and without ``[data] sensitive_sources = { age_group = ["age"] }``.

Third part (issue 17): DiCE (``dice-ml`` 0.12), the usual peer, on the same Adult MLP: the
project's search (k = 1) picks a seeded sample of ``--dice-rows`` (100) rows predicted "<=50K",
and DiCE's model-agnostic methods (random, genetic, kdtree; ``total_CFs=1``, DiCE's other
defaults) search the same rows with the same immutable features and, per row, the same numeric
ranges and permitted levels as the project's search. DiCE calls the model through
``backend="sklearn"``: a wrapper whose ``predict_proba`` takes the raw frame and runs the audit's
encoding and loaded torch model (nothing retrained). One torch thread for both; every result is
confirmed by the model and measured by the same quality code. DiCE is not a dependency (its
requirements pull xgboost and a 350 MB nvidia-nccl wheel): without it the part prints how to
install it outside the project's environment and is skipped.

Run: ``.venv/bin/python benchmarks/counterfactuals.py [--rows 1000] [--k 1] [--only adult|dice|german]``
(with DiCE: ``PYTHONPATH=/tmp/dice_pkgs:$PWD``, see ``DICE_INSTALL``)
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# no progress bar per DiCE call (tqdm reads this when it is first imported)
os.environ.setdefault("TQDM_DISABLE", "1")
# the baseline worker imports `audit` from the extracted base commit instead
sys.path.insert(0, os.environ.get("AUDIT_BENCH_SRC") or str(ROOT))

# The last commit before LIME and the counterfactual search batched their model calls.
BASE_COMMIT = "d384842"


def random_baseline(space, scorer, num0, cat0, lo, hi, masks, rng, *, batch=50, max_batches=40):
    """First flipping random candidate per row (row by row, batches of ``batch``)."""
    from audit.methods._cf.genetic import movable_features

    movable = movable_features(space, lo, hi, masks)
    n = len(num0)
    out_num, out_cat = num0.copy(), cat0.copy()
    found = np.zeros(n, bool)
    for i in range(n):
        feats = np.flatnonzero(movable[i])
        if feats.size == 0:
            continue
        for _ in range(max_batches):
            nm = np.repeat(num0[[i]], batch, axis=0)
            ct = np.repeat(cat0[[i]], batch, axis=0)
            k = rng.integers(1, min(3, feats.size) + 1, batch)
            for c in range(batch):
                for fi in rng.choice(feats, k[c], replace=False):
                    kind, j = space.kind[fi]
                    if kind == "num":
                        s = space.num[j]
                        v = rng.uniform(max(lo[i, j], s.obs_lo), min(hi[i, j], s.obs_hi))
                        nm[c, j] = np.round(v) if s.integer else v
                    else:
                        levels = np.flatnonzero(masks[j][i])
                        ct[c, j] = rng.choice(levels)
            ok = scorer.accept(nm, ct)
            if ok.any():
                c = int(np.flatnonzero(ok)[0])
                out_num[i], out_cat[i], found[i] = nm[c], ct[c], True
                break
    return out_num, out_cat, found


# ---- German credit, scikit-learn pipeline: batched against the base commit --------------------
# (timed with age free to change, as the base commit allowed; the sensitive_sources default is
# run once more for the share of counterfactuals leaving their age group)

def german_setup(seed: int = 0):
    """HistGB pipeline on the raw frame, trained on 700 rows; the other 300 audited."""
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from audit.core.adapter import as_adapter
    from audit.core.dataset import DatasetSpec, build_audit_data

    df = pd.read_csv(ROOT / "benchmarks" / "data" / "german_credit.csv")
    df["age_group"] = np.where(df.age < 25, "under 25", "25 or over")
    idx = np.random.default_rng(seed).permutation(len(df))
    tr, te = df.iloc[idx[:700]].reset_index(drop=True), df.iloc[idx[700:]].reset_index(drop=True)
    feats = [c for c in df.columns if c not in ("risk", "age_group")]
    cats = [c for c in feats if not pd.api.types.is_numeric_dtype(df[c])]
    pipe = make_pipeline(make_column_transformer((OneHotEncoder(handle_unknown="ignore"), cats),
                                                 remainder="passthrough"),
                         HistGradientBoostingClassifier(random_state=0)).fit(tr[feats], tr["risk"])
    kw = dict(target="risk", features=tuple(feats), sensitive=("sex", "age_group"))
    if "sensitive_sources" in DatasetSpec.__dataclass_fields__:
        kw["sensitive_sources"] = {"age_group": ["age"]}
    spec = DatasetSpec(**kw)
    train = build_audit_data(tr, spec)
    data = build_audit_data(te, spec, train.encoding)
    calls = [0]
    predict_proba = pipe.predict_proba

    def counted(X):
        calls[0] += 1
        return predict_proba(X)

    pipe.predict_proba = counted
    return as_adapter(pipe, task="binary", encoding=data.encoding, raw_input=True), data, train, calls


def _group_moves(res, data) -> float | None:
    """Share of counterfactuals whose age change crosses 25 (moves the row's age group)."""
    moved = total = 0
    for cf in res.counterfactuals:
        total += 1
        for c in cf.changes:
            if c.feature == "age":
                a, b = float(c.original.replace(",", "")), float(c.counterfactual.replace(",", ""))
                moved += (a < 25) != (b < 25)
    return moved / total if total else None


def german_worker(sources_free: bool, lime: bool = True) -> dict:
    """Time counterfactuals and LIME with whichever `audit` is importable; digests of the results."""
    import dataclasses
    import hashlib

    from audit.core.method import RunContext
    from audit.methods.counterfactuals import Counterfactuals, CounterfactualsConfig
    from audit.methods.lime import Lime, LimeConfig

    model, data, train, calls = german_setup()
    out: dict = {}
    cfg = CounterfactualsConfig()
    if sources_free and "sensitive_sources_immutable" in CounterfactualsConfig.__dataclass_fields__:
        cfg = dataclasses.replace(cfg, sensitive_sources_immutable=False)
    ctx = dataclasses.replace(RunContext.default(0), train=train)
    calls[0] = 0
    t = time.perf_counter()
    res = Counterfactuals().run(model, data, cfg, ctx)
    out["cf_s"], out["cf_calls"] = time.perf_counter() - t, calls[0]
    out["cf_rows"], out["cf_validity"] = res.n_searched, res.quality.validity
    out["cf_group_moves"] = _group_moves(res, data)
    out["cf_digest"] = hashlib.sha256(repr([(c.row, c.cost, c.changes) for c in res.counterfactuals])
                                      .encode()).hexdigest()[:12]
    if not lime:
        return out
    ctx = dataclasses.replace(RunContext.default(0), train=train)
    calls[0] = 0
    t = time.perf_counter()
    lime = Lime().run(model, data, LimeConfig(), ctx)
    out["lime_s"], out["lime_calls"], out["lime_n"] = time.perf_counter() - t, calls[0], lime._n_explanations
    out["lime_digest"] = hashlib.sha256(lime.values.tobytes() + lime.fidelity.tobytes()).hexdigest()[:12]
    return out


def german_main() -> None:
    import dataclasses

    from _common import machine

    from audit.core.method import RunContext
    from audit.methods.lime import Lime, LimeConfig

    print(f"\n== German credit, HistGradientBoosting pipeline on the raw frame (700 training rows, 300 "
          f"audited); baseline: the code of commit {BASE_COMMIT}")
    # timed with the base commit's constraints (it had no sensitive_sources: age could change)
    now = german_worker(sources_free=True)
    fixed = german_worker(sources_free=False, lime=False)
    # LIME's row-by-row path in this process: one model call per explanation
    model, data, train, calls = german_setup()
    ctx = dataclasses.replace(RunContext.default(0), train=train)
    calls[0] = 0
    t = time.perf_counter()
    per_row = Lime().run(model, data, LimeConfig(batch_samples=LimeConfig().num_samples), ctx)
    t_per_row, c_per_row = time.perf_counter() - t, calls[0]
    import hashlib
    per_row_digest = hashlib.sha256(per_row.values.tobytes() + per_row.fidelity.tobytes()).hexdigest()[:12]
    base = None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", BASE_COMMIT, "audit", "templates"],
                                     check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
            proc = subprocess.run([sys.executable, __file__, "--german-worker"], capture_output=True,
                                  text=True, env={**os.environ, "AUDIT_BENCH_SRC": tmp}, check=True)
            base = json.loads(proc.stdout.strip().splitlines()[-1])
        except (subprocess.CalledProcessError, OSError, ValueError) as exc:
            print(f"baseline commit {BASE_COMMIT} could not be run ({exc}); only this code is timed")
    print(f"{'':44s} {'this code':>12s} {'base commit':>12s} {'ratio':>7s}   [{machine()}]")

    def line(name, key, fmt="{:.1f}"):
        b = base[key] if base else None
        ratio = f"{b / now[key]:.2f}x" if b and now[key] else "—"
        print(f"{name:44s} {fmt.format(now[key]):>12s} {fmt.format(b) if b is not None else '—':>12s} {ratio:>7s}")

    line(f"counterfactuals, {now['cf_rows']} searched rows (s)", "cf_s")
    line("  model calls", "cf_calls", "{:,}")
    line(f"LIME, {now['lime_n']} explanations (s)", "lime_s")
    line("  model calls", "lime_calls", "{:,}")
    print(f"LIME row by row in this run (batch_samples = num_samples): {t_per_row:.1f} s, {c_per_row:,} model "
          f"calls; batched/row-by-row time ratio {t_per_row / now['lime_s']:.2f}x; identical results: "
          f"{per_row_digest == now['lime_digest']}")
    if base:
        print(f"identical to the base commit: LIME {base['lime_digest'] == now['lime_digest']}, counterfactuals "
              f"{base['cf_digest'] == now['cf_digest']}")
    print(f"validity: this code {_pct(now['cf_validity'])}, base {_pct(base['cf_validity']) if base else '—'}")
    print(f"counterfactuals moving a row out of its age group (under 25 / 25 or over): with "
          f"sensitive_sources (the default) {_pct(fixed['cf_group_moves'])} ({fixed['cf_s']:.1f} s, validity "
          f"{_pct(fixed['cf_validity'])}); sources allowed to change {_pct(now['cf_group_moves'])}; base commit "
          f"{_pct(base['cf_group_moves']) if base else '—'}")


# ---- DiCE, the usual peer, on the same Adult rows (issue 17) ----------------------------------

DICE_INSTALL = (
    "DiCE is not importable, so its comparison is skipped. It is not a dependency of audit-suite "
    "(its requirements pull xgboost, lightgbm and a 350 MB nvidia-nccl wheel); install it for this "
    "benchmark only, outside the project's environment, and run again:\n"
    "  .venv/bin/python -m pip install --no-deps --target /tmp/dice_pkgs dice-ml==0.12 raiutils\n"
    "  PYTHONPATH=/tmp/dice_pkgs:$PWD .venv/bin/python benchmarks/counterfactuals.py --only dice")
DICE_METHODS = ("random", "genetic", "kdtree")


class RawFrameModel:
    """A scikit-learn-style classifier of raw rows, for DiCE's ``backend="sklearn"``:
    ``predict_proba`` takes the raw data frame and runs the audit's own encoding and its loaded
    torch model (the same adapter the project's search scores with; nothing is retrained)."""

    def __init__(self, model, encoding) -> None:
        self.model, self.encoding = model, encoding
        self.classes_ = np.array([0, 1])

    def predict_proba(self, frame):
        return self.model.predict_proba(self.encoding.encode(frame))

    def predict(self, frame):
        return self.model.predict(self.encoding.encode(frame))


def dice_frame(space, X):
    """Encoded rows -> the raw frame DiCE works on: numerics in their own units (integer
    features as int64, so DiCE keeps them integers) and categoricals as their level names."""
    import pandas as pd

    num, cat = space.split(X)
    cols = {}
    for fi, (kind, j) in enumerate(space.kind):
        if kind == "num":
            s = space.num[j]
            cols[s.name] = num[:, j].astype(np.int64) if s.integer else num[:, j]
        else:
            cols[space.cat[j].name] = np.asarray(space.cat[j].levels, dtype=object)[cat[:, j]]
    return pd.DataFrame(cols)


def from_dice_frame(space, frame):
    """DiCE's raw counterfactual rows -> (numeric raw values, level codes), unrounded, so that a
    non-integer value of an integer feature counts as a violation instead of being repaired."""
    num = np.column_stack([frame[s.name].to_numpy(dtype=float) for s in space.num])
    cat = np.column_stack([space.encoding.feature(s.name).codes(frame[s.name]) for s in space.cat])
    return num, cat


def dice_main(args) -> None:
    import random

    import torch

    torch.set_num_threads(1)
    try:
        import dice_ml
        from raiutils.exceptions import UserConfigValidationException
    except ImportError as exc:
        print(f"\n== DiCE on the Adult MLP\n{DICE_INSTALL}\n(import failed: {exc})")
        return
    from _common import machine, ratio_line

    from audit.methods._cf.quality import measure
    from audit.methods.counterfactuals import CounterfactualsConfig

    print(f"\n== DiCE {_dice_version()} against the project's search, Adult MLP, the same {args.dice_rows} rows")
    print(machine())
    # the project's search, k = 1, on a seeded sample of dice_rows rows predicted "<=50K"
    model, data, train, res, t_method, c_method, space, rows, reference = timed_method(
        CounterfactualsConfig(max_search_rows=args.dice_rows, n_counterfactuals=1, immutable=IMMUTABLE),
        args.seed)
    q_method = res.quality_first or res.quality
    num0, cat0, lo, hi, masks = search_limits(space, data, train, rows)
    queries = dice_frame(space, data.X[rows])
    mutable = [f for f in space.names if f not in res.immutable]
    train_frame = dice_frame(space, train.X).assign(income=train.y.astype(int))
    wrapped = RawFrameModel(model, data.encoding)
    gap = np.abs(wrapped.predict_proba(queries)[:, 1] - model.predict_proba(data.X[rows])[:, 1]).max()
    print(f"the raw-frame wrapper DiCE calls reproduces the audit's P(>50K) on the {len(rows)} rows "
          f"to {gap:.1e}")

    def permitted(i):
        """Row i's limits in DiCE's terms: the project's search ranges and permitted levels."""
        out = {}
        for j, s in enumerate(space.num):
            if s.mutable:
                out[s.name] = [lo[i, j], hi[i, j]]
        for g, s in enumerate(space.cat):
            if s.mutable:
                out[s.name] = [s.levels[c] for c in np.flatnonzero(masks[g][i])]
        return out

    results = {}
    for method in args.dice_methods:
        random.seed(args.seed)
        np.random.seed(args.seed)
        found_num, found_cat, found_row, errors = [], [], [], []
        t, c = time.perf_counter(), time.process_time()
        # timed from DiCE's data and model interfaces on, as the project's run builds its own
        d = dice_ml.Data(dataframe=train_frame, outcome_name="income",
                         continuous_features=[s.name for s in space.num])
        m = dice_ml.Model(model=wrapped, backend="sklearn")
        explainer = dice_ml.Dice(d, m, method=method)
        for i in range(len(rows)):
            try:
                with warnings.catch_warnings():  # pandas' performance notes on DiCE's own frames
                    warnings.filterwarnings("ignore", module="dice_ml")
                    cf = explainer.generate_counterfactuals(
                        queries.iloc[[i]], total_CFs=1, desired_class=1, features_to_vary=mutable,
                        permitted_range=permitted(i), verbose=False,
                        **({"random_seed": args.seed} if method == "random" else {}))
            except UserConfigValidationException as exc:
                if "No counterfactuals found" not in str(exc):
                    errors.append(f"{type(exc).__name__}: {exc}")
                continue  # DiCE raises when a row has none: that row has no counterfactual
            except Exception as exc:  # any other failure on a row: counted and shown, not hidden
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            ex = cf.cf_examples_list[0]
            out = ex.final_cfs_df_sparse if ex.final_cfs_df_sparse is not None else ex.final_cfs_df
            if out is None or len(out) == 0:
                continue
            n_, c_ = from_dice_frame(space, out)
            found_num.append(n_)
            found_cat.append(c_)
            found_row.append(np.full(len(out), i))
        elapsed, cpu = time.perf_counter() - t, time.process_time() - c
        if found_row:
            cf_num, cf_cat, cf_row = np.vstack(found_num), np.vstack(found_cat), np.concatenate(found_row)
        else:
            cf_num, cf_cat, cf_row = num0[:0], cat0[:0], np.zeros(0, int)
        valid = model.predict(space.encode(cf_num, cf_cat)) == 1 if len(cf_row) else np.zeros(0, bool)
        q = measure(space, num0, cat0, cf_row, cf_num, cf_cat, valid, ref_num=reference[0],
                    ref_cat=reference[1], rng=np.random.default_rng(args.seed))
        results[method] = (elapsed, cpu, q, len(cf_row), errors)

    n = len(rows)
    print(f"\n{n} rows predicted '<=50K' (seeded sample of {res.n_unfavourable:,}, seed {args.seed}); "
          f"immutable: {', '.join(res.immutable)}; one counterfactual per row; 1 torch thread for both; "
          f"DiCE gets each row's numeric ranges and permitted levels from the project's search and the "
          f"model through a raw-frame wrapper of the same encoding and torch model; validity is the "
          f"share of rows with a counterfactual the model confirms; measured by the same code")
    names = ["project's search", *(f"DiCE {m_}" for m_ in results)]
    qs = [(t_method, c_method, q_method, q_method.n_counterfactuals, [])] + list(results.values())
    table = [
        ("time (s)", [f"{e:.2f}" for e, *_ in qs]),
        ("time per row (s)", [f"{e / n:.4f}" for e, *_ in qs]),
        ("CPU time, user + system (s)", [f"{c:.2f}" for _, c, *_ in qs]),
        ("counterfactuals returned", [str(k) for *_, k, _ in qs]),
        ("rows DiCE raised an error for", ["—"] + [str(len(er)) for *_, er in qs[1:]]),
        ("validity (confirmed by the model)", [_pct(q.validity) for _, _, q, *_ in qs]),
        ("returned ones the model confirms", [_pct(q.confirmed) for _, _, q, *_ in qs]),
        ("constraint violations", [str(q.violations) for _, _, q, *_ in qs]),
        ("sparsity: features changed", [_f(q.sparsity) for _, _, q, *_ in qs]),
        ("  share with 1 / 2 / 3 / 4+ changes", [_dist(q.share_by_changes) for _, _, q, *_ in qs]),
        ("cost (MAD-L1 + 1/categorical)", [_f(q.mean_cost) for _, _, q, *_ in qs]),
        ("rare-level share (<1% of rows)", [_pct(q.rare_level_share) for _, _, q, *_ in qs]),
        ("inside observed range", [_pct(q.inside_observed_range) for _, _, q, *_ in qs]),
        ("dist. to nearest real '>50K' row", [_f(q.nn_distance) for _, _, q, *_ in qs]),
    ]
    width = 2 + max(len(c) for _, cells in table for c in [*cells, *names])
    print(f"{'':36s}" + "".join(f"{h:>{width}s}" for h in names))
    for label, cells in table:
        print(f"{label:36s}" + "".join(f"{c:>{width}s}" for c in cells))
    print("(the project's time is its whole method run: search, quality measures and the recourse "
          "test; DiCE's from building its data and model interfaces on. Sparsity, cost and the "
          "rest describe the rows' valid counterfactuals)")
    for method, (elapsed, cpu, _, _, errors) in results.items():
        print(ratio_line(f"DiCE {method} / project's search", elapsed, t_method))
        print(f"  CPU time ratio {cpu / c_method:,.1f}x ({cpu:,.2f} s / {c_method:,.2f} s)")
        if errors:
            print(f"  DiCE {method} raised for {len(errors)} rows, e.g. {errors[0][:200]}")


def _dice_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dice-ml")
    except PackageNotFoundError:
        return "(version unknown)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("adult", "german", "dice"), default=None)
    ap.add_argument("--german-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--k", type=int, default=1, help="counterfactuals per row for the method")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dice-rows", type=int, default=100, help="rows of the DiCE comparison")
    ap.add_argument("--dice-methods", type=lambda v: tuple(v.split(",")), default=DICE_METHODS,
                    help="DiCE's methods, comma-separated (default: random,genetic,kdtree)")
    ap.add_argument("--sweep", action="store_true", help="also run the method at sparsity weights 0-100")
    ap.add_argument("--exhaustive", type=int, default=0, metavar="N",
                    help="exhaustive 1/2-change check on the first N rows (about 0.15 s per row)")
    args = ap.parse_args()
    if args.german_worker:
        print(json.dumps(german_worker(sources_free=False)))
        return
    if args.only in (None, "adult"):
        adult_main(args)
    if args.only in (None, "dice"):
        dice_main(args)
    if args.only in (None, "german"):
        german_main()


IMMUTABLE = ("age", "native-country")  # sex and race: sensitive, immutable by default


def timed_method(cfg, seed):
    """The project's method on the Adult MLP, timed (wall and CPU seconds), with the space its
    results are measured in, the rows it searched and the reference rows (training rows the
    model predicts ">50K", as raw values) for the quality measures."""
    from audit.core.method import RunContext
    from audit.methods._cf.space import Constraints, Space
    from audit.methods.counterfactuals import Counterfactuals

    model, data, train = load_adult()
    ctx = RunContext(rng=np.random.default_rng(seed), train=train, seed=seed)
    t, c = time.perf_counter(), time.process_time()
    res = Counterfactuals().run(model, data, cfg, ctx)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    space = Space(data.encoding, train.X, Constraints(immutable=res.immutable),
                  min_level_share=cfg.min_level_share)
    rows = np.array([r.row for r in res.rows])
    ref_num, ref_cat = space.split(train.X)
    target = model.predict(train.X) == 1
    return model, data, train, res, wall, cpu, space, rows, (ref_num[target], ref_cat[target])


@functools.cache
def load_adult():
    """The bundled Adult MLP, its test rows and training rows, loaded as `audit run` loads them."""
    from audit.config import AuditPlan
    from audit.runner import load_inputs

    t = time.perf_counter()
    inputs = load_inputs(AuditPlan.load(ROOT / "examples/adult_mlp/audit.toml"))
    model, data, train = inputs.model, inputs.data, inputs.train
    print(f"loaded Adult MLP and {data.n_rows:,} test rows in {time.perf_counter() - t:.1f} s; "
          f"reference rows for MAD/ranges/levels: {train.n_rows if train else data.n_rows:,} (training data)")
    return model, data, train


def adult_main(args) -> None:
    import torch

    torch.set_num_threads(1)
    from _common import machine, ratio_line

    from audit.core.method import RunContext
    from audit.methods._cf.quality import measure
    from audit.methods._cf.refine import Scorer
    from audit.methods.counterfactuals import Counterfactuals, CounterfactualsConfig

    print(f"== Adult MLP, {args.rows:,} rows: the project's search against random sampling\n{machine()}")
    cfg = CounterfactualsConfig(max_search_rows=args.rows, n_counterfactuals=args.k, immutable=IMMUTABLE,
                                n_bootstrap=1000, n_permutations=999)
    # ---- the method (gradient search) --------------------------------------------------------
    model, data, train, res, t_method, c_method, space, rows, (ref_num, ref_cat) = timed_method(cfg, args.seed)
    q = res.quality_first or res.quality

    # ---- the baseline on the same rows, measured by the same code -------------------------------
    num0, cat0 = space.split(data.X[rows])
    lo, hi = space.numeric_bounds(num0, search=False)
    lo = np.maximum(lo, [s.obs_lo for s in space.num])
    hi = np.minimum(hi, [s.obs_hi for s in space.num])
    masks = space.level_masks(cat0, search=False)
    scorer = Scorer(model, space, 1)
    rng = np.random.default_rng(args.seed)
    t, c = time.perf_counter(), time.process_time()
    b_num, b_cat, b_found = random_baseline(space, scorer, num0, cat0, lo, hi, masks, rng)
    t_base, c_base = time.perf_counter() - t, time.process_time() - c
    idx = np.flatnonzero(b_found)
    valid = model.predict(space.encode(b_num[idx], b_cat[idx])) == 1
    qb = measure(space, num0, cat0, idx, b_num[idx], b_cat[idx], valid, ref_num=ref_num,
                 ref_cat=ref_cat, rng=np.random.default_rng(args.seed))

    print(f"\n{res.n_searched:,} rows predicted '<=50K' (seeded sample of {res.n_unfavourable:,}; seed "
          f"{args.seed}); immutable: {', '.join(res.immutable)}; k = {args.k}; 1 torch thread\n")
    rows_out = [
        ("time (s)", f"{t_method:.1f}", f"{t_base:.1f}"),
        ("time per row (s)", f"{t_method / max(1, res.n_searched):.4f}", f"{t_base / max(1, len(rows)):.4f}"),
        ("CPU time, user + system (s)", f"{c_method:.1f}", f"{c_base:.1f}"),
        ("validity", _pct(q.validity), _pct(qb.validity)),
        ("confirmed by model", _pct(q.confirmed), _pct(qb.confirmed)),
        ("constraint violations", str(q.violations), str(qb.violations)),
        ("cost (MAD-L1 + 1/categorical)", _f(q.mean_cost), _f(qb.mean_cost)),
        ("proximity: numeric MAD-L1", _f(q.proximity_numeric), _f(qb.proximity_numeric)),
        ("proximity: categorical share", _pct(q.proximity_categorical), _pct(qb.proximity_categorical)),
        ("sparsity: features changed", _f(q.sparsity), _f(qb.sparsity)),
        ("share changing <= 2 features", _pct(q.share_at_most_two), _pct(qb.share_at_most_two)),
        ("  share with 1 / 2 / 3 / 4+ changes", _dist(q.share_by_changes), _dist(qb.share_by_changes)),
        ("rare-level share (<1% of rows)", _pct(q.rare_level_share), _pct(qb.rare_level_share)),
        ("inside observed range", _pct(q.inside_observed_range), _pct(qb.inside_observed_range)),
        ("dist. to nearest real '>50K' row", _f(q.nn_distance), _f(qb.nn_distance)),
    ]
    print(f"{'':34s} {'gradient search':>22s} {'random baseline':>22s}")
    for name, a, b in rows_out:
        print(f"{name:34s} {a:>22s} {b:>22s}")
    print(f"\nreference: real '>50K' rows lie {_f(q.nn_distance_real)} from their nearest neighbour of the "
          f"same class; the original rows {_f(q.nn_distance_original)}.")
    print(f"method: {res.n_fallback} rows handed to the genetic fallback; {res.n_model_rows:,} candidate rows "
          f"scored")
    print(ratio_line("random baseline / gradient search", t_base, t_method, digits=2))
    print(f"  CPU time ratio {c_base / c_method:.2f}x ({c_base:.2f} s / {c_method:.2f} s)")
    if args.k > 1:
        print(f"diversity (k = {args.k}): {_f(res.quality.per_row)} per row, pairwise distance "
              f"{_f(res.quality.diversity_distance)}, Jaccard {_f(res.quality.diversity_jaccard)}")
    for r in res.recourse:
        groups = ", ".join(f"{g.group} {_f(g.mean_cost)} (n={g.n_rows})" for g in r.groups if g.tested)
        print(f"recourse {r.attribute}: {groups}; gap {_f(r.mean_gap)}, p = {_f(r.p_value)}, "
              f"Holm {_f(r.p_adjusted)}")
    if args.sweep:
        from dataclasses import replace

        print("\nsparsity weight (price of one changed feature, cost units) against sparsity and cost:")
        print(f"{'weight':>8s} {'time s':>7s} {'features':>9s} {'1 / 2 / 3 / 4+ changes':>26s} {'cost':>7s}")
        for w in (0.0, 1.0, 3.0, 10.0, 100.0):
            t = time.perf_counter()
            r2 = Counterfactuals().run(model, data, replace(cfg, sparsity_weight=w),
                                       RunContext(rng=np.random.default_rng(args.seed), train=train, seed=args.seed))
            q2 = r2.quality_first or r2.quality
            print(f"{w:8.1f} {time.perf_counter() - t:7.1f} {_f(q2.sparsity):>9s} {_dist(q2.share_by_changes):>26s} "
                  f"{_f(q2.mean_cost):>7s}")
    if args.exhaustive:
        lower = min_changes(space, scorer, res, data, train, cfg, args.exhaustive)
        m = np.minimum(lower, 3)
        print(f"\nexhaustive check on the first {len(m)} rows (every 1- and 2-change candidate: all permitted "
              f"levels, a {EXH_GRID}-point grid plus training quantiles per numeric feature, same guards): "
              f"minimum changes 1 / 2 / 3+ = {np.mean(m == 1):.1%} / {np.mean(m == 2):.1%} / "
              f"{np.mean(m >= 3):.1%}; lower bound on the mean (3+ counted as 3): {m.mean():.3f}")
    checks = [("time < 30 s", t_method < 30), ("validity >= 99%", (q.validity or 0) >= 0.99),
              ("0 violations", q.violations == 0), ("<= 2 features on average", (q.sparsity or 9) <= 2)]
    print("\ntargets: " + "; ".join(f"{n}: {'met' if ok else 'NOT met'}" for n, ok in checks))


EXH_GRID = 48


def search_limits(space, data, train, rows):
    """The searched rows (raw) and the limits the method's own search puts on them: per-row
    numeric ranges clipped to the observed range, and the permitted levels of each categorical
    (user constraints, levels rarer than ``min_level_share`` overall and among rows sharing the
    row's immutable and sensitive attributes), exactly as ``Counterfactuals.run`` builds them."""
    from audit.methods.counterfactuals import _context

    names = [s.name for s in space.cat if not s.mutable]
    _, ref_cat = space.split(train.X)
    space.set_context(_context(space, ref_cat, train, names))
    num0, cat0 = space.split(data.X[rows])
    lo, hi = space.numeric_bounds(num0, search=True)
    masks = space.level_masks(cat0, search=True, context=_context(space, cat0, data.subset(rows), names))
    return num0, cat0, lo, hi, masks


def min_changes(space, scorer, res, data, train, cfg, n_rows):
    """Fewest features any valid counterfactual of each row changes (1, 2, or 3 meaning "more
    than 2"), by brute force over every single and pair of moves, under the method's own
    constraints and plausibility guards (bounds, level masks with context, zero-inflation gap)."""
    rows = np.array([r.row for r in res.rows])[:n_rows]
    num0, cat0, lo, hi, masks = search_limits(space, data, train, rows)
    ref_num = space.split(train.X)[0]
    out = np.full(len(rows), 3)
    for r in range(len(rows)):
        moves = [("c", g, lv) for g, m in enumerate(masks) for lv in np.flatnonzero(m[r]) if lv != cat0[r, g]]
        for j, s in enumerate(space.num):
            if lo[r, j] > hi[r, j]:
                continue
            vals = np.concatenate([np.linspace(lo[r, j], hi[r, j], EXH_GRID),
                                   np.quantile(ref_num[:, j], np.linspace(0, 1, EXH_GRID)).clip(lo[r, j], hi[r, j])])
            vals = np.unique(np.round(vals) if s.integer else vals)
            moves += [("n", j, v) for v in vals if abs(v - num0[r, j]) > 1e-9]
        combos = [(i,) for i in range(len(moves))]
        combos += [(i, k) for i in range(len(moves)) for k in range(i + 1, len(moves))
                   if moves[i][:2] != moves[k][:2]]
        N = np.repeat(num0[[r]], len(combos), 0)
        K = np.repeat(cat0[[r]], len(combos), 0)
        for c, combo in enumerate(combos):
            for i in combo:
                kind, j, v = moves[i]
                (K if kind == "c" else N)[c, j] = v
        rep = np.zeros(len(combos), int) + r
        N, K = space.project(N, K, num0[rep], cat0[rep], lo[rep], hi[rep], [m[rep] for m in masks])
        ok = scorer.accept(N, K)
        ch = space.changed(N, K, num0[rep], cat0[rep]).sum(axis=1)
        if ok.any():
            out[r] = ch[ok].min()
    return out


def _dist(x):
    return "—" if x is None else " / ".join(f"{100 * v:.1f}%" for v in x)


def _pct(x):
    return "—" if x is None else f"{100 * x:.1f}%"


def _f(x):
    x = getattr(x, "value", x)  # an Estimate prints its point value
    return "—" if x is None else f"{x:.3f}"


if __name__ == "__main__":
    main()
