"""Response-permutation significance of attributions for any retrainable torch model.

The Olden & Jackson (2002) randomization test generalised beyond fully connected networks:
the statistic is an attribution instead of a weight product, so it applies to convolutions,
recurrences and any torch module whose training recipe is known.

Procedure
---------
1. θ₀: the initial weights the model was trained from (the ``init`` option, else
   ``model_init.safetensors`` beside the model file, else the architecture's default
   initialisation under ``torch.manual_seed(recipe seed)`` — said so in the report).
2. Slot 0 retrains from θ₀ on the real outcome; slots 1..B on the outcome permuted among the
   fitting rows; every slot follows the identical deterministic schedule of the recipe, all at
   once on :mod:`audit.train.functional` (vmap over ``functional_call``; LSTMs written out).
   How close slot 0 comes to the submitted model is reported.
3. Statistic per raw group g (image patch; sequence feature and lag; tabular raw feature):
   ``T_g = mean over rows of |Σ_{e in g} IG_e|`` — Integrated Gradients of the probability of
   each network's own predicted class (a regressor's value), along the straight path from a
   baseline, on a seeded sample of audited rows, batched over all networks.
4. ``p = (1 + #{null ≥ observed}) / (B + 1)`` (upper tail, default) or two-sided from the
   empirical tails; Benjamini–Hochberg and Westfall–Young max-T within each grouping.
   Diverged null networks are reported and excluded.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from audit.core.adapter import ModelAdapter
from audit.core.dataset import AuditData
from audit.core.method import (AuditMethod, Constraint, Finding, Interval, MethodConfig, MethodResult,
                               Options, RunContext, check_permutations)
from audit.core.results import Attributions, estimates
from audit.core.text import plural
from audit.errors import CapabilityError, InvalidConfigError
from audit.stats.multiplicity import benjamini_hochberg, maxt_stepdown
from audit.stats.permutation import null_summary, permutation_pvalues, reachability


@dataclass(frozen=True)
class AttributionSignificanceConfig(MethodConfig):
    """Options of the attribution randomization test.

    enabled : off by default — retraining B + 1 networks costs tens of seconds to minutes on a
    CPU (the report states the measured cost); set ``enabled = true`` to run it;
    n_permutations : null networks B (an integer ≥ 19; the smallest p is 1/(B+1));
    alternative : "upper" (default: mean |IG| ≥ 0, and only larger-than-null attributions are
    evidence of association) or "two-sided" (from the empirical tails);
    alpha : level for the marks (after Benjamini–Hochberg);
    statistic : "share" (default: each group's mean |IG| divided by the sum over the grouping's
    groups) or "mean_abs" (the raw mean |IG|). Networks that memorise a permuted outcome have
    larger gradients everywhere, which inflates the raw statistic's null (measured in the tests:
    a planted lag got p = 0.2 with "mean_abs" and 19 nulls); the share is scale-free;
    n_rows : audited rows whose IG is averaged;
    ig_steps : midpoint-rule steps of IG;
    baseline : "zeros" or "mean" (the fitting rows' mean input);
    recipe : training-recipe keys over [model.training] over training.json beside the model;
    init : path of θ₀ (safetensors), default model_init.safetensors beside the model;
    max_training_rows : fit on at most this many training rows (a seeded sample; changes the refit);
    mode : "auto" (the traced program of audit.train.traced, else vmap, else a loop: the first that
        reproduces the module on a probe), "graph", "vmap" or "loop".
    chunk : networks trained per pass, a memory bound (default: all at once).
    device : where the networks train: "cpu" (default), "cuda" (a GPU: on the Ray backend each
        task asks the cluster for one) or "auto" (a GPU when this machine or the cluster has one).
    """

    enabled: bool = False
    n_permutations: int = 19
    statistic: Literal["share", "mean_abs"] = "share"
    alternative: Literal["upper", "two-sided"] = "upper"
    alpha: float = 0.05
    n_rows: int = 100
    ig_steps: int = 16
    baseline: Literal["zeros", "mean"] = "mean"
    recipe: dict = field(default_factory=dict)
    init: str | None = None
    max_training_rows: int | None = None
    mode: Literal["auto", "graph", "vmap", "loop"] = "auto"
    chunk: int | None = None
    device: str = "cpu"

    bounds: ClassVar[Mapping[str, Constraint]] = {
        "device": Options(("cpu", "cuda", "auto"), "the device the networks train on"),
        "n_rows": Interval(5, 10_000_000, "rows explained"),
        "ig_steps": Interval(2, 10_000, "IG evaluates the model ig_steps times per row"),
        "max_training_rows": Interval(20, 10_000_000, "training rows the networks are fitted on"),
    }
    renamed: ClassVar[Mapping[str, str]] = {"max_rows": "max_training_rows"}

    def validate(self) -> None:
        check_permutations("n_permutations", self.n_permutations, alpha=self.alpha,
                           alternative="two-sided" if self.alternative == "two-sided" else "greater")


@dataclass(frozen=True)
class GroupTest:
    """One raw group (patch, feature, lag) of one grouping."""

    grouping: str
    group: str
    observed: float              # mean |IG| of the refit on the real outcome (slot 0)
    submitted: float             # the same for the submitted model
    null_mean: float
    null_low: float              # 2.5% / 97.5% quantiles of the null
    null_high: float
    p_upper: float
    p_two_sided: float
    p: float                     # the configured alternative
    p_bh: float
    p_maxt: float
    significant: bool            # p_bh <= alpha


@dataclass(frozen=True)
class AttributionSignificanceResult(MethodResult):
    statistic: str
    groupings: tuple[str, ...]
    tests: tuple[GroupTest, ...]
    recipe: dict[str, Any]
    recipe_source: str
    recipe_defaults: tuple[str, ...]
    theta0_source: str
    train_source: str
    n_fit: int
    n_ig_rows: int
    ig_steps: int
    baseline: str
    n_permutations: int
    n_null_used: int
    diverged: tuple[int, ...]
    alternative: str
    alpha: float
    trainer_mode: str            # "graph", "vmap" or "loop"
    swapped_recurrences: tuple[str, ...]
    refit: dict[str, float | None]   # how close slot 0 comes to the submitted model
    n_significant_bh: dict[str, int]
    n_significant_maxt: dict[str, int]
    reachability: tuple[str, ...]    # groupings whose BH / max-T cannot reach alpha with this B
    notes: tuple[str, ...]
    _seconds: Any = None         # wall-clock cost (not serialised: results stay reproducible)
    _null: Any = None            # grouping -> (observed [G], null [B, G])
    _grids: Any = None           # grouping -> (rows, cols) for heatmaps

    def attributions(self) -> tuple[Attributions, ...]:
        """Per grouping, the submitted model's statistic per group (mean |IG| of the groups,
        or their share): a global quantity, computed on a refit's rows, not recomputed."""
        out = []
        for g in self.groupings:
            tests = [t for t in self.tests if t.grouping == g]
            names = [t.group for t in tests]
            out.append(Attributions(
                key="attribution_significance", label="Integrated Gradients of the submitted model (refit test)",
                short="IG-test", origin=f"attribution_significance: {self.statistic} of |IG| per {g}",
                features=tuple(names), grouping=g, explains="output", explained=self.statistic,
                importance=estimates(names, [t.submitted for t in tests]), signed=False))
        return tuple(out)


