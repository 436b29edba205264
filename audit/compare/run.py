"""Champion vs challenger: audit both models on the same rows and compare them, paired.

:func:`compare_runs` takes the two models' audit reports and their predictions on the same rows
and returns a :class:`ComparisonResult`; :func:`load_pair` reads the two configs (or one config
with ``[models.champion]`` and ``[models.challenger]``), :func:`run_comparison` audits both and
compares them, :func:`compare_models` is the Python API.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audit.compare.gate import NO_GATE, judge, parse_compare_gate
from audit.compare.importance import compare_importances
from audit.compare.options import CompareOptions, parse_compare
from audit.compare.paired import (
    BOOTSTRAP_ONE_SIDED_ERROR,
    AttributeComparison,
    Paired,
    adjust_fairness,
    compare_disparities,
    compare_performance,
    overall_changes,
)
from audit.compare.recourse import RecourseComparison, compare_recourse
from audit.compare.results import Change, DecisionChange, ImportanceComparison
from audit.errors import DataValidationError, InvalidConfigError
from audit.gate import GateResult
from audit.stats.paired import McNemar

COMPARE_SCHEMA = "audit-suite/compare@1"
ROLES = ("champion", "challenger")


@dataclass(frozen=True)
class ComparisonResult:
    """Everything ``audit compare`` computed; ``to_json()`` is results.json."""

    name: str
    title: str
    models: dict[str, dict[str, Any]]          # role -> name, model summary, findings, methods run
    data: dict[str, Any]                       # rows, row hash, target, sensitive, features
    options: CompareOptions
    performance: dict[str, Change]
    mcnemar: McNemar
    decisions: DecisionChange
    fairness: dict[str, AttributeComparison]
    fairness_skipped: dict[str, str]
    importance: dict[str, ImportanceComparison]
    importance_missing: dict[str, str]
    recourse: RecourseComparison
    gate: GateResult | None
    limitations: list[str]
    provenance: dict[str, Any]
    _reports: tuple[Any, ...] = field(default=(), repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        from audit.core.method import to_jsonable

        out = {"schema": COMPARE_SCHEMA, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                                             if not f.name.startswith("_") and f.name != "gate"}}
        out["gate"] = self.gate_json()
        return to_jsonable(out)

    def gate_json(self) -> dict[str, Any]:
        """The gate's verdicts, or (no ``[compare.gate]``) that nothing was judged and how to judge."""
        return self.gate.to_json() if self.gate is not None else {"outcome": "no gate rules", "note": NO_GATE}

    def json_bytes(self) -> bytes:
        return (json.dumps(self.to_json(), indent=2, allow_nan=False) + "\n").encode()

    def change(self, rule: Any) -> Change | str:
        """The change a parsed gate rule (:class:`audit.compare.gate.CompareRule`) judges, or
        why there is none."""
        if rule.section == "performance":
            return self.performance.get(rule.metric) or f"{rule.metric} was not computed (the models give no scores)"
        if rule.section == "counterfactuals":
            res = self.recourse.attributes.get(rule.attribute)
            if res is None:
                return f"recourse was not compared for {rule.attribute}: {self.recourse.note}"
            found = {g.group: g.paired for g in res.groups}
            return found.get(rule.group) or (f"{rule.attribute} has no group {rule.group!r} among the rows searched; "
                                             f"groups: {', '.join(found) or 'none'}")
        res = self.fairness.get(rule.attribute)
        change = None if res is None else res.disparities.get(rule.metric)
        return change or f"{rule.attribute} was not analysed ({self.fairness_skipped.get(rule.attribute, 'not compared')})"


