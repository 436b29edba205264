"""Model-agnostic significance of permutation importance: the response-permutation null around
any refittable scikit-learn estimator.

This is the Olden & Jackson (2002) randomization test with the network replaced by "clone the
estimator and refit it", and connection weights replaced by permutation importance:

1. Split the rows once into fitting and held-out rows (seeded). Fit a clone on the fitting rows and
   measure each raw feature's permutation importance on the held-out rows: the mean drop in the
   score over ``n_repeats`` joint permutations of the feature's encoded columns.
2. ``B`` times: permute the outcome over all rows, then run the identical pipeline (same split,
   same column permutations, a fresh clone with the same parameters), in parallel.
3. Upper-tail p-values ``(1 + #{null >= observed}) / (B + 1)``, Benjamini–Hochberg and
   Westfall–Young max-T over the features, from the same refits.

Why a separate method rather than a mode of ``connection_weights``: it needs a different
capability (an estimator that can be cloned and refitted, not readable weights), computes a
different statistic with its own result type, and costs a full refit per null draw, so its default
``B`` is chosen from the number of features rather than fixed at 999 (see below), and its report
section states different assumptions.

Choosing B: with ``m`` features and ``B`` refits a lone effect's smallest Benjamini–Hochberg-adjusted
p-value is ``m / (B + 1)``; at the former fixed ``B = 99`` six or more features could never pass BH
at 0.05 on their own (the headline said "0 features" while max-T found one or two). By default
``B`` is the smallest with ``m / (B + 1) <= alpha / 2`` (so a strong effect need not be the single
most extreme draw), at least 99 and at most 999; a configured ``B`` that cannot reach ``alpha`` is
reported with the smallest ``B`` that can.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from audit.core.adapter import ModelAdapter
from audit.core.dataset import AuditData
from audit.core.method import (AuditMethod, Constraint, Finding, Interval, MethodConfig, MethodResult,
                               RunContext, check_permutations)
from audit.core.results import Attributions, estimates
from audit.errors import CapabilityError, InvalidConfigError
from audit.stats.multiplicity import benjamini_hochberg, maxt_stepdown
from audit.stats.permutation import (default_n_permutations, null_summary,
                                     permutation_pvalues, reachability)


@dataclass(frozen=True)
class PermutationSignificanceConfig(MethodConfig):
    """Options.

    n_permutations : refits on permuted outcomes (integer, at least 19); default (None): chosen
    from the number of features F, the smallest B with F/(B+1) <= alpha/2, between 99 and 999;
    n_repeats : column permutations per feature when measuring importance;
    scoring : "auto" (accuracy for classifiers, R² for regression), "accuracy", "roc_auc", "r2";
    test_fraction : share of rows held out for measuring importance;
    max_training_rows : use at most this many rows (a random sample) — every null draw is a full refit;
    n_jobs : parallel refits (default: every usable core); results do not depend on it;
    alpha : level after Benjamini–Hochberg.
    """

    n_permutations: int | None = None
    n_repeats: int = 5
    scoring: Literal["auto", "accuracy", "roc_auc", "r2"] = "auto"
    test_fraction: float = 0.3
    max_training_rows: int | None = 5000
    n_jobs: int | None = None
    alpha: float = 0.05

    bounds: ClassVar[Mapping[str, Constraint]] = {
        "test_fraction": Interval(0.1, 0.5, "held-out rows the importances are measured on"),
        "max_training_rows": Interval(50, 10_000_000, "every null draw is a full refit on these rows"),
    }
    renamed: ClassVar[Mapping[str, str]] = {"max_rows": "max_training_rows"}

    def validate(self) -> None:
        check_permutations("n_permutations", self.n_permutations, alpha=self.alpha)


@dataclass(frozen=True)
class FeatureSignificance:
    feature: str
    importance: float          # mean drop in the score on held-out rows
    importance_sd: float       # over the n_repeats column permutations
    null_mean: float
    null_high: float           # 97.5% quantile of the null
    p: float                   # upper tail
    p_bh: float
    p_maxt: float
    significant: bool


@dataclass(frozen=True)
class PermutationSignificanceResult(MethodResult):
    estimator: str
    scoring: str
    score_observed: float      # held-out score of the refit on the real outcome
    score_null_mean: float
    n_fit: int
    n_held_out: int
    n_permutations: int
    n_permutations_chosen: str               # why this B ("configured" or how the default was chosen)
    n_null_used: int
    failed_refits: int
    train_source: str
    features: tuple[FeatureSignificance, ...]
    n_significant_bh: int
    n_significant_maxt: int
    alpha: float
    reachability: tuple[str, ...]            # why BH / max-T cannot reach alpha with this B
    notes: tuple[str, ...]
    unconverged_refits: int = 0              # refits that raised ConvergenceWarning (counted, silenced)
    _null: Any = None
    _seconds: float | None = None            # not serialised: results stay reproducible

    def attributions(self) -> tuple[Attributions, ...]:
        """Permutation importance (mean drop of the held-out score when a feature's values are
        permuted) per raw feature: global, computed on refits, not recomputed."""
        names = [f.feature for f in self.features]
        return (Attributions(
            key="permutation_significance", label=f"Permutation importance of the refit ({self.scoring})",
            short="PermSig", origin=f"permutation_significance: drop in held-out {self.scoring}",
            features=tuple(names), grouping="feature", explains="output",
            explained=f"the held-out {self.scoring}",
            importance=estimates(names, [f.importance for f in self.features]), signed=False),)


def _predict(est: Any, X: Any, scoring: str) -> np.ndarray:
    """What ``scoring`` needs from the estimator: P(positive) for roc_auc, else predictions."""
    if scoring == "roc_auc":
        proba = est.predict_proba(X)
        classes = list(getattr(est, "classes_", [0, 1]))
        return proba[:, classes.index(1) if 1 in classes else proba.shape[1] - 1]
    return np.asarray(est.predict(X))


def _score_of(pred: np.ndarray, y: np.ndarray, scoring: str) -> float:
    if scoring == "r2":
        pred = np.asarray(pred, dtype=float)
        tot = np.sum((y - y.mean()) ** 2)
        return float(1 - np.sum((y - pred) ** 2) / tot) if tot > 0 else float("nan")
    if scoring == "roc_auc":
        from sklearn.metrics import roc_auc_score

        if len(np.unique(y)) < 2:
            return float("nan")
        return float(roc_auc_score(y, pred))
    return float(np.mean(pred == y))


def _score(est: Any, X: Any, y: np.ndarray, scoring: str) -> float:
    return _score_of(_predict(est, X, scoring), y, scoring)


def _pipeline(estimator: Any, X: np.ndarray, y: np.ndarray, fit: np.ndarray, held: np.ndarray,
              groups: list[list[int]], perms: np.ndarray, scoring: str, to_input: Any) -> np.ndarray:
    """Refit a clone and return [score, importance_repeat_mean per feature, sd per feature].

    A feature's permuted copies of the held-out rows are scored in one call (row-wise
    predictions are the same in one call or several; one call per copy cost most of the time
    of a pipeline that decodes its input)."""
    from sklearn.base import clone

    import warnings

    from sklearn.exceptions import ConvergenceWarning

    est = clone(estimator)
    try:
        with warnings.catch_warnings(record=True) as caught:  # counted, not printed once per refit
            warnings.simplefilter("always", ConvergenceWarning)
            est.fit(to_input(X[fit]), y[fit])
        unconverged = float(any(issubclass(w.category, ConvergenceWarning) for w in caught))
        Xh, yh = X[held], y[held]
        n, R = len(held), perms.shape[0]
        base = _score(est, to_input(Xh), yh, scoring)
        imp = np.empty((len(groups), R))
        for g, cols in enumerate(groups):
            Xp = np.repeat(Xh[None], R, axis=0)
            for r, perm in enumerate(perms):
                Xp[r][:, cols] = Xh[perm][:, cols]
            pred = _predict(est, to_input(Xp.reshape(R * n, -1)), scoring)
            for r in range(R):
                imp[g, r] = base - _score_of(pred[r * n:(r + 1) * n], yh, scoring)
        return np.concatenate([[base], imp.mean(1), imp.std(1, ddof=1) if perms.shape[0] > 1 else np.zeros(len(groups)),
                               [unconverged]])
    except Exception:  # a refit that fails on a permuted outcome is excluded and counted
        return np.concatenate([np.full(1 + 2 * len(groups), np.nan), [0.0]])


class PermutationSignificance(AuditMethod[PermutationSignificanceConfig, PermutationSignificanceResult]):
    name = "permutation_significance"
    title = "Permutation importance with a response-permutation significance test"
    requires = frozenset({"sklearn"})
    libraries = ("sklearn.base",)
    needs_target = True
    Config = PermutationSignificanceConfig

    def skip_reason(self, model: ModelAdapter, data: AuditData, config: PermutationSignificanceConfig) -> str | None:
        reason = super().skip_reason(model, data, config)
        if reason is not None and reason.startswith("needs a model with sklearn"):
            return (f"is for refittable scikit-learn (sklearn) estimators; {model.description} is not one. For "
                    "torch models (CNN, LSTM, any nn.Module with a training recipe) use "
                    "attribution_significance")
        return reason

    def run(self, model: ModelAdapter, data: AuditData, config: PermutationSignificanceConfig,
            ctx: RunContext) -> PermutationSignificanceResult:
        from audit import execution

        config.validate()
        estimator = getattr(model, "estimator", None)
        if estimator is None or not hasattr(estimator, "fit"):
            raise CapabilityError(f"{model.description} cannot be refitted")
        t0 = time.perf_counter()
        notes: list[str] = []
        train = ctx.train if ctx.train is not None and ctx.train.y is not None else data
        if train is data:
            notes.append("No training data was given, so the estimator was refitted on the audited rows.")
        source = (f"the training data ({train.n_rows:,} rows)" if train is not data
                  else f"the audited data ({data.n_rows:,} rows)")
        X = np.asarray(train.X.reshape(train.n_rows, -1), dtype=np.float64)
        y = np.asarray(train.y)
        if config.max_training_rows is not None and len(X) > config.max_training_rows:
            rows = np.sort(ctx.rng.choice(len(X), config.max_training_rows, replace=False))
            X, y = X[rows], y[rows]
            notes.append(f"A random sample of {config.max_training_rows:,} rows was used (max_training_rows): every null draw is a full refit.")
        scoring = config.scoring
        if scoring == "auto":
            scoring = "r2" if data.task == "regression" else "accuracy"
        if scoring in ("accuracy", "roc_auc") and data.task == "regression":
            raise InvalidConfigError(f"The 'scoring' option {scoring!r} of permutation_significance needs a classifier.")
        if scoring == "roc_auc" and (data.task != "binary" or not hasattr(estimator, "predict_proba")):
            raise InvalidConfigError("The 'scoring' option \"roc_auc\" of permutation_significance needs a binary classifier with predict_proba.")
        raw = bool(getattr(model, "raw", False))
        encoding = train.encoding
        to_input = (lambda A: encoding.decode(A.astype(np.float32))) if raw else (lambda A: A)
        order = ctx.rng.permutation(len(X))
        n_held = max(2, int(round(config.test_fraction * len(X))))
        held, fit = np.sort(order[:n_held]), np.sort(order[n_held:])
        perms = np.stack([ctx.rng.permutation(n_held) for _ in range(config.n_repeats)])
        groups = list(train.groups.values())
        F = len(groups)
        if config.n_permutations is not None:
            B = config.n_permutations
            chosen = ("lowered to fit the time budget (n_permutations)" if "n_permutations" in ctx.lowered
                      else "configured (n_permutations)")
        else:
            B = default_n_permutations(F, config.alpha)
            chosen = (f"chosen from the {F} features: the smallest B (at least 99, at most 999) with which a "
                      f"lone effect's Benjamini–Hochberg-adjusted p-value, {F}/(B+1), can reach alpha/2 = "
                      f"{config.alpha / 2:g}" + (" (capped at 999)" if F / 1000 > config.alpha / 2 else ""))
        # Each null draw's permutation is drawn here, in order, from the method's stream: the
        # refits are independent chunks whose results do not depend on the number of workers.
        ys = [y] + [y[ctx.rng.permutation(len(y))] for _ in range(B)]

        def job(yb: np.ndarray) -> np.ndarray:
            return _pipeline(estimator, X, yb, fit, held, groups, perms, scoring, to_input)

        out = execution.map(job, ys, n_jobs=config.n_jobs, prefer="processes", progress=ctx.progress)
        res = np.vstack(out)
        unconverged, res = int(res[:, -1].sum()), res[:, :-1]
        if not np.isfinite(res[0]).all():
            raise CapabilityError("refitting the estimator on the real outcome failed")
        obs, null = res[0, 1:1 + F], res[1:, 1:1 + F]
        pv = permutation_pvalues(obs, null)
        p_bh = benjamini_hochberg(pv.upper)
        p_maxt = maxt_stepdown(obs, null, "greater")
        nmean, _, _, nhigh = null_summary(null)
        feats = tuple(
            FeatureSignificance(name, float(obs[i]), float(res[0, 1 + F + i]), float(nmean[i]), float(nhigh[i]),
                                float(pv.upper[i]), float(p_bh[i]), float(p_maxt[i]), bool(p_bh[i] <= config.alpha))
            for i, name in enumerate(train.feature_names))
        reach = tuple(msg for corr in ("bh", "maxt")
                      if (msg := reachability(pv.n_null, F, config.alpha, "greater", corr).message("features")))
        null_scores = res[1:, 0][np.isfinite(res[1:, 0])]
        return PermutationSignificanceResult(
            estimator=type(estimator).__name__, scoring=scoring, score_observed=float(res[0, 0]),
            score_null_mean=float(null_scores.mean()) if null_scores.size else float("nan"),
            n_fit=len(fit), n_held_out=len(held), n_permutations=B, n_permutations_chosen=chosen,
            n_null_used=pv.n_null,
            failed_refits=pv.n_excluded, train_source=source, features=feats,
            n_significant_bh=int((p_bh <= config.alpha).sum()), n_significant_maxt=int((p_maxt <= config.alpha).sum()),
            alpha=config.alpha, reachability=reach, notes=tuple(notes), unconverged_refits=unconverged, _null=(null, obs),
            _seconds=round(time.perf_counter() - t0, 2))

    def plan(self, model: ModelAdapter, data: AuditData, config: PermutationSignificanceConfig,
             ctx: RunContext) -> Any:
        """B + 1 refits, each scored on the held-out rows once plus once per feature and repeat.
        Above a budget B may go down to the smallest with which a lone effect still reaches alpha
        after Benjamini–Hochberg."""
        from audit.core.cost import Plan, Reducible
        from audit.execution import resolve_n_jobs
        from audit.stats.permutation import MIN_PERMUTATIONS, smallest_reaching_b

        train = ctx.train if ctx.train is not None and ctx.train.y is not None else data
        n = min(train.n_rows, config.max_training_rows) if config.max_training_rows is not None else train.n_rows
        held = max(2, int(round(config.test_fraction * n)))
        F = len(train.groups)
        B = config.n_permutations if config.n_permutations is not None else default_n_permutations(F, config.alpha)
        floor = min(B, max(MIN_PERMUTATIONS, smallest_reaching_b(F, config.alpha, "greater", "bh")))
        jobs = resolve_n_jobs(config.n_jobs)
        return Plan(f"{B + 1:,} refits of {n - held:,} rows on {jobs} worker(s)", refits=B + 1,
                    refit_rows=n - held, refit_model_rows=held * (1 + F * config.n_repeats),
                    refit_model_calls=1 + F, n_jobs=jobs,
                    reducible={"n_permutations": Reducible(floor, "permutations", config.alpha, current=B, family=F)})

    def findings(self, result: PermutationSignificanceResult, config: PermutationSignificanceConfig) -> list[Finding]:
        def listed(names: list[str]) -> str:
            return f" ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''})" if names else ""

        ranked = sorted(result.features, key=lambda f: f.p)
        bh = [f.feature for f in ranked if f.p_bh <= result.alpha]
        mt = [f.feature for f in ranked if f.p_maxt <= result.alpha]
        out = [Finding("info", f"Response-permutation test of permutation importance ({result.n_null_used} "
                               f"refits of the {result.estimator} on permuted outcomes): of "
                               f"{len(result.features)} features, {len(bh)} have importance above the null "
                               f"after Benjamini–Hochberg at {result.alpha:g} (false discovery rate){listed(bh)} "
                               f"and {len(mt)} after Westfall–Young max-T (family-wise error){listed(mt)}.")]
        out += [Finding("warning", msg) for msg in result.reachability]
        if result.unconverged_refits:
            out.append(Finding("info", f"{result.unconverged_refits} of {result.n_permutations + 1} refits stopped "
                                       f"at the estimator's iteration limit before converging (scikit-learn's "
                                       f"ConvergenceWarning, counted here instead of printed): the refits are "
                                       f"trained exactly as the submitted settings train them."))
        if result.failed_refits:
            out.append(Finding("warning", f"{result.failed_refits} refits on permuted outcomes failed and were excluded."))
        return out

    def figures(self, result: PermutationSignificanceResult, data: AuditData) -> dict[str, Any]:
        from audit.core.plots import NEUTRAL, POSITIVE, new_figure, shorten

        rows = sorted(result.features, key=lambda f: -f.importance)[:25][::-1]
        if not rows:
            return {}
        fig, ax = new_figure(6.5, 0.6 + 0.25 * len(rows))
        ypos = np.arange(len(rows))
        ax.barh(ypos, [r.importance for r in rows], xerr=[r.importance_sd for r in rows], color=POSITIVE, height=0.7)
        ax.scatter([r.null_high for r in rows], ypos, marker="|", s=120, color=NEUTRAL, label="null 97.5%")
        ax.set_yticks(ypos, [shorten(r.feature + (" *" if r.significant else ""), 40) for r in rows], fontsize=7)
        ax.set_xlabel(f"drop in held-out {result.scoring} when the feature is permuted")
        ax.set_title("Permutation importance; * significant after BH; grey tick: null 97.5% quantile", fontsize=8)
        return {"importance": fig}


__all__ = ["FeatureSignificance", "PermutationSignificance", "PermutationSignificanceConfig",
           "PermutationSignificanceResult"]