def _recipe(model: ModelAdapter, config: AttributionSignificanceConfig, ctx: RunContext, loss: str) -> tuple[Any, str]:
    from audit.train.recipe import resolve_recipe

    return resolve_recipe(model, ctx.training, config.recipe, method="attribution_significance",
                          action="retraining the model", loss=loss)


def _theta0(model: ModelAdapter, config: AttributionSignificanceConfig, seed: int) -> tuple[dict, str]:
    import copy

    import torch

    module = model.module
    current = {k: v.detach().clone() for k, v in module.state_dict().items()}
    path = None
    if config.init:
        path = Path(config.init)
        if not path.is_file():
            raise InvalidConfigError(f"The 'init' option of attribution_significance names {config.init!r}, which does not exist.")
    else:
        for rec in getattr(model, "loaded", ()):
            cand = Path(rec.path).parent / "model_init.safetensors"
            if rec.role in ("weights", "model") and cand.is_file():
                path = cand
                break
    if path is not None:
        from safetensors.torch import load_file

        init = load_file(str(path))
        missing = sorted(k for k, _ in module.named_parameters() if k not in init)
        if missing:
            raise InvalidConfigError(f"The initial weights {path.name} lack the parameter(s) {', '.join(missing[:5])}.")
        return {**current, **{k: v for k, v in init.items() if k in current}}, f"{path.name} beside the model" if not config.init else str(path)
    fresh = copy.deepcopy(module)
    torch.manual_seed(seed)
    for sub in fresh.modules():
        if hasattr(sub, "reset_parameters"):
            sub.reset_parameters()
    params = {k: v.detach().clone() for k, v in fresh.named_parameters()}
    return ({**current, **params}, f"no saved θ₀ was found: the architecture's default initialisation "
            f"under torch.manual_seed({seed}) (buffers from the submitted model) — the refit cannot "
            "be expected to reproduce the submitted model")