def rows_digest(data: Any, features: Sequence[str]) -> str:
    """SHA-256 of the audited rows: their number and order, the target, the sensitive columns and
    the raw values of ``features`` (those both models read), each as text."""
    import pandas as pd

    h = hashlib.sha256(f"rows={data.n_rows}".encode())
    cols = [c for c in features if c in data.frame.columns]
    for name, col in ([("target", pd.Series(np.asarray(data.y)))]
                      + [(f"sensitive:{c}", data.sensitive[c]) for c in data.spec.sensitive]
                      + [(f"feature:{c}", data.frame[c]) for c in cols]):
        h.update(name.encode() + b"\0")
        h.update(pd.util.hash_pandas_object(col.astype(str).reset_index(drop=True), index=False).to_numpy().tobytes())
    h.update(json.dumps([str(c) for c in (data.classes or ())]).encode())
    return h.hexdigest()


def _shared_features(a: Any, b: Any) -> list[str]:
    fb = set(b.feature_names)
    return [f for f in a.feature_names if f in fb]


def check_same_rows(a: Any, b: Any, where: tuple[str, str]) -> tuple[str, list[str]]:
    """Refuse two data sets that are not the same rows; returns the hash and the shared features."""
    if a.task != "binary" or b.task != "binary":
        raise InvalidConfigError(f"audit compare compares binary classifiers; {where[0]} audits a {a.task} "
                                 f"task and {where[1]} a {b.task} task. Compare binary classifiers, or "
                                 "audit each model with audit run.")
    problems = []
    if a.spec.target != b.spec.target:
        problems.append(f"target {a.spec.target!r} vs {b.spec.target!r}")
    if list(a.spec.sensitive) != list(b.spec.sensitive):
        problems.append(f"sensitive attributes {list(a.spec.sensitive)} vs {list(b.spec.sensitive)}")
    if tuple(a.classes or ()) != tuple(b.classes or ()):
        problems.append(f"classes {list(a.classes or ())} vs {list(b.classes or ())} (positive label)")
    if a.n_rows != b.n_rows:
        problems.append(f"{a.n_rows:,} vs {b.n_rows:,} rows")
    shared = _shared_features(a, b)
    if not problems:
        da, db = rows_digest(a, shared), rows_digest(b, shared)
        if da != db:
            problems.append(f"the rows differ in content or order (SHA-256 of target, sensitive and shared "
                            f"feature columns: {da[:12]}… vs {db[:12]}…)")
    if problems:
        raise DataValidationError(
            f"The champion ({where[0]}) and the challenger ({where[1]}) are not audited on the same rows: "
            f"{'; '.join(problems)}. A paired comparison needs both models on identical rows: point both "
            "configs' [data] at the same file with the same target, sensitive, positive_label and max_rows.")
    return rows_digest(a, shared), shared


