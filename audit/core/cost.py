"""The cost model: what each method plans to do, in countable units, priced by measured costs.

Every method's ``plan(model, data, config, ctx)`` returns a :class:`Plan` in units that can be
counted exactly — rows evaluated by the audited model, model calls, refits of the estimator —
plus ``fixed_seconds`` for work that does not go through the model adapter. The runner measures
the unit costs once per run (:func:`measure_unit_costs`: one small batch of model calls, and one
refit only when some method plans refits) and prices every plan with :func:`seconds`. Seconds are
therefore estimates; the counts are exact and tested against what the method then performs.

Above a budget, :func:`fit_budget` lowers the sample sizes methods declare in
``Plan.reducible`` (never an option the user set) down to each one's floor, and states the
precision each lowering costs (:func:`precision_cost`).
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from audit.errors import InvalidConfigError

# How a lowered option costs precision: "rows" (intervals of row averages widen by
# sqrt(old/new)), "samples" (Monte Carlo error of each estimate grows by sqrt(old/new)),
# "permutations" (p-values' Monte Carlo standard error, and the smallest reachable p).
Kind = Literal["rows", "samples", "permutations"]


@dataclass(frozen=True)
class Reducible:
    """An option the budget may lower: its floor and how lowering it costs precision."""

    minimum: int
    kind: Kind = "rows"
    alpha: float = 0.05  # permutations: the level the floor still reaches
    current: int | None = None  # the value in effect when the option's default is None ("auto")
    family: int | None = None  # permutations: the tests Benjamini–Hochberg corrects over


@dataclass(frozen=True)
class Plan:
    """What a method will do, before it does it.

    description : one line for the plan, e.g. "KernelSHAP, 100 rows × 2,070 samples × 50 background".
    model_rows : rows the audited model evaluates in this process (counted at the adapter).
    model_calls : separate calls of the model (each pays a fixed overhead).
    uncounted_rows : work priced like that many model rows but done outside the adapter, so
        not counted (a tree explainer walking row × background pairs).
    grad_rows, grad_calls : rows through a forward and backward pass of the torch module, in
        that many separate passes (DeepLIFT, expected gradients, captum): priced by the measured
        forward+backward unit (:class:`UnitCosts` ``grad_per_row``, ``grad_per_call``).
    refits : full refits of the estimator (each on ``refit_rows`` rows, then scoring
        ``refit_model_rows`` rows in ``refit_model_calls`` calls), run on ``n_jobs`` workers.
    fixed_seconds : work priced by the method itself (e.g. a tree explainer that reads the trees).
    reducible : option name -> :class:`Reducible`, the sample sizes a budget may lower.
    """

    description: str
    model_rows: float = 0.0
    model_calls: float = 0.0
    uncounted_rows: float = 0.0
    grad_rows: float = 0.0
    grad_calls: float = 0.0
    refits: int = 0
    refit_rows: int = 0
    refit_model_rows: float = 0.0
    refit_model_calls: float = 0.0
    n_jobs: int = 1
    fixed_seconds: float = 0.0
    reducible: Mapping[str, Reducible] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"description": self.description, "model_rows": int(self.model_rows),
                "model_calls": int(self.model_calls),
                "uncounted_rows": int(self.uncounted_rows), "grad_rows": int(self.grad_rows),
                "grad_calls": int(self.grad_calls), "refits": self.refits,
                "refit_rows": self.refit_rows, "n_jobs": self.n_jobs,
                "fixed_seconds": round(self.fixed_seconds, 3)}


@dataclass(frozen=True)
class UnitCosts:
    """Measured once per run: seconds per evaluated row, per model call, per refit, per row and
    per call of a forward+backward pass (torch models); ``cores``: the cores parallel work may
    count on (those not busy with other processes)."""

    per_row: float = 0.0
    per_call: float = 0.0
    grad_per_row: float = 0.0
    grad_per_call: float = 0.0
    refit: float = 0.0          # seconds of one refit on ``refit_rows`` rows
    refit_rows: int = 0
    cores: int = 1

    def to_json(self) -> dict[str, Any]:
        return {"seconds_per_row": self.per_row, "seconds_per_call": self.per_call,
                "seconds_per_gradient_row": self.grad_per_row, "seconds_per_gradient_call": self.grad_per_call,
                "seconds_per_refit": self.refit, "refit_rows": self.refit_rows, "cores": self.cores}


# Starting worker processes that import audit-suite and its model libraries: measured 3-8 s
# on this project's 2-core machine under load. Used only to estimate durations.
POOL_STARTUP_SECONDS = 5.0
# What each worker process beyond the first adds, as a share of one: benchmarks/newcomer.py's
# 300-tree RandomForest ran 361 refits on 2 worker processes 1.18x faster than one refit after
# another would (scikit-learn fits contend for memory bandwidth; each worker unpickles the data).
PARALLEL_EFFICIENCY = 0.25
# Writing the report is inside the budget too: figures, HTML and PDF. Measured as CPU time
# on benchmarks/newcomer.py's RandomForest audit: 1.3 s for one method, 5.6 s for four
# (figures dominate). Used only to estimate durations.
RENDER_FIXED_SECONDS = 1.0
RENDER_SECONDS_PER_METHOD = 1.2
# A first refit faster than this is repeated (median of three) to measure a warm refit.
REFIT_WARM_SECONDS = 2.0


def seconds(plan: Plan, costs: UnitCosts) -> float:
    """The plan's estimated wall time under ``costs``."""
    serial = (plan.fixed_seconds + (plan.model_rows + plan.uncounted_rows) * costs.per_row
              + plan.model_calls * costs.per_call
              + plan.grad_rows * costs.grad_per_row + plan.grad_calls * costs.grad_per_call)
    if not plan.refits:
        return serial
    # fitting is roughly linear in rows for the estimators audited here
    fit = costs.refit * (plan.refit_rows / costs.refit_rows if costs.refit_rows else 1.0)
    each = fit + plan.refit_model_rows * costs.per_row + plan.refit_model_calls * costs.per_call
    workers = max(1, min(plan.n_jobs, costs.cores, plan.refits))
    startup = POOL_STARTUP_SECONDS if workers > 1 else 0.0
    speedup = 1.0 + (workers - 1) * PARALLEL_EFFICIENCY
    return serial + startup + plan.refits * each / speedup