def _groupings(data: AuditData) -> dict[str, dict[str, list[int]]]:
    return {by: data.layout.groups(by) for by in data.layout.groupings}


class AttributionSignificance(AuditMethod[AttributionSignificanceConfig, AttributionSignificanceResult]):
    name = "attribution_significance"
    title = "Attribution significance by response permutation (retrained networks, any torch model)"
    requires = frozenset({"torch"})
    needs_target = True
    modalities = frozenset({"tabular", "image", "sequence"})
    Config = AttributionSignificanceConfig

    def skip_reason(self, model: ModelAdapter, data: AuditData, config: AttributionSignificanceConfig) -> str | None:
        reason = super().skip_reason(model, data, config)
        if reason is not None:
            if reason.startswith("needs a model with"):
                return (f"needs a torch model it can retrain (an nn.Module with its training recipe); "
                        f"{model.description} is not one. For refittable scikit-learn estimators use "
                        "permutation_significance")
            return reason
        if getattr(model, "module", None) is None:
            return f"needs an nn.Module to retrain; {model.description} (e.g. TorchScript) cannot be retrained"
        if not config.enabled:
            return ("off by default: it retrains B + 1 copies of the network (tens of seconds to minutes "
                    "on a CPU); set [methods.attribution_significance] enabled = true to run it")
        return None

    def run(self, model: ModelAdapter, data: AuditData, config: AttributionSignificanceConfig,
            ctx: RunContext) -> AttributionSignificanceResult:
        import torch

        from audit import execution
        from audit.train.functional import (batched_integrated_gradients, module_call,
                                            train_functional)

        config.validate()
        device = execution.resolve_device(config.device, self.name)  # before any work: exit 2 early
        seconds: dict[str, float] = {}
        notes: list[str] = []
        module = model.module
        task = data.task
        kind = getattr(model, "output_kind", "logit")
        if kind == "probability":
            raise CapabilityError("the module outputs probabilities; retraining needs logits "
                                  "([model] output = \"logit\") so the loss is well defined")
        import torch as _t

        with _t.no_grad():
            n_out = int(module(_t.from_numpy(np.ascontiguousarray(data.X[:1], dtype=np.float32))).reshape(1, -1).shape[1])
        loss = "mse" if task == "regression" else ("bce" if n_out == 1 else "ce")
        recipe, source = _recipe(model, config, ctx, loss)
        if task == "regression" and recipe.loss != "mse" or task != "regression" and recipe.loss == "mse":
            raise InvalidConfigError(f"The training recipe from {source} uses loss {recipe.loss!r}, "
                                     f"which does not fit a {task} task.")
        theta0, theta_src = _theta0(model, config, recipe.seed)

        train = ctx.train
        if train is None or train.y is None:
            train = data
            train_source = (f"the audited data ({data.n_rows:,} rows; no training data was given — set "
                            "[data] train_path to retrain on the rows the model was trained on)")
            notes.append("No training data was given, so the networks were retrained on the audited "
                         "rows; the refit then differs from the submitted model by design.")
        else:
            train_source = f"the training data ({train.n_rows:,} rows)"
        X = np.asarray(train.X, dtype=np.float32)
        y = np.asarray(train.y)
        if config.max_training_rows is not None and len(X) > config.max_training_rows:
            rows = np.sort(ctx.rng.choice(len(X), config.max_training_rows, replace=False))
            X, y = X[rows], y[rows]
            notes.append(f"A random sample of {config.max_training_rows:,} training rows was used (max_training_rows).")
        fit, _ = recipe.fit_rows(len(X))
        Xf = torch.from_numpy(np.ascontiguousarray(X[fit]))
        if recipe.loss != "mse" and recipe.loss != loss:
            raise InvalidConfigError(f"The training recipe from {source} uses loss {recipe.loss!r}, but the "
                                     f"model has {n_out} output(s), which needs {loss!r}.")
        yf = y[fit].astype(np.float32 if recipe.loss != "ce" else np.int64)
        B = config.n_permutations
        perms = [np.arange(len(yf))] + [ctx.rng.permutation(len(yf)) for _ in range(B)]
        Y = torch.from_numpy(np.stack([yf[p] for p in perms]))

        prev = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            t0 = time.perf_counter()
            fitn = train_functional(module, theta0, Xf, Y, recipe, mode=config.mode, chunk=config.chunk,
                                    device=device,
                                    progress=lambda d, t: ctx.progress(d, t + 1))
            seconds["retraining"] = round(time.perf_counter() - t0, 1)
            if fitn.diverged[0]:
                raise CapabilityError("the network retrained from θ₀ on the real outcome diverged; check the training recipe")
            diverged = tuple(int(i) for i in np.flatnonzero(fitn.diverged[1:]))

            # ---- how close the refit comes to the submitted model --------------------------
            Xa = torch.from_numpy(np.ascontiguousarray(data.X, dtype=np.float32))
            with torch.no_grad():
                ref = module_call(module, {k: v for k, v in module.state_dict().items()}, Xa)
                mine = fitn.forward({k: v[:1] for k, v in fitn.params.items()}, Xa)[0]
            ref, mine = ref.reshape(len(Xa), -1).double().numpy(), mine.reshape(len(Xa), -1).double().numpy()
            refit: dict[str, float | None] = {
                "max_parameter_difference": float(max(
                    (fitn.params[k][0] - module.state_dict()[k]).abs().max() for k in fitn.params))}
            if task == "regression":
                yt = np.asarray(data.y, dtype=float) if data.y is not None else None
                refit["rmse_submitted"] = float(np.sqrt(np.mean((ref[:, 0] - yt) ** 2))) if yt is not None else None
                refit["rmse_refit"] = float(np.sqrt(np.mean((mine[:, 0] - yt) ** 2))) if yt is not None else None
                refit["prediction_correlation"] = float(np.corrcoef(ref[:, 0], mine[:, 0])[0, 1])
                link = "identity"
            else:
                def labels(o: np.ndarray) -> np.ndarray:
                    return (o[:, 0] > 0).astype(int) if o.shape[1] == 1 else o.argmax(1)
                yt = np.asarray(data.y).astype(int)
                refit["accuracy_submitted"] = float(np.mean(labels(ref) == yt))
                refit["accuracy_refit"] = float(np.mean(labels(mine) == yt))
                refit["prediction_agreement"] = float(np.mean(labels(ref) == labels(mine)))
                link = "sigmoid" if ref.shape[1] == 1 else "softmax"

            # ---- batched IG over every network + the submitted model ------------------------
            t0 = time.perf_counter()
            n_ig = min(config.n_rows, data.n_rows)
            rows = np.sort(ctx.rng.choice(data.n_rows, n_ig, replace=False))
            xr = Xa[torch.from_numpy(rows)]
            base = (torch.zeros_like(Xf[0]) if config.baseline == "zeros" else Xf.mean(0))
            params = {k: torch.cat([v, module.state_dict()[k][None].to(v.dtype)]) for k, v in fitn.params.items()}
            ig = batched_integrated_gradients(fitn.forward, params, xr, base, link=link,
                                              steps=config.ig_steps).double().numpy()   # (B+2, n, ...)
            seconds["integrated_gradients"] = round(time.perf_counter() - t0, 1)
        finally:
            torch.set_num_threads(prev)
        flat = ig.reshape(ig.shape[0], ig.shape[1], -1)

        tests: list[GroupTest] = []
        private_null: dict[str, Any] = {}
        n_bh: dict[str, int] = {}
        n_mt: dict[str, int] = {}
        reach: list[str] = []
        for gname, groups in _groupings(data).items():
            stat = np.stack([np.abs(flat[:, :, idx].sum(-1)).mean(1) for idx in groups.values()], axis=1)
            if config.statistic == "share":
                with np.errstate(invalid="ignore", divide="ignore"):
                    stat = stat / stat.sum(1, keepdims=True)
            obs, null, sub = stat[0], stat[1:B + 1].copy(), stat[B + 1]
            null[list(diverged)] = np.nan
            pv = permutation_pvalues(obs, null)
            if config.alternative == "upper":
                p = pv.upper
                p_mt = maxt_stepdown(obs, null, "greater")
            else:
                p = pv.two_sided
                p_mt = maxt_stepdown(obs, null, "two-sided")
            p_mt = np.maximum(p_mt, p)
            p_bh = benjamini_hochberg(p)
            mean0, _, lo, hi = null_summary(null[np.isfinite(null).all(1)])
            for j, g in enumerate(groups):
                tests.append(GroupTest(gname, g, float(obs[j]), float(sub[j]), float(mean0[j]), float(lo[j]),
                                       float(hi[j]), float(pv.upper[j]), float(pv.two_sided[j]), float(p[j]),
                                       float(p_bh[j]), float(p_mt[j]), bool(p_bh[j] <= config.alpha)))
            private_null[gname] = (obs, null, list(groups))
            n_bh[gname] = int((p_bh <= config.alpha).sum())
            side = "greater" if config.alternative == "upper" else "two-sided"
            reach.extend(msg for corr in ("bh", "maxt")
                         if (msg := reachability(pv.n_null, len(groups), config.alpha, side, corr).message(plural(gname))))
            n_mt[gname] = int((p_mt <= config.alpha).sum())
        unused = recipe.described + (() if "n_restarts" in recipe.defaulted else ("n_restarts",))
        if unused:
            notes.append("Recipe keys not used by the retraining (it starts from θ₀; the rest describe "
                         "the training): " + ", ".join(unused) + ".")
        return AttributionSignificanceResult(
            statistic=("the group's share of the total" if config.statistic == "share" else "the raw value")
                      + " of mean over rows of |Σ IG over the group's inputs| (IG of the predicted class's "
                      "probability for classifiers, of the value for regressors)",
            groupings=tuple(private_null), tests=tuple(tests), recipe=recipe.to_json(), recipe_source=source,
            recipe_defaults=tuple(recipe.defaulted), theta0_source=theta_src, train_source=train_source,
            n_fit=len(fit), n_ig_rows=n_ig, ig_steps=config.ig_steps,
            baseline="zeros" if config.baseline == "zeros" else "the fitting rows' mean input",
            n_permutations=B, n_null_used=B - len(diverged), diverged=diverged,
            alternative=config.alternative, alpha=config.alpha, trainer_mode=fitn.mode,
            swapped_recurrences=tuple(fitn.swapped), refit=refit, n_significant_bh=n_bh,
            n_significant_maxt=n_mt, reachability=tuple(reach), notes=tuple(notes), _seconds=seconds, _null=private_null,
            _grids=data.layout.grid_shapes() or None)

    def plan(self, model: ModelAdapter, data: AuditData, config: AttributionSignificanceConfig,
             ctx: RunContext) -> Any:
        """Only when enabled: networks retrained on permuted outcomes, then integrated gradients."""
        from audit.core.cost import Plan

        if not config.enabled:
            return Plan("off (enabled = false)")
        train = ctx.train if ctx.train is not None else data
        n = min(train.n_rows, config.max_training_rows) if config.max_training_rows is not None else train.n_rows
        nets = config.n_permutations + 1
        # the epochs of the recipe the run will use (config over [model.training] over
        # training.json): the config's alone priced the macro LSTM's 400 epochs as 20 (33x short)
        from audit.train.recipe import gather_recipe

        try:
            merged, _ = gather_recipe(model, ctx.training, config.recipe, method="attribution_significance",
                                      action="retraining the model")
        except Exception:  # the method itself will say what is missing
            merged = dict(config.recipe)
        epochs = merged.get("epochs", 20)
        epochs = epochs if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs > 0 else 20
        return Plan(f"{nets:,} networks retrained on {n:,} rows",
                    uncounted_rows=3 * nets * (epochs * n + config.ig_steps * min(config.n_rows, data.n_rows)))

    def findings(self, result: AttributionSignificanceResult, config: AttributionSignificanceConfig) -> list[Finding]:
        out: list[Finding] = []
        for g in result.groupings:
            tests = [t for t in result.tests if t.grouping == g]
            sig = sorted((t for t in tests if t.significant), key=lambda t: t.p)
            out.append(Finding(
                "info",
                f"Attribution randomization test ({result.n_null_used} networks retrained from θ₀ on "
                "permuted outcomes): mean |IG| exceeds "
                f"the null for {result.n_significant_bh[g]} of {len(tests)} {plural(g)} after "
                f"Benjamini–Hochberg at {result.alpha:g} ({result.n_significant_maxt[g]} after max-T)"
                + (f", e.g. {', '.join(t.group for t in sig[:3])}" if sig else "")
                + f". Smallest attainable p: {1 / (result.n_null_used + 1):.3g}."))
        out += [Finding("warning", msg) for msg in result.reachability]
        if result.diverged:
            out.append(Finding("warning", f"{len(result.diverged)} of {result.n_permutations} null networks "
                                          "diverged and were excluded from the p-values."))
        r = result.refit
        for a, b, name in (("accuracy_submitted", "accuracy_refit", "accuracy"), ("rmse_submitted", "rmse_refit", "RMSE")):
            if r.get(a) is not None and r.get(b) is not None and abs(r[a] - r[b]) > 0.02 * max(1.0, abs(r[a])):
                out.append(Finding("warning", f"The network retrained from θ₀ on the real outcome has {name} "
                                              f"{r[b]:.3f} against the submitted model's {r[a]:.3f}: the test "
                                              "describes networks trained with the stated recipe, which may "
                                              "not be how the submitted model was trained."))
        return out

    def figures(self, result: AttributionSignificanceResult, data: AuditData) -> dict[str, Any]:
        return _figures(result)