def compare_runs(reports: Sequence[Any], predictions: Sequence[Any], data: Any, *,
                 options: CompareOptions, gate: Mapping[str, Any] | None = None,
                 fairness_options: Mapping[str, Any] | None = None, seed: int = 0,
                 name: str = "compare", title: str | None = None, row_hash: str,
                 features: Sequence[str], provenance: dict[str, Any] | None = None) -> ComparisonResult:
    """Compare two audited models whose ``predictions`` (:class:`Predictions`) are on ``data``."""
    from audit.methods.fairness import FairnessConfig, attribute_sets, normalize_set_name, set_name
    from audit.methods.fairness.groups import group_values, intersection_too_large, resolve_favourable

    fair = FairnessConfig.from_dict(fairness_options or {}, method="fairness")
    # the favourable decision as the champion's fairness audit resolved it (favourable or favourable_label)
    options = dataclasses.replace(options, favourable=resolve_favourable(data, fair)[0])
    sets = attribute_sets(list(data.spec.sensitive), fair)
    rules = gate_rules(gate, data, fair)
    metrics = list(dict.fromkeys([*options.disparities,
                                  *(r.metric for r in rules if r.section == "fairness")]))
    rng = np.random.default_rng(np.random.SeedSequence([seed, 16]))
    pa, pb = predictions
    scores_a = None if pa.scores is None else np.asarray(pa.scores, float).reshape(-1)
    scores_b = None if pb.scores is None else np.asarray(pb.scores, float).reshape(-1)
    paired = Paired(np.asarray(data.y).astype(np.int64), np.asarray(pa.labels).astype(np.int64),
                    np.asarray(pb.labels).astype(np.int64), scores_a, scores_b)
    performance, mc = compare_performance(paired, options, rng)
    refs = {normalize_set_name(k, f"The fairness 'reference' key {k!r}"): v for k, v in fair.reference.items()}
    fairness: dict[str, AttributeComparison] = {}
    skipped: dict[str, str] = {}
    for cols in sets:
        values = group_values(data, cols)
        key = set_name(cols)
        too_many = intersection_too_large(cols, values, fair, key in refs, data.source)
        if too_many:
            skipped[key] = too_many
            continue
        fairness[key] = compare_disparities(key, values, paired, metrics, options, rng, refs.get(key))
    fairness = adjust_fairness(fairness)
    earlier = [{o.name: o.result for o in r.outcomes if o.ok} for r in reports]
    importance, missing = compare_importances(earlier[0], earlier[1], features, n_bootstrap=options.n_bootstrap,
                                              confidence=options.confidence, rng=rng)
    recourse = _recourse(earlier, data, options)
    limitations = _limitations(paired, options, reports, features)
    result = ComparisonResult(
        name=name, title=title or f"Champion vs challenger: {name}",
        models={role: {"name": r.name, "model": r.model, "methods": [o.name for o in r.outcomes if o.ok],
                       "findings": [f.to_json() for f in r.findings]} for role, r in zip(ROLES, reports)},
        data={"rows": int(data.n_rows), "row_sha256": row_hash, "source": data.source,
              "target": data.spec.target, "classes": list(data.classes or ()),
              "sensitive": list(data.spec.sensitive), "features_compared": list(features),
              "scores": scores_a is not None and scores_b is not None},
        options=options, performance=performance, mcnemar=mc, decisions=overall_changes(paired, options.confidence),
        fairness=fairness, fairness_skipped=skipped, importance=importance, importance_missing=missing,
        recourse=recourse, gate=None, limitations=limitations, provenance=provenance or {"seed": seed}, _reports=tuple(reports))
    if rules:
        result = dataclasses.replace(result, gate=judge(rules, {r.key: result.change(r) for r in rules}))
    return result


def gate_rules(gate: Mapping[str, Any] | None, data: Any, fair: Any) -> list[Any]:
    """The parsed ``[compare.gate]`` rules (none without one) for the audited ``data``: the
    attribute sets the fairness options ``fair`` compare, and each attribute's groups in the
    data (a recourse rule naming a group that does not occur is a usage error)."""
    import pandas as pd

    from audit.methods.fairness import attribute_sets
    from audit.methods.fairness.groups import group_values

    if not gate:
        return []
    sensitive = list(data.spec.sensitive)
    groups = {a: pd.unique(group_values(data, (a,))).tolist() for a in sensitive}
    return parse_compare_gate(gate, sets=attribute_sets(sensitive, fair), groups=groups)


def _recourse(earlier: Sequence[Mapping[str, Any]], data: Any, options: CompareOptions) -> RecourseComparison:
    """Recourse per group when both audits ran ``counterfactuals``; otherwise why not."""
    ran = [r.get("counterfactuals") is not None for r in earlier]
    if not all(ran):
        which = " and ".join(role for role, ok in zip(ROLES, ran) if not ok)
        return RecourseComparison({}, {}, f"Counterfactual recourse is not compared: the counterfactuals method did "
                                          f"not run for the {which} (it needs a tabular classifier and the method "
                                          "selected in both audits).")
    if not list(data.spec.sensitive):
        return RecourseComparison({}, {}, "Counterfactual recourse is not compared per group: no sensitive "
                                          "attribute was named ([data] sensitive).")
    return compare_recourse(earlier[0]["counterfactuals"], earlier[1]["counterfactuals"], data.sensitive,
                            list(data.spec.sensitive), confidence=options.confidence)


