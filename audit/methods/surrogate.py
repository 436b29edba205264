"""Global surrogate: a shallow decision tree that imitates the model, with its fidelity.

The tree is fitted to the *model's predictions* (not the true outcome) and judged on rows it
never saw: agreement with the model's predicted class for classifiers, R² against the model's
output for regression. Three disjoint sets of rows play three parts:

- *fitting rows* grow a tree of each depth in the sweep;
- *validation rows* choose the depth: the shallowest whose validation fidelity is within
  ``tolerance`` of the best;
- *held-out rows* give the reported fidelity of the chosen tree (and of every depth, for the
  sweep figure); they are never used to fit a tree or to choose its depth.

With training data (``[data] train_path``) the fitting and validation rows are training rows and
the fidelity is measured on the audited rows; otherwise the audited rows are split three ways
(seeded). Rules are written in raw feature names and units. Images and sequences are described
through ``AuditData.tabular_view()``: the tree splits on the mean raw intensity of image patches,
or on each lag of each sequence feature.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from audit.core.adapter import ModelAdapter
from audit.core.dataset import AuditData, CategoricalFeature, NumericFeature
from audit.core.method import (AuditMethod, Constraint, Finding, Interval, MethodConfig, MethodResult,
                               OptionError, RunContext)
from audit.errors import InvalidConfigError


@dataclass(frozen=True)
class SurrogateConfig(MethodConfig):
    """Options of the surrogate tree.

    depths : depths tried in the sweep.
    max_depth : fix the depth instead of choosing it from the sweep.
    test_fraction : share of the audited rows held out to measure fidelity (0.05 to 0.8; without
        training data; with it every audited row is held out).
    validation_fraction : share of the remaining fitting pool (training rows, or audited rows not
        held out) that chooses the depth.
    tolerance : fidelity a shallower tree may give up against the best.
    min_leaf_fraction : smallest leaf as a share of the fitting rows.
    max_rows : rows sampled from each source (a seeded sample; at least 20).
    """

    depths: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8)
    max_depth: int | None = None
    test_fraction: float = 0.3
    validation_fraction: float = 0.25
    tolerance: float = 0.01
    min_leaf_fraction: float = 0.005
    max_rows: int = 200_000

    bounds: ClassVar[Mapping[str, Constraint]] = {
        "test_fraction": Interval(0.05, 0.8, "held-out rows fidelity is measured on"),
        "validation_fraction": Interval(0.05, 0.8, "rows the depth is chosen on"),
        "tolerance": Interval(0, 1, closed="left"),
        "min_leaf_fraction": Interval(0, 0.5, closed="left"),
        "max_rows": Interval(20, 10_000_000, "data rows sampled from each source"),
    }

    def validate(self) -> None:
        if not self.depths:
            raise OptionError("depths", "a non-empty list of depths", [])


@dataclass(frozen=True)
class Rule:
    """One leaf as IF/THEN: the conditions on the path, the prediction and its support."""

    conditions: tuple[str, ...]
    prediction: str
    rows: int
    share: float
    purity: float  # share of the leaf's training rows where the model agrees (classifier) / R² n/a


@dataclass(frozen=True)
class SurrogateResult(MethodResult):
    fidelity_metric: str                 # "agreement" or "r2"
    depths: tuple[int, ...]
    train_fidelity: tuple[float, ...]     # on the fitting rows
    validation_fidelity: tuple[float, ...]  # on the validation rows (these choose the depth)
    test_fidelity: tuple[float, ...]      # on the held-out rows (never used to fit or choose)
    chosen_depth: int
    fidelity: float                      # held-out fidelity at the chosen depth
    n_leaves: int
    n_train: int                         # fitting rows
    n_validation: int                    # validation rows
    n_test: int                          # held-out rows
    fit_source: str                      # where the fitting and validation rows come from
    test_source: str                     # where the held-out rows come from
    rules: tuple[Rule, ...]
    feature_importance: dict[str, float]  # impurity decrease by raw feature
    sampled: bool
    _tree: Any = None                     # the fitted tree, for the figure (not serialised)
    # row indices of each part (fit/validation index fit_source's rows, test the audited rows)
    _rows: Any = None


class Surrogate(AuditMethod[SurrogateConfig, SurrogateResult]):
    name = "surrogate"
    title = "Global surrogate tree"
    requires = frozenset({"predictions"})
    # Images and sequences are fitted on AuditData.tabular_view(): patch means / lag features.
    modalities = frozenset({"tabular", "image", "sequence"})
    Config = SurrogateConfig
    uses_torch = False  # a scikit-learn tree on the model's predictions

    def skip_reason(self, model: ModelAdapter, data: AuditData, config: SurrogateConfig) -> str | None:
        if not data.feature_names:
            return "the data has no feature columns to build the tree from"
        return super().skip_reason(model, data, config)

    def run(self, model: ModelAdapter, data: AuditData, config: SurrogateConfig, ctx: RunContext) -> SurrogateResult:
        from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

        labels_of = (lambda d: model.predictions(d).labels if d.task != "regression"
                     else model.predictions(d).labels.astype(float))
        target = labels_of(data)
        view = data.tabular_view()  # named features for the tree; predictions came from the input
        n = view.n_rows
        sampled = n > config.max_rows
        rows = np.sort(ctx.rng.choice(n, config.max_rows, replace=False)) if sampled else np.arange(n)
        perm = ctx.rng.permutation(rows)
        X = view.X.reshape(n, -1)
        # precomputed predictions cover only the audited rows: the training rows cannot be scored
        if ctx.train is not None and "predict" in model.capabilities:
            train = ctx.train.tabular_view()
            Xf, target_f = train.X.reshape(train.n_rows, -1), labels_of(ctx.train)
            pool = np.arange(train.n_rows)
            if train.n_rows > config.max_rows:
                sampled = True
                pool = np.sort(ctx.rng.choice(train.n_rows, config.max_rows, replace=False))
            pool = ctx.rng.permutation(pool)
            test = perm
            fit_source = "the training data (train_path)"
            test_source = "every audited row" + (" (a random sample)" if len(rows) < n else "")
        else:
            Xf, target_f = X, target
            n_test = max(1, int(round(config.test_fraction * len(perm))))
            test, pool = perm[:n_test], perm[n_test:]
            fit_source = "the audited rows not held out"
            test_source = f"{100 * config.test_fraction:.0f}% of the audited rows, held out"
        n_val = max(1, int(round(config.validation_fraction * len(pool))))
        val, fit = pool[:n_val], pool[n_val:]
        if len(fit) < 2:
            raise InvalidConfigError(
                f"The surrogate needs at least 2 fitting rows besides the validation and held-out rows; "
                f"{fit_source} give {len(fit)}. Audit more rows.")
        classify = data.task != "regression"
        depths = (config.max_depth,) if config.max_depth else tuple(sorted(set(config.depths)))
        min_leaf = max(1, int(config.min_leaf_fraction * len(fit)))
        seed = int(ctx.rng.integers(2**31 - 1))

        def make(depth: int) -> Any:
            cls = DecisionTreeClassifier if classify else DecisionTreeRegressor
            return cls(max_depth=depth, min_samples_leaf=min_leaf, random_state=seed)

        def fidelity(tree: Any, Xs: np.ndarray, ts: np.ndarray) -> float:
            pred = tree.predict(Xs)
            if classify:
                return float(np.mean(pred == ts))
            resid = np.sum((ts - pred) ** 2)
            total = np.sum((ts - ts.mean()) ** 2)
            return float(1 - resid / total) if total > 0 else float(resid == 0)

        trees, train_fid, val_fid, test_fid = [], [], [], []
        for i, depth in enumerate(depths):
            tree = make(depth).fit(Xf[fit], target_f[fit])
            trees.append(tree)
            train_fid.append(fidelity(tree, Xf[fit], target_f[fit]))
            val_fid.append(fidelity(tree, Xf[val], target_f[val]))
            test_fid.append(fidelity(tree, X[test], target[test]))
            ctx.progress(i + 1, len(depths))
        best = max(val_fid)
        pick = next(i for i, f in enumerate(val_fid) if f >= best - config.tolerance)
        tree = trees[pick]
        labels = [str(c) for c in view.classes] if (classify and view.classes) else None
        rules = extract_rules(tree, view, labels, Xf[fit], target_f[fit], classify)
        importance = view.encoding.aggregate(tree.feature_importances_[None, :], "sum")[0]
        return SurrogateResult(
            fidelity_metric="agreement" if classify else "r2", depths=depths,
            train_fidelity=tuple(train_fid), validation_fidelity=tuple(val_fid),
            test_fidelity=tuple(test_fid),
            chosen_depth=int(depths[pick]), fidelity=test_fid[pick], n_leaves=int(tree.get_n_leaves()),
            n_train=len(fit), n_validation=len(val), n_test=len(test), fit_source=fit_source,
            test_source=test_source, rules=rules,
            feature_importance={f: float(v) for f, v in zip(view.feature_names, importance, strict=True)},
            sampled=sampled, _tree=tree,
            _rows={"fit": np.sort(fit), "validation": np.sort(val), "test": np.sort(test)})

    def plan(self, model: ModelAdapter, data: AuditData, config: SurrogateConfig, ctx: RunContext) -> Any:
        """One pass of the model over the rows, then small trees fitted to its predictions."""
        from audit.core.cost import Plan

        return Plan(f"predictions on {data.n_rows:,} rows, {len(config.depths)} trees",
                    model_rows=data.n_rows, model_calls=1)

    def findings(self, result: SurrogateResult, config: SurrogateConfig) -> list[Finding]:
        what = "agrees with the model on" if result.fidelity_metric == "agreement" else "explains R² ="
        amount = (f"{100 * result.fidelity:.1f}% of held-out rows" if result.fidelity_metric == "agreement"
                  else f"{result.fidelity:.3f} of the model's output on held-out rows")
        level = "info" if result.fidelity >= 0.9 else "warning"
        tail = "" if level == "info" else (" — too low for its rules to be read as a faithful "
                                           "summary of the model")
        top = sorted(result.feature_importance.items(), key=lambda kv: -kv[1])[:3]
        names = ", ".join(k for k, v in top if v > 0)
        return [Finding(level, f"A depth-{result.chosen_depth} surrogate tree {what} {amount}{tail}. "
                               f"Its splits rely most on: {names or 'no feature'}.")]

    def figures(self, result: SurrogateResult, data: AuditData) -> dict[str, Any]:
        from audit.core.plots import NEGATIVE, POSITIVE, new_figure

        layout = data.layout
        data = data.tabular_view()

        fig, ax = new_figure(6.5, 2.8)
        ax.plot(result.depths, result.train_fidelity, "o-", color=NEGATIVE, label="fitting rows")
        ax.plot(result.depths, result.validation_fidelity, "^--", color="#777777", label="validation rows (choose the depth)")
        ax.plot(result.depths, result.test_fidelity, "s-", color=POSITIVE, label="held-out rows")
        ax.axvline(result.chosen_depth, color="#555555", ls=":", lw=1)
        ax.set_xlabel("tree depth")
        ax.set_ylabel("fidelity (agreement)" if result.fidelity_metric == "agreement" else "fidelity (R²)")
        ax.set_title("Surrogate fidelity by depth (dotted line: chosen depth)")
        ax.legend(frameon=False)
        figs = {"fidelity": fig}
        if result._tree is not None and result.n_leaves <= 32:
            figs["tree"] = _draw_tree(result, data)
        if layout.elementwise:  # images / sequences: where the splits fall, on the input grid
            figs["importance_map"] = _importance_map(result, layout)
        return figs


def _importance_map(result: SurrogateResult, layout: Any) -> Any:
    """The tree's impurity-decrease shares laid out on the pixel grid (images) or as
    feature x lag (sequences), via ``layout.view_grid``."""
    from audit.core.plots import new_figure

    grid, rows, cols = layout.view_grid(list(result.feature_importance.values()))
    square = layout.style.square
    fig, ax = new_figure(3.6 if square else 6.5, 3.2 if square else 0.6 + 0.35 * len(rows))
    im = ax.imshow(grid, cmap="Greys", vmin=0.0, vmax=max(float(grid.max()), 1e-12),
                   aspect="equal" if square else "auto")
    ax.set_xticks(range(len(cols)), cols, fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    ax.set_xlabel(layout.style.axis_labels[0])
    ax.set_ylabel(layout.style.axis_labels[1])
    bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("share of impurity decrease", fontsize=7)
    ax.set_title("Where the surrogate tree splits", fontsize=9)
    return fig


def _split_text(data: AuditData, column: int, threshold: float) -> tuple[str, str]:
    """Readable (left, right) conditions for ``x[column] <= threshold`` in raw units."""
    enc = data.encoding
    feat = enc.features[int(enc.column_feature[column])]
    col_name = enc.columns[column]
    if isinstance(feat, CategoricalFeature) and feat.encoding == "onehot":
        level = col_name[len(feat.name) + 1:]
        return f"{feat.name} ≠ {level}", f"{feat.name} = {level}"
    if isinstance(feat, CategoricalFeature):
        cut = int(np.floor(threshold * feat.scale + feat.center))
        left = feat.levels[: cut + 1]
        right = feat.levels[cut + 1:]
        return f"{feat.name} in {{{', '.join(left)}}}", f"{feat.name} in {{{', '.join(right)}}}"
    raw = float(feat.to_raw(threshold)) if isinstance(feat, NumericFeature) else threshold
    if feat.integer:
        lo = int(np.floor(raw))
        return f"{feat.name} ≤ {lo}", f"{feat.name} ≥ {lo + 1}"
    return f"{feat.name} ≤ {raw:.4g}", f"{feat.name} > {raw:.4g}"


def extract_rules(tree: Any, data: AuditData, labels: list[str] | None, X: np.ndarray,
                  target: np.ndarray, classify: bool) -> tuple[Rule, ...]:
    """Every leaf as an IF/THEN rule in raw feature names, largest leaves first."""
    t = tree.tree_
    leaf_of = tree.apply(X)
    rules: list[Rule] = []

    def walk(node: int, conds: tuple[str, ...]) -> None:
        if t.children_left[node] == -1:
            members = leaf_of == node
            count = int(members.sum())
            if classify:
                k = int(np.argmax(t.value[node][0]))
                cls = tree.classes_[k]
                pred = labels[int(cls)] if labels is not None else str(cls)
                purity = float(np.mean(target[members] == cls)) if count else float("nan")
                rules.append(Rule(conds, pred, count, count / len(X), purity))
            else:
                rules.append(Rule(conds, f"{float(t.value[node][0][0]):.4g}", count, count / len(X),
                                  float("nan")))
            return
        left, right = _split_text(data, int(t.feature[node]), float(t.threshold[node]))
        walk(int(t.children_left[node]), (*conds, left))
        walk(int(t.children_right[node]), (*conds, right))

    walk(0, ())
    return tuple(sorted(rules, key=lambda r: -r.rows))


def _draw_tree(result: SurrogateResult, data: AuditData) -> Any:
    """The tree as a figure: each box shows the split in raw units, leaves the prediction."""
    from audit.core.plots import pyplot

    plt = pyplot()
    tree = result._tree
    t = tree.tree_
    depth = tree.get_depth()
    n_leaves = result.n_leaves
    width = min(11.0, max(6.5, 1.25 * n_leaves))
    fig, ax = plt.subplots(figsize=(width, 1.0 + 1.1 * (depth + 1)))
    ax.set_axis_off()
    positions: dict[int, tuple[float, float]] = {}
    counter = [0]

    def place(node: int, level: int) -> float:
        if t.children_left[node] == -1:
            x = counter[0] + 0.5
            counter[0] += 1
        else:
            x = (place(int(t.children_left[node]), level + 1)
                 + place(int(t.children_right[node]), level + 1)) / 2
        positions[node] = (x, -level)
        return x

    place(0, 0)
    labels = [str(c) for c in data.classes] if data.classes else None
    for node, (x, y) in positions.items():
        if t.children_left[node] != -1:
            for child in (int(t.children_left[node]), int(t.children_right[node])):
                cx, cy = positions[child]
                ax.plot([x, cx], [y - 0.15, cy + 0.15], color="#888888", lw=0.8)
            left, _ = _split_text(data, int(t.feature[node]), float(t.threshold[node]))
            text = f"{left}?\n(yes ← · → no)"
            face = "#F2F2F2"
        else:
            if tree.__class__.__name__.endswith("Classifier"):
                k = int(np.argmax(t.value[node][0]))
                cls = tree.classes_[k]
                text = labels[int(cls)] if labels else str(cls)
            else:
                text = f"{float(t.value[node][0][0]):.3g}"
            text += f"\n{int(t.n_node_samples[node]):,} rows"
            face = "#DCEBF7"
        ax.text(x, y, text, ha="center", va="center", fontsize=6.5,
                bbox={"boxstyle": "round,pad=0.3", "fc": face, "ec": "#777777", "lw": 0.6})
    ax.set_xlim(0, n_leaves)
    ax.set_ylim(-depth - 0.5, 0.5)
    ax.set_title(f"Surrogate tree (depth {result.chosen_depth}); left branch = condition true", fontsize=8)
    return fig