def _figures(result: AttributionSignificanceResult) -> dict[str, Any]:
    from audit.core.plots import HIGHLIGHT, NEUTRAL, new_figure, pyplot, shorten

    figs: dict[str, Any] = {}
    if not result._null:
        return figs
    for g in result.groupings:
        tests = [t for t in result.tests if t.grouping == g]
        show = sorted(tests, key=lambda t: -t.observed)[:25][::-1]
        fig, ax = new_figure(6.5, 0.8 + 0.22 * len(show))
        ypos = np.arange(len(show))
        ax.barh(ypos, [t.observed for t in show], color=[HIGHLIGHT if t.significant else NEUTRAL for t in show],
                height=0.6, label="observed (refit on the real outcome)")
        ax.hlines(ypos, [t.null_low for t in show], [t.null_high for t in show], color="#000000", lw=2,
                  alpha=0.6, label="null 95% range (permuted outcome)")
        ax.plot([t.null_mean for t in show], ypos, "|", color="#000000", ms=8)
        ax.set_yticks(ypos, [shorten(f"{t.group}{' *' if t.significant else ''}", 30) for t in show], fontsize=7)
        ax.set_xlabel("mean |Integrated Gradients| per row")
        ax.set_title(f"Per {g}: observed vs null (green, *: significant after BH)", fontsize=8)
        ax.legend(fontsize=6, loc="lower right")
        fig.tight_layout()
        figs[f"bars_{g}"] = fig
    plt = pyplot()
    logp = {g: np.array([-np.log10(t.p) for t in result.tests if t.grouping == g]) for g in result.groupings}
    vmax = float(np.log10(result.n_null_used + 1)) if result.n_null_used else 1.0
    if result._grids and "patch" in result._grids:
        h, w, names = result._grids["patch"]
        if h * w == len(logp["patch"]):
            fig, ax = new_figure(3.6, 3.2)
            im = ax.imshow(logp["patch"].reshape(h, w), cmap="viridis", vmin=0, vmax=vmax)
            for t, (r, c) in zip([t for t in result.tests if t.grouping == "patch"], np.ndindex(h, w)):
                if t.significant:
                    ax.text(c, r, "*", ha="center", va="center", color="white", fontsize=12)
            ax.set_xticks([]); ax.set_yticks([])
            fig.colorbar(im, ax=ax, label="-log10 p (bright = small p)")
            ax.set_title("Patch p-values (* BH-significant)", fontsize=8)
            fig.tight_layout()
            figs["heatmap"] = fig
    elif {"feature", "lag"} <= set(result.groupings):
        fig, axes = plt.subplots(1, 2, figsize=(6.5, 2.4))
        for ax, g in zip(axes, ("feature", "lag")):
            names = [t.group for t in result.tests if t.grouping == g]
            im = ax.imshow(logp[g][None, :], cmap="viridis", vmin=0, vmax=vmax, aspect="auto")
            ax.set_xticks(range(len(names)), [shorten(n, 12) for n in names], fontsize=6, rotation=45, ha="right")
            ax.set_yticks([])
            ax.set_title(f"-log10 p per {g}", fontsize=8)
        fig.colorbar(im, ax=list(axes), label="-log10 p (bright = small p)")
        figs["heatmap"] = fig
    return figs


__all__ = ["AttributionSignificance", "AttributionSignificanceConfig", "AttributionSignificanceResult", "GroupTest"]