def _limitations(p: Paired, options: CompareOptions, reports: Sequence[Any], features: Sequence[str]) -> list[str]:
    notes = [
        "Both models were evaluated on the same rows, so every change is paired: its interval resamples "
        "the rows once for both models, and its test swaps the two models' outputs row by row. The "
        "permutation tests test exchangeability of the two models' outputs on every row (for AUC, of "
        "their scores), a stronger null than equal metrics.",
        "The performance changes' intervals are paired percentile bootstrap intervals, approximate: in "
        "simulations each bound of a 95% interval missed the true change up to "
        f"{BOOTSTRAP_ONE_SIDED_ERROR['accuracy']:.1%} of the time for accuracy and "
        f"{BOOTSTRAP_ONE_SIDED_ERROR['auc']:.1%} for AUC (nominal 2.5%), and a gate verdict on them says so; the "
        "disparity changes' intervals are the range of the change over a simultaneous box of group rates "
        "(studentized bootstrap), conservative by construction. Both were checked by simulation (README, "
        "\"Comparing two models\"); a group smaller than "
        f"{options.min_group_size} rows is left out of both models' disparities.",
    ]
    if p.champion_scores is None or p.challenger_scores is None:
        notes.append("At least one model gives labels without scores, so AUC and calibration are not compared.")
    for role, r in zip(ROLES, reports):
        extra = [f for f in r.data_summary.get("features") or [] if f not in features]
        if extra:
            notes.append(f"The {role} also reads {', '.join(map(repr, extra[:8]))}, which the other model "
                         "does not; importances are compared on the shared features only.")
    return notes


# --------------------------------------------------------------------------------------------
# Loading the two configs and running both audits
# --------------------------------------------------------------------------------------------


def load_pair(paths: Sequence[str | Path]) -> tuple[Any, Any, dict[str, Any]]:
    """The champion's and challenger's plans and the ``[compare]`` table.

    Two configs: one per model ([compare] in either, or the same in both). One config:
    ``[models.champion]`` and ``[models.challenger]`` replace its ``[model]``."""
    from audit.config import AuditPlan
    from audit.core.userfiles import load_toml

    paths = [Path(p) for p in paths]
    if len(paths) not in (1, 2):
        raise InvalidConfigError(f"audit compare takes two configs (champion, challenger) or one config "
                                 f"with [models.champion] and [models.challenger]. Got {len(paths)} instead.")
    docs = [dict(load_toml(p, "config file")) for p in paths]
    if len(paths) == 1:
        doc = docs[0]
        models = doc.pop("models", None)
        if not isinstance(models, Mapping) or set(models) != set(ROLES):
            raise InvalidConfigError(
                f"The config {str(paths[0])!r} must have [models.champion] and [models.challenger] "
                "tables (and no others) to compare two models from one file; or pass two configs. "
                f"Got {sorted(models) if isinstance(models, Mapping) else models!r} instead.")
        if "model" in doc:
            raise InvalidConfigError(f"The config {str(paths[0])!r} has both [model] and [models.*]: "
                                     "keep [models.champion] and [models.challenger] only.")
        compare = doc.pop("compare", {})
        name = doc.get("name", "compare")
        plans = [AuditPlan.from_dict({**doc, "model": models[r], "name": f"{name}-{r}"},
                                     base_dir=paths[0].resolve().parent, config_path=str(paths[0]))
                 for r in ROLES]
        return plans[0], plans[1], dict(compare)
    tables = [d.pop("compare", None) for d in docs]
    present = [t for t in tables if t is not None]
    if len(present) == 2 and present[0] != present[1]:
        raise InvalidConfigError("Both configs have a [compare] table and they differ: keep it in one of them "
                                 "(or make them identical).")
    for p, d in zip(paths, docs):
        if "models" in d:
            raise InvalidConfigError(f"The config {str(p)!r} has [models.*] tables: with two configs, each "
                                     "names its model in [model].")
    plans = [AuditPlan.from_dict(d, base_dir=p.resolve().parent, config_path=str(p)) for p, d in zip(paths, docs)]
    return plans[0], plans[1], dict(present[0]) if present else {}