def render_seconds(formats: Any, n_methods: int) -> float:
    """The estimated time to write the report in ``formats`` for ``n_methods`` methods."""
    if not {"html", "pdf"} & set(formats or ()):
        return 0.0  # results.json alone: serialising is fast
    return RENDER_FIXED_SECONDS + RENDER_SECONDS_PER_METHOD * n_methods


def _time(fn: Callable[[], Any], repeats: int) -> float:
    """The median of ``repeats`` timings: on a shared machine the fastest is the luckiest
    moment, and estimates from it ran 2.5x short under load (benchmarks/newcomer.py)."""
    times = []
    for _ in range(repeats):
        # each timing repeats ``fn`` for at least MIN_TIMING seconds: a single pass of a small
        # model takes well under a millisecond, where one scheduler tick made the per-row cost
        # vary 3-10x between runs (seen on the Adult MLP)
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= MIN_TIMING or n >= 1000:
                break
        times.append(elapsed / n)
    return float(np.median(times))


MIN_TIMING = 0.01


def measure_unit_costs(model: Any, X: np.ndarray, *, batch: int = 2048, cores: int = 1) -> UnitCosts:
    """Time the model on one row and on ``batch`` rows (median of three): the per-call overhead
    and the per-row cost. The rows are the audited rows (tiled when there are fewer)."""
    if "predict" not in getattr(model, "capabilities", ()) or len(X) == 0:
        return UnitCosts(cores=cores)
    row_bytes = max(1, int(np.prod(X.shape[1:])) * 4)
    batch = int(max(16, min(batch, (64 << 20) // row_bytes)))  # images: at most ~64 MB at once
    reps = int(math.ceil(batch / len(X)))
    big = np.concatenate([X] * reps)[:batch] if reps > 1 else X[:batch]
    one = X[:1]
    with _one_torch_thread():
        try:
            model.scores(np.asarray(big, dtype=np.float32))  # warm-up (lazy imports, caches)
            t1 = _time(lambda: model.scores(np.asarray(one, dtype=np.float32)), 3)
            tb = _time(lambda: model.scores(np.asarray(big, dtype=np.float32)), 3)
        except Exception:  # check_compatible ran the model already; a method will report a failure
            return UnitCosts(cores=cores)
        per_row = max((tb - t1) / max(len(big) - 1, 1), 0.0)
        costs = UnitCosts(per_row=per_row, per_call=t1, cores=cores)
        if "gradients" in model.capabilities and hasattr(model, "forward"):
            costs = _measure_gradients(model, X, costs)
    return costs


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Measure as the methods run: the runner gives each method one torch thread, and two
    threads on a loaded 2-core machine made the measured per-row cost swing 5x between runs."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _measure_gradients(model: Any, X: np.ndarray, costs: UnitCosts, batch: int = 256) -> UnitCosts:
    """Time a forward+backward pass on one row and on ``batch`` rows (median of three), the way
    shap takes gradients: ``torch.autograd.grad`` of the list of per-row output scalars (built
    by iterating the output tensor), which costs Python work per row (that overhead, not the arithmetic, dominated
    DeepLIFT on the Adult MLP: 4.4 ms per explained row against 6e-8 s per forward row)."""
    import torch

    param = next(iter(getattr(model, "module", torch.nn.Linear(1, 1)).parameters()), None)
    dtype = param.dtype if param is not None else torch.float32
    reps = int(math.ceil(batch / len(X)))
    big = (np.concatenate([X] * reps)[:batch] if reps > 1 else X[:batch]).astype(np.float32)

    def step(rows: np.ndarray) -> None:
        x = torch.as_tensor(rows, dtype=dtype).requires_grad_(True)
        out = model.forward(x)
        torch.autograd.grad([v for v in out[:, -1]], x)

    try:
        step(big)  # warm-up (twice: the first passes allocate)
        step(big)
        t1 = _time(lambda: step(big[:1]), 3)
        tb = _time(lambda: step(big), 3)
    except Exception:  # a method that needs gradients will report why they fail
        return costs
    return dataclasses.replace(costs, grad_per_row=max((tb - t1) / max(len(big) - 1, 1), 0.0),
                               grad_per_call=t1)


def measure_refit(model: Any, X: np.ndarray, y: np.ndarray, costs: UnitCosts) -> UnitCosts:
    """Add the time of one refit of a clone of ``model.estimator`` on ``X, y``."""
    from sklearn.base import clone

    raw = bool(getattr(model, "raw", False))
    inputs = model.encoding.decode(X.astype(np.float32)) if raw else X
    times: list[float] = []
    # The first fit pays cold caches and lazy imports (a LogisticRegression's first fit was ~10x
    # its later ones); a fit under REFIT_WARM_SECONDS is repeated and the median of three kept.
    for _ in range(3):
        est = clone(model.estimator)
        t0 = time.perf_counter()
        try:
            est.fit(inputs, y)
        except Exception:  # the method itself will say why refitting fails
            return costs
        times.append(time.perf_counter() - t0)
        if times[0] >= REFIT_WARM_SECONDS:
            break
    return dataclasses.replace(costs, refit=float(np.median(times)), refit_rows=len(X))


_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}


def parse_duration(text: object, where: str = "--budget") -> float:
    """``"5m"``, ``"90s"``, ``"1h"``, ``"2.5min"`` or a number of seconds -> seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(s|sec|m|min|h)?\s*", str(text))
        if not m:
            raise InvalidConfigError(f"The {where!r} value must be a duration such as 90s, 5m or 1h. "
                                     f"Got {text!r} instead.")
        value = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if not math.isfinite(value) or value <= 0:
        raise InvalidConfigError(f"The {where!r} value must be a positive duration. Got {text!r} instead.")
    return value


def format_seconds(s: float) -> str:
    """'~4 s', '~3 min', '~1.2 h' (two significant figures are all an estimate has)."""
    if s < 1:
        return "<1 s"
    if s < 90:
        return f"~{s:.0f} s"
    if s < 5400:
        return f"~{s / 60:.0f} min"
    return f"~{s / 3600:.1f} h"


def format_budget(s: float) -> str:
    """A budget as given: '0.5 s', '90 s', '5 min', '1.5 h'."""
    return f"{s:g} s" if s < 90 else f"{s / 60:g} min" if s < 5400 else f"{s / 3600:g} h"


def precision_cost(option: str, old: int, new: int, spec: Reducible) -> str:
    """What lowering ``option`` from ``old`` to ``new`` costs, in one clause."""
    factor = math.sqrt(old / new)
    if spec.kind == "permutations":
        a = spec.alpha
        se_new, se_old = math.sqrt(a * (1 - a) / new), math.sqrt(a * (1 - a) / old)
        text = (f"the Monte Carlo standard error of a raw p-value near {a:g} grows from {se_old:.4f} to "
                f"{se_new:.4f} and the smallest attainable p-value from {1 / (old + 1):.4f} to {1 / (new + 1):.4f}")
        if spec.family and spec.family > 1:
            # a lone effect with k null statistics at least as large: raw p = (k + 1)/(B + 1),
            # Benjamini–Hochberg-adjusted F (k + 1)/(B + 1) <= alpha  <=>  k <= alpha (B + 1)/F - 1
            k = int(math.floor(a * (new + 1) / spec.family + 1e-9)) - 1
            if k < 0:
                text += (f"; with Benjamini–Hochberg over {spec.family} features no lone effect can reach "
                         f"{a:g} at B = {new:,}")
            elif k == 0:
                text += (f"; with Benjamini–Hochberg over {spec.family} features only a lone effect with zero "
                         f"exceedances (no null statistic at least as large) can reach {a:g}")
            else:
                text += (f"; with Benjamini–Hochberg over {spec.family} features a lone effect reaches {a:g} "
                         f"only with at most {k} exceedances (null statistics at least as large)")
        return text
    if spec.kind == "samples":
        return f"the sampling error of each estimate grows by about ×{factor:.2f} (sqrt({old:,}/{new:,}))"
    return f"intervals over these rows widen by about ×{factor:.2f} (sqrt({old:,}/{new:,}))"


@dataclass(frozen=True)
class Lowered:
    method: str
    option: str
    old: int
    new: int
    cost: str

    def text(self) -> str:
        return f"{self.method}: {self.option} lowered from {self.old:,} to {self.new:,} to fit the time budget; {self.cost}."

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "option": self.option, "from": self.old, "to": self.new,
                "precision": self.cost}


def scaled(config: Any, plan: Plan, factor: float, user_set: set[str]) -> dict[str, int]:
    """The reducible options of ``config`` scaled by ``factor`` (never below their floor, never
    an option the user set, never above the current value)."""
    out = {}
    for opt, spec in plan.reducible.items():
        cur = spec.current if spec.current is not None else getattr(config, opt, None)
        if opt in user_set or not isinstance(cur, int) or cur <= spec.minimum:
            continue
        new = max(spec.minimum, min(cur, int(math.floor(cur * factor))))
        if new < cur:
            out[opt] = new
    return out


def fit_budget(entries: list[tuple[str, Any, Any, set[str]]], price: Callable[[Any, Any], tuple[Plan, float]],
               budget: float) -> tuple[dict[str, Any], list[Lowered], float]:
    """Lower every method's reducible options by one common factor until the total fits.

    ``entries``: (method name, method, config, options the user set); ``price(method, config)``
    returns (plan, seconds). Returns the new configs by name, what was lowered, and the new total.
    One common factor keeps the methods' relative precision; it is found by bisection (cost is
    monotone in every sample size). When even the floors exceed ``budget`` the floors are
    returned and the caller stops.
    """
    def total_at(factor: float) -> tuple[dict[str, Any], float]:
        configs, tot = {}, 0.0
        for name, method, config, user in entries:
            plan, _ = price(method, config)
            new = dataclasses.replace(config, **scaled(config, plan, factor, user))
            configs[name] = new
            tot += price(method, new)[1]
        return configs, tot

    configs, tot = total_at(1.0)
    if tot > budget:
        lo, hi = 0.0, 1.0
        configs, tot = total_at(lo)
        if tot <= budget:
            for _ in range(30):
                mid = (lo + hi) / 2
                c, t = total_at(mid)
                if t <= budget:
                    lo, configs, tot = mid, c, t
                else:
                    hi = mid
    lowered = []
    for name, method, config, _ in entries:
        plan, _ = price(method, config)
        for opt, spec in plan.reducible.items():
            old = spec.current if spec.current is not None else getattr(config, opt, None)
            new = getattr(configs[name], opt, None)
            if isinstance(old, int) and isinstance(new, int) and new < old:
                lowered.append(Lowered(name, opt, old, new, precision_cost(opt, old, new, spec)))
    return configs, lowered, tot


__all__ = ["Lowered", "Plan", "Reducible", "UnitCosts", "fit_budget", "format_budget", "format_seconds",
           "measure_refit", "measure_unit_costs", "parse_duration", "precision_cost", "seconds"]