def run_comparison(plans: Sequence[Any], compare: Mapping[str, Any], *, trust_code: bool = False,
                   untrusted_config: bool = False, progress: Any = None, on_plan: Any = None,
                   name: str | None = None) -> ComparisonResult:
    """Audit both plans' models (the champion's seed for both, so that sampled rows coincide)
    and compare them. Every input and option error is raised before a method runs."""
    from audit import execution

    plan_a, plan_b = plans
    if plan_a.execution != plan_b.execution:
        raise InvalidConfigError(
            f"The two configs' [execution] tables differ ({plan_a.execution.backend!r}, address "
            f"{plan_a.execution.address!r} vs {plan_b.execution.backend!r}, address {plan_b.execution.address!r}): "
            "both audits run on one backend. Make them equal, or choose it with --backend / --ray-address.")
    if untrusted_config:  # before connecting to any cluster
        plan_a.execution.check_untrusted()
        plan_b.execution.check_untrusted()
    # one session for both audits (one Ray instance, not two); recorded like audit run's
    with execution.session(plan_a.execution) as cluster:
        result = _compare_plans(plan_a, plan_b, compare, trust_code=trust_code, untrusted_config=untrusted_config,
                                progress=progress, on_plan=on_plan, name=name)
    result.provenance["execution"] = cluster.to_json()
    return result


def _compare_plans(plan_a: Any, plan_b: Any, compare: Mapping[str, Any], *, trust_code: bool,
                   untrusted_config: bool, progress: Any, on_plan: Any, name: str | None) -> ComparisonResult:
    from audit.report.model import provenance
    from audit.runner import FOLDER_STREAMED, load_inputs, run_audit

    options, gate = parse_compare(compare, plan_a.method_options.get("fairness"))
    for plan in (plan_a, plan_b):
        if plan.modal is None and Path(plan.data_path).is_dir():
            raise InvalidConfigError(
                "audit compare compares the two models row by row, so it needs each audit's rows in memory, "
                f"but [data] path {plan.data_path!r} is a folder. "
                f"{FOLDER_STREAMED} Point [data] path at one CSV or Parquet file (the folder's rows written as "
                "one file), or audit each config on its own with audit run.")
        if plan.stream:
            raise InvalidConfigError(
                "audit compare compares the two models row by row, so it reads each audit's rows into memory, "
                f"but {plan.config_path or 'a config'} sets [data] stream = true (read in batches, keeping only "
                "counts). Remove stream = true to compare the two models, or audit each config on its own "
                "with audit run.")
    plan_b = dataclasses.replace(plan_b, seed=plan_a.seed)
    inputs = [load_inputs(p, trust_code=trust_code, untrusted_config=untrusted_config) for p in (plan_a, plan_b)]
    where = tuple(str(p.config_path or role) for p, role in zip((plan_a, plan_b), ROLES))
    row_hash, features = check_same_rows(inputs[0].data, inputs[1].data, where)  # type: ignore[arg-type]
    if gate:  # a malformed gate is a usage error before any work
        from audit.methods.fairness import FairnessConfig

        gate_rules(gate, inputs[0].data,
                   FairnessConfig.from_dict(plan_a.method_options.get("fairness") or {}, method="fairness"))
    reports = [run_audit(p, trust_code=trust_code, untrusted_config=untrusted_config,
                         progress=None if progress is None else _labelled_progress(progress, role),
                         inputs=i, on_plan=None if on_plan is None else _labelled(on_plan, role))
               for p, i, role in zip((plan_a, plan_b), inputs, ROLES)]
    preds = [i.model.predictions(i.data) for i in inputs]
    files = [dict(f, role=f"{role} {f['role']}") for role, i in zip(ROLES, inputs) for f in i.files]
    prov = provenance(seed=plan_a.seed, files=files, trust_code=trust_code, untrusted_config=untrusted_config)
    return compare_runs(reports, preds, inputs[0].data, options=options, gate=gate,
                        fairness_options=plan_a.method_options.get("fairness"), seed=plan_a.seed,
                        name=name or f"{plan_a.name}-vs-{plan_b.name}", row_hash=row_hash,
                        features=features, provenance=prov)


@dataclass(frozen=True)
class _LabelledPlan:
    """A model's run plan as printed by ``audit compare``: every line names its role."""

    role: str
    plan: Any

    def lines(self) -> list[str]:
        return [f"{self.role}: {line}" for line in self.plan.lines()]


def _labelled(on_plan: Any, role: str) -> Any:
    return lambda run_plan: on_plan(_LabelledPlan(role, run_plan))


def _labelled_progress(progress: Any, role: str) -> Any:
    """A progress factory whose methods' names and titles start with the model's role, so that
    the two audits' progress lines tell which model they are about."""
    return lambda name, title: progress(f"{role}: {name}", f"{role}: {title}")


def compare_models(champion: Any, challenger: Any, data: Any, *, target: str, sensitive: Sequence[str] = (),
                   features: Sequence[str] | None = None, positive_label: Any = None,
                   threshold: float = 0.5, raw_input: bool = False, methods: Sequence[str] | None = None,
                   method_options: dict[str, dict[str, Any]] | None = None,
                   compare: Mapping[str, Any] | None = None, seed: int = 0,
                   name: str = "compare") -> ComparisonResult:
    """Compare two in-memory binary classifiers on one data frame: the Python twin of
    ``audit compare``.

    Parameters
    ----------
    champion, challenger : torch.nn.Module, scikit-learn estimator, callable or ModelAdapter
        The model in production and the candidate; both receive the same encoded rows (or the
        raw frame with ``raw_input=True``).
    data : pandas.DataFrame
        The rows both models are audited and compared on.
    methods : the methods each model's audit runs (default: every method, as ``audit_model``); the
        paired statistics need only the predictions, the importance comparison needs attribution
        methods (shap, lime, saliency, connection_weights).
    compare : the ``[compare]`` table as a dict (options and ``"gate"``).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> df = pd.DataFrame({"x": rng.normal(size=400), "g": ["a", "b"] * 200})
    >>> df["y"] = (df.x + rng.normal(size=400) > 0).astype(int)
    >>> f = lambda X: 1 / (1 + np.exp(-2 * X[:, 0]))
    >>> r = compare_models(f, f, df, target="y", sensitive=["g"], methods=["performance"],
    ...                    compare={"n_bootstrap": 200, "n_permutations": 99})
    >>> r.performance["accuracy"].change.value, r.decisions.changed
    (0.0, 0)
    """
    from audit.report.model import provenance
    from audit.runner import memory_inputs, run_audit

    options, gate = parse_compare(compare or {}, (method_options or {}).get("fairness"))
    runs = [memory_inputs(m, data, target=target, sensitive=sensitive, features=features,
                          positive_label=positive_label, threshold=threshold, raw_input=raw_input,
                          methods=methods,
                          method_options=method_options, seed=seed, name=f"{name}-{role}")
            for m, role in zip((champion, challenger), ROLES)]
    row_hash, shared = check_same_rows(runs[0][1].data, runs[1][1].data, ROLES)  # type: ignore[arg-type]
    reports = [run_audit(plan, inputs=inputs) for plan, inputs in runs]
    preds = [inputs.model.predictions(inputs.data) for _, inputs in runs]
    return compare_runs(reports, preds, runs[0][1].data, options=options, gate=gate,
                        fairness_options=(method_options or {}).get("fairness"), seed=seed, name=name,
                        row_hash=row_hash, features=shared,
                        provenance=provenance(seed=seed, files=[], command=["audit.compare_models"]))


__all__ = ["COMPARE_SCHEMA", "ComparisonResult", "check_same_rows", "compare_models",
           "compare_runs", "load_pair", "rows_digest", "run_comparison"]
