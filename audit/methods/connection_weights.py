"""Connection-weight importance (Olden) and Garson's algorithm, tested with the Olden & Jackson
(2002) randomization test on the batched trainer.

Statistics
----------
- Olden's importance of input ``i`` for output ``k`` is ``CW[i, k] = (W1 W2 ... WL)[i, k]`` — the
  product of the weight matrices (input-major, biases excluded), summed over every path. The
  per-connection contributions ``c[i, j, k] = W1[i, j] (W2 ... WL)[j, k]`` route it through each
  first-layer hidden unit and sum to ``CW``. Signs are kept.
- Garson's relative importance (Goh's form) for one hidden layer and one output:
  ``P_ij = |w_ij| |v_j|``, ``Q_ij = P_ij / sum_r P_rj``, ``RI_i = sum_j Q_ij / sum_ij Q_ij``.
- Inputs on a common scale: importances are multiplied by each input's standard deviation in the
  fitting rows, which equals computing them on standardized inputs (a network on
  ``z_i = x_i / s_i`` has first-layer weights ``s_i w_ij``).
- Softmax outputs: per-class values are not identifiable, so class-centred values
  ``CW[:, k] - mean_k CW[:, k]`` are reported and tested (for two softmax logits: the contrast
  positive minus negative).
- One-hot groups: every encoded column is tested, and each raw feature gets the group statistic
  ``max |CW|`` over its columns (and classes), tested on the upper tail with the same networks.

The randomization test (Olden & Jackson 2002)
---------------------------------------------
1. Fit ``M`` networks from different random starts with the training recipe. By default
   (``selection = "first"``) θ₀ is the first restart's initial weights, chosen without looking at
   the outcome; the other restarts only measure how stable the importances are.
2. ``B`` times: permute the response among the fitting rows and retrain from θ₀ with the same
   deterministic mini-batch schedule (one batched tensor program; the observed network is slot 0).
   With ``selection = "per_network"`` the observed network and every null network each train all
   ``M`` restarts on their own outcome and keep the one with the lowest validation loss
   (``M`` times the cost).

Why θ₀ must not be picked with the outcome alone: Olden & Jackson keep the restart with the best
validation loss on the real ``y``, which the null networks never get, so the observed network is
selected and the null ones are not. That made the two-sided test conservative (size 0.044 ± 0.004
and 0.037 ± 0.005 at 0.05 with 10 restarts in ``benchmarks/permutation_size.py``, the more the
longer the networks train; 0.050 with the first restart). With either selection above the observed
and null networks go through the same procedure and the test is exact.
3. ``p = (1 + #{null at least as extreme}) / (B + 1)``: two-sided from the empirical tails by
   default, one-sided in the observed direction on request; upper tail for Garson and max |CW|.
4. Benjamini–Hochberg and Westfall–Young max-T over the inputs, from the same null networks.

Permuting the response tests "y is unrelated to every input". The per-input null (permute only
the columns of one raw feature, keep y, retrain from θ₀) asks whether that input matters beyond
the others; it is offered for the top few features because it costs ``B`` networks per feature —
kept cheap because only those columns differ, so the shared wide product gets a low-rank
correction (see :class:`audit.train.batched.ColumnShuffle`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

from audit.core.adapter import ModelAdapter
from audit.core.dataset import AuditData
from audit.core.method import (AuditMethod, Constraint, Finding, Interval, MethodConfig, MethodResult,
                               OptionError, RunContext, check_permutations)
from audit.core.results import Attributions, estimates
from audit.errors import CapabilityError, InvalidConfigError
from audit.stats.multiplicity import benjamini_hochberg, maxt_stepdown
from audit.stats.permutation import null_summary, permutation_pvalues, reachability

_SKLEARN_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}


# --------------------------------------------------------------------------------------------
# Config and result
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectionWeightsConfig(MethodConfig):
    """Options of the connection-weight randomization test.

    n_permutations : null networks B (an integer, at least 19; 999 gives p down to 0.001);
    n_restarts : random starts M (default: the recipe's ``n_restarts``, else 10);
    alternative : "two-sided" (default; from the empirical tails) or "observed" (one-sided in the
    observed direction, as in Olden & Jackson 2002);
    selection : how θ₀ is chosen: "first" (default; the first restart, without looking at the
    outcome) or "per_network" (the observed and every null network keep their best of the M
    restarts by validation loss on their own outcome; M times the cost);
    alpha : level for the significance marks (after Benjamini–Hochberg);
    scale : "sd" (importances on standardized inputs) or "none" (raw weights products);
    per_input : number of top raw features given the per-input null (0 turns it off);
    per_input_permutations : null networks per feature for the per-input null;
    recipe : training-recipe keys overriding [model] training / training.json;
    max_training_rows : use at most this many training rows (a random sample), None for all;
    device : "cpu", "cuda" or "auto".
    n_workers : CPU threads (default one per core).
    """

    n_permutations: int = 999
    n_restarts: int | None = None
    alternative: Literal["two-sided", "observed"] = "two-sided"
    selection: Literal["first", "per_network"] = "first"
    alpha: float = 0.05
    scale: Literal["sd", "none"] = "sd"
    per_input: int = 3
    per_input_permutations: int = 99
    recipe: dict = field(default_factory=dict)
    max_training_rows: int | None = None
    device: str = "cpu"
    n_workers: int | None = None

    bounds: ClassVar[Mapping[str, Constraint]] = {
        "max_training_rows": Interval(50, 10_000_000, "training rows the networks are fitted on"),
    }
    renamed: ClassVar[Mapping[str, str]] = {"max_rows": "max_training_rows"}

    def validate(self) -> None:
        check_permutations("n_permutations", self.n_permutations, alpha=self.alpha,
                           alternative="two-sided" if self.alternative == "two-sided" else "greater")
        if self.per_input:
            check_permutations("per_input_permutations", self.per_input_permutations, alpha=self.alpha)
        if self.device not in ("cpu", "cuda", "auto") and not self.device.startswith("cuda:"):
            raise OptionError("device", 'one of "cpu", "cuda", "auto" or "cuda:N"', self.device)


@dataclass(frozen=True)
class InputTest:
    """One encoded input (and output) of the randomization test."""

    name: str
    feature: str
    output: str
    importance: float            # Olden's CW of the observed (refitted) network, scaled
    submitted: float             # the same for the submitted model's weights
    null_mean: float
    null_low: float              # 2.5% and 97.5% quantiles of the null
    null_high: float
    p_upper: float
    p_lower: float
    p_two_sided: float
    p: float                     # the configured alternative
    p_bh: float
    p_maxt: float
    significant: bool            # p_bh <= alpha
    restart_mean: float
    restart_sd: float
    garson: float | None = None
    garson_p: float | None = None


@dataclass(frozen=True)
class FeatureTest:
    """A raw feature: the group statistic max |CW| over its encoded columns (and classes)."""

    feature: str
    n_columns: int
    statistic: float
    p: float                     # upper tail, response-permutation null
    p_bh: float
    p_maxt: float
    significant: bool
    per_input_p: float | None = None       # per-input null (only this feature permuted)
    per_input_null_mean: float | None = None
    per_input_n: int | None = None


@dataclass(frozen=True)
class Connection:
    """An input -> first-layer hidden unit -> output contribution c_ijk and its test."""

    input: str
    hidden: int
    output: str
    contribution: float
    p: float
    p_bh: float


@dataclass(frozen=True)
class ConnectionWeightsResult(MethodResult):
    model_kind: str                          # "torch" or "sklearn"
    architecture: tuple[int, ...]
    activations: tuple[str, ...]
    output_mode: str                         # "logit" | "contrast" | "centred" | "value"
    outputs: tuple[str, ...]
    scale: str
    recipe: dict[str, Any]
    recipe_source: str
    recipe_defaults: tuple[str, ...]
    train_source: str
    n_fit: int
    n_validation: int
    n_permutations: int
    n_null_used: int
    diverged: tuple[int, ...]                # null networks excluded (non-finite)
    alternative: str
    alpha: float
    inputs: tuple[InputTest, ...]
    input_rank: tuple[int, ...]              # indices of ``inputs`` by |importance|, largest first
    features: tuple[FeatureTest, ...]
    n_significant_raw: int
    n_significant_bh: int
    n_significant_maxt: int
    n_features_significant: int
    per_input_features: tuple[str, ...]
    per_input_permutations: int | None
    garson_available: bool
    garson_note: str
    n_restarts: int
    selection: str                           # "first" | "per_network"
    selected_restart: int                    # the observed network's restart
    null_restarts: tuple[int, ...] | None    # per_network: how many null networks kept each restart
    reachability: tuple[str, ...]            # why some family cannot reach alpha with this B
    restart_validation_loss: tuple[float, ...]
    kendall_w: float | None
    sign_agreement: float | None             # share of inputs whose CW sign agrees across restarts
    refit_metrics: dict[str, dict[str, float | None]]   # metric -> {"submitted", "refit"}
    importance_spearman: float | None        # submitted vs refit importances
    connections_tested: int
    connections_significant: int
    top_connections: tuple[Connection, ...]
    skip_connections: str
    device: str
    notes: tuple[str, ...]
    _seconds: Any = None                     # timings (not serialised: results stay reproducible)
    _null: Any = None                        # [B, m] null importances (for the histograms)
    _conn: Any = None                        # (c_obs [D, H, O], p_bh [D, H, O])
    _weights: Any = None                     # the observed network's weights (diagram)

    def attributions(self) -> tuple[Attributions, ...]:
        """Olden importance per raw feature: the largest |CW| of the *submitted* model over the
        feature's encoded columns and outputs (the group statistic this method tests); the
        tested statistic when a feature has no finite submitted value. A global quantity: no
        per-row values, and nothing to recompute on another model (it reads the weights)."""
        names = [t.feature for t in self.features]
        best: dict[str, float] = {}
        for t in self.inputs:
            if t.submitted is not None and np.isfinite(t.submitted):
                best[t.feature] = max(best.get(t.feature, 0.0), abs(float(t.submitted)))
        if not all(f in best for f in names):
            best = {t.feature: abs(float(t.statistic)) for t in self.features}
        return (Attributions(
            key="connection_weights", label="Olden connection weights", short="Olden",
            origin=f"connection_weights: Olden's |CW| of the submitted model ({self.scale})",
            features=tuple(names), grouping="feature", explains="output",
            explained=", ".join(self.outputs), importance=estimates(names, [best[f] for f in names]),
            signed=False),)


# --------------------------------------------------------------------------------------------
# Network extraction
# --------------------------------------------------------------------------------------------


@dataclass
class _Network:
    kind: str
    spec: Any                     # MLPSpec
    weights: Any                  # Weights (one network)
    loss: str
    output_mode: str
    outputs: tuple[str, ...]
    derived_recipe: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    # (a, d): the network's input is a * x + d (a scikit-learn scaler before the MLP); None: x
    input_affine: tuple[np.ndarray, np.ndarray] | None = None


def _torch_chain(module: Any) -> tuple[list[Any], list[tuple[str, float]], str | None] | str:
    """Linear layers, hidden activations and the trailing output activation of a chain, or a
    reason why the module is not a plain chain."""
    import torch.nn as nn

    acts = {nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.GELU: "gelu", nn.ELU: "elu",
            nn.LeakyReLU: "leaky_relu", nn.Softplus: "softplus", nn.SiLU: "silu", nn.Identity: "identity"}
    seq: list[tuple[str, Any]] = []
    for sub in module.modules():
        if sub is module and not isinstance(sub, nn.Linear):
            continue
        if isinstance(sub, (nn.Sequential, nn.ModuleList)):
            continue
        if isinstance(sub, nn.Linear):
            seq.append(("linear", sub))
        elif isinstance(sub, (nn.Dropout, nn.Flatten)) or type(sub) is nn.Identity:
            continue
        elif type(sub) in acts:
            if isinstance(sub, nn.GELU) and getattr(sub, "approximate", "none") != "none":
                return "its GELU uses the tanh approximation, which the batched trainer does not implement"
            slope = float(getattr(sub, "negative_slope", getattr(sub, "alpha", 1.0)))
            if isinstance(sub, nn.Softplus) and (sub.beta != 1 or sub.threshold != 20):
                return "its Softplus has non-default beta/threshold"
            seq.append(("act", (acts[type(sub)], slope)))
        elif isinstance(sub, (nn.Softmax, nn.LogSoftmax)):
            seq.append(("out", "softmax" if isinstance(sub, nn.Softmax) else "log_softmax"))
        else:
            return (f"it contains a {type(sub).__name__} layer; connection weights are defined for "
                    "fully connected chains of Linear layers and elementwise activations")
    linears = [m for k, m in seq if k == "linear"]
    if not linears:
        return "it has no Linear layers"
    hidden: list[tuple[str, float]] = []
    trailing: str | None = None
    seen = 0
    pending: tuple[str, float] | None = None
    for k, v in seq:
        if k == "linear":
            if seen:
                hidden.append(pending or ("identity", 1.0))
            pending = None
            seen += 1
        elif k == "act":
            if pending is not None:
                return "two activations follow one Linear layer"
            pending = v
        else:
            if seen != len(linears):
                return "a softmax sits between Linear layers"
            trailing = v
    if pending is not None:
        if pending[0] != "sigmoid":
            return f"its output passes through {pending[0]}, which is not a link function"
        trailing = "sigmoid"
    for a, b in zip(linears, linears[1:]):
        if a.out_features != b.in_features:
            return "its Linear layers do not form a chain"
    return linears, hidden, trailing


_AFFINE_SCALERS = ("StandardScaler", "MinMaxScaler", "MaxAbsScaler", "RobustScaler")


def _scaler_affine(step: Any, name: str) -> tuple[np.ndarray, np.ndarray] | str:
    """(a, d) with ``step.transform(x) == a * x + d`` for a fitted per-feature scaler, or why the
    step is not one."""
    cls = type(step).__name__
    module = type(step).__module__
    if not module.startswith("sklearn.preprocessing") or cls not in _AFFINE_SCALERS:
        return (f"its pipeline step {name!r} is a {cls}, not a per-feature affine scaler "
                f"({', '.join(_AFFINE_SCALERS)}), so the MLP's weights do not map to the encoded inputs")
    n = int(step.n_features_in_)
    one, zero = np.ones(n), np.zeros(n)

    def arr(v: Any, default: np.ndarray) -> np.ndarray:
        return default if v is None else np.asarray(v, dtype=np.float64)

    if cls == "StandardScaler":      # (x - mean_) / scale_
        a = 1.0 / arr(getattr(step, "scale_", None), one)
        return a, -arr(getattr(step, "mean_", None), zero) * a
    if cls == "RobustScaler":        # (x - center_) / scale_
        a = 1.0 / arr(getattr(step, "scale_", None), one)
        return a, -arr(getattr(step, "center_", None), zero) * a
    if cls == "MaxAbsScaler":        # x / scale_
        return 1.0 / arr(step.scale_, one), zero
    if getattr(step, "clip", False):  # MinMaxScaler(clip=True) is not affine
        return f"its MinMaxScaler step {name!r} clips to the feature range, which is not an affine map"
    return arr(step.scale_, one), arr(step.min_, zero)   # MinMaxScaler: x * scale_ + min_


def sklearn_mlp(estimator: Any) -> tuple[Any, tuple[np.ndarray, np.ndarray] | None, list[str]] | str | None:
    """A scikit-learn MLP, alone or as the last step of a Pipeline of per-feature scalers.

    Returns ``(mlp, affine, scaler names)`` where the MLP's input is ``a * x + d`` (``affine``,
    the scalers composed; None without any), a reason string when a Pipeline ends in an MLP but
    another step is not a per-feature affine scaler, or None when there is no scikit-learn MLP.
    """
    if estimator is None:
        return None
    if hasattr(estimator, "coefs_"):
        return estimator, None, []
    steps = getattr(estimator, "steps", None)
    if not isinstance(steps, list) or not steps or not hasattr(steps[-1][1], "coefs_"):
        return None
    affine: tuple[np.ndarray, np.ndarray] | None = None
    names = []
    for name, step in steps[:-1]:
        if step is None or step == "passthrough":
            continue
        found = _scaler_affine(step, str(name))
        if isinstance(found, str):
            return found
        a, d = found
        affine = (a, d) if affine is None else (a * affine[0], a * affine[1] + d)
        names.append(type(step).__name__)
    return steps[-1][1], affine, names


def _decode_affine(data: AuditData, pipeline: Any) -> tuple[np.ndarray, np.ndarray] | str:
    """(s, c) with raw column = s * encoded column + c, when every raw feature is numeric without
    a transform (so decoding is affine, one column each), in the pipeline's column order; else
    why not."""
    from audit.core.dataset import NumericFeature

    feats = list(data.encoding.features)
    bad = [f.name for f in feats if not isinstance(f, NumericFeature) or f.transform is not None]
    if bad:
        return (f"its input {', '.join(map(repr, bad[:3]))} is not a plain numeric column (categorical "
                "or log-transformed), so its weights do not map to the encoded inputs")
    names = getattr(pipeline, "feature_names_in_", None)
    if names is not None and [str(n) for n in names] != [f.name for f in feats]:
        return "its columns are not in the encoding's order"
    return (np.array([f.scale for f in feats], dtype=np.float64),
            np.array([f.center for f in feats], dtype=np.float64))


def fold_input_affine(weights: Any, affine: tuple[np.ndarray, np.ndarray]) -> Any:
    """The same network on the unscaled inputs: a first layer on ``a * x + d`` becomes
    ``W1' = diag(a) W1`` and ``b1' = b1 + d W1`` (for a StandardScaler ``W1 / σ`` row-wise and
    ``b1 - (μ/σ) W1``); every later layer is unchanged.

    Examples
    --------
    >>> from audit.train.batched import Weights
    >>> w = Weights([np.array([[[2.0], [1.0]]])], [np.array([[0.5]])])
    >>> f = fold_input_affine(w, (np.array([0.5, 1.0]), np.array([-1.0, 0.0])))
    >>> f.W[0][0, :, 0].tolist(), f.b[0].tolist()
    ([1.0, 1.0], [[-1.5]])
    """
    from audit.train.batched import Weights

    a, d = (np.asarray(v, dtype=np.float64) for v in affine)
    W1 = np.asarray(weights.W[0], dtype=np.float64)
    W = [(W1 * a[None, :, None]).astype(weights.W[0].dtype), *weights.W[1:]]
    b = [(np.asarray(weights.b[0], np.float64) + np.einsum("i,bio->bo", d, W1)).astype(weights.b[0].dtype),
         *weights.b[1:]]
    return Weights(W, b)


def extract_network(model: ModelAdapter, data: AuditData) -> _Network:
    """The model as an :class:`~audit.train.batched.MLPSpec` plus its weights, or raise
    CapabilityError saying why it is not a fully connected network."""
    from audit.train.batched import MLPSpec, Weights

    task = data.task
    found_mlp = sklearn_mlp(getattr(model, "estimator", None))
    if isinstance(found_mlp, str):
        raise CapabilityError(f"{model.description} is not a plain MLP: {found_mlp}")
    if found_mlp is not None:
        estimator, affine, scalers = found_mlp
        cls = type(estimator).__name__
        act = getattr(estimator, "activation", None)
        if act not in _SKLEARN_ACTIVATIONS:
            raise CapabilityError(f"the {cls} uses activation {act!r}, which is not supported")
        if getattr(model, "raw", False):
            # raw_input: the model reads the decoded columns x = s * e + c of the encoded e
            decoded = _decode_affine(data, getattr(model, "estimator", None))
            if isinstance(decoded, str):
                raise CapabilityError(f"the scikit-learn MLP reads the raw columns (raw_input) and {decoded}")
            s_, c_ = decoded
            affine = (s_, c_) if affine is None else (affine[0] * s_, affine[0] * c_ + affine[1])
            scalers = ["raw columns' decoding (encoding scale and center)", *scalers]
        W = [np.asarray(c, dtype=np.float32)[None] for c in estimator.coefs_]
        b = [np.asarray(c, dtype=np.float32)[None] for c in estimator.intercepts_]
        sizes = (W[0].shape[1], *(w.shape[2] for w in W))
        spec = MLPSpec(sizes, tuple(_SKLEARN_ACTIVATIONS[act] for _ in W[:-1]))
        out_act = getattr(estimator, "out_activation_", "identity")
        if out_act == "logistic" and sizes[-1] == 1:
            loss, mode = "bce", "logit"
        elif out_act == "softmax":
            loss, mode = "ce", "centred" if sizes[-1] > 2 else "contrast"
        elif out_act == "identity" and task == "regression":
            loss, mode = "mse", "value"
        else:
            raise CapabilityError(f"the {cls} has output activation {out_act!r} with {sizes[-1]} "
                                  "outputs (multi-label models are not supported)")
        derived = _sklearn_recipe(estimator, data.n_rows)
        net = _Network("sklearn", spec, Weights(W, b), loss, mode, _output_names(data, mode, sizes[-1]),
                       derived, input_affine=affine)
        if affine is not None:
            net.notes.append(
                f"The {' and the '.join(scalers)} {'were' if len(scalers) > 1 else 'was'} folded into "
                "the first layer exactly "
                "(W₁′ = diag(a)·W₁, b₁′ = b₁ + d·W₁ for the scaler's x ↦ a·x + d), so the importances "
                "are on the encoded inputs; the refits train on the scaled inputs, as the pipeline "
                "did, with the scaler as fitted (it does not depend on the outcome).")
        if derived is not None and getattr(estimator, "n_iter_", 0) >= getattr(estimator, "max_iter", np.inf):
            net.notes.append(
                f"The submitted {cls} stopped at max_iter = {estimator.max_iter} without meeting its "
                "tolerance (scikit-learn's ConvergenceWarning at its fit). The refits run the same "
                f"{estimator.n_iter_} epochs with the batched trainer, which has no convergence test: "
                "none of them raises that warning, and none is stopped early.")
        net.notes.append(
            f"The {cls} is refitted with the batched trainer on a recipe translated from its "
            "parameters (solver, learning rate, iterations, batch size; alpha as weight decay "
            "alpha/batch_size on weights only), not by scikit-learn itself: no early stopping or "
            "tolerance-based stop, and PyTorch's initialisation.")
        return net
    if "weights" not in model.capabilities or getattr(model, "module", None) is None:
        raise CapabilityError(
            f"{model.description} is not a fully connected network with readable weights (a torch "
            "chain of Linear layers or a scikit-learn MLP); use the model-agnostic "
            "permutation_significance method for refittable scikit-learn estimators")
    found = _torch_chain(model.module)
    if isinstance(found, str):
        raise CapabilityError(f"{model.description} is not a plain MLP: {found}")
    linears, hidden, trailing = found
    sizes = (linears[0].in_features, *(lin.out_features for lin in linears))
    spec = MLPSpec(sizes, tuple(h[0] for h in hidden), tuple(h[1] for h in hidden))
    W = [lin.weight.detach().cpu().double().numpy().T[None].astype(np.float32) for lin in linears]
    b = [(lin.bias.detach().cpu().numpy()[None].astype(np.float32) if lin.bias is not None
          else np.zeros((1, lin.out_features), np.float32)) for lin in linears]
    weights = Weights(W, b)
    _verify_forward(model, spec, weights, data, trailing)
    O = sizes[-1]
    if task == "regression":
        loss, mode = "mse", "value"
    elif task == "binary" and O == 1:
        loss, mode = "bce", "logit"
    elif O >= 2 and (task == "multiclass" or O == 2):
        loss, mode = "ce", "contrast" if O == 2 else "centred"
    else:
        raise CapabilityError(f"the network has {O} outputs, which does not fit a {task} task")
    net = _Network("torch", spec, weights, loss, mode, _output_names(data, mode, O))
    if any(lin.bias is None for lin in linears):
        net.notes.append("Some Linear layers have no bias; the refit gives them a zero bias that is trained.")
    return net


def _verify_forward(model: ModelAdapter, spec: Any, weights: Any, data: AuditData, trailing: str | None) -> None:
    """Rebuild the network from its Linear layers and check it computes what the model does."""
    import torch

    from audit.train.batched import build_module

    x = torch.from_numpy(np.ascontiguousarray(data.X[: min(64, data.n_rows)], dtype=np.float32))
    module = model.module
    was_training = module.training
    module.eval()
    with torch.no_grad():
        theirs = module(x)
        ours = build_module(spec, weights, 0)(x)
    module.train(was_training)
    if trailing == "sigmoid":
        ours = torch.sigmoid(ours)
    elif trailing == "softmax":
        ours = torch.softmax(ours, 1)
    elif trailing == "log_softmax":
        ours = torch.log_softmax(ours, 1)
    if theirs.shape != ours.shape and theirs.numel() == ours.numel():
        theirs = theirs.reshape(ours.shape)
    if theirs.shape != ours.shape or not torch.allclose(theirs.float(), ours, rtol=1e-4, atol=1e-4):
        raise CapabilityError(
            f"{model.description} does not compute the chain of its Linear layers and activations "
            "in registration order (its forward() does something else), so connection weights "
            "would not describe it")


def _output_names(data: AuditData, mode: str, O: int) -> tuple[str, ...]:
    classes = list(data.classes) if data.classes else None
    if mode == "value":
        return (str(data.spec.target or "output"),)
    if mode == "logit" or mode == "contrast":
        pos = classes[1] if classes and len(classes) == 2 else "positive class"
        return (f"{pos}" if mode == "logit" else f"{pos} (logit contrast)",)
    return tuple(str(c) for c in (classes or [f"class {k}" for k in range(O)]))


def _sklearn_recipe(est: Any, n_rows: int) -> dict[str, Any] | None:
    solver = getattr(est, "solver", "adam")
    if solver not in ("adam", "sgd"):
        return None
    bs = est.batch_size
    bs = min(200, n_rows) if bs == "auto" else int(bs)
    return {"optimizer": solver, "lr": float(est.learning_rate_init),
            "betas": [float(est.beta_1), float(est.beta_2)], "eps": float(est.epsilon),
            "momentum": float(est.momentum) if solver == "sgd" else 0.0,
            "epochs": int(getattr(est, "n_iter_", est.max_iter)), "batch_size": bs,
            "weight_decay": float(est.alpha) / bs, "decay_biases": False,
            "seed": int(est.random_state) if isinstance(est.random_state, int) else 0}


def resolve_recipe(model: ModelAdapter, net: _Network, config: ConnectionWeightsConfig,
                   ctx: RunContext) -> tuple[Any, str]:
    """The training recipe: method option ``recipe`` over ``[model] training`` over a
    ``training.json`` beside the model file (over a scikit-learn MLP's own parameters)."""
    from audit.train.recipe import resolve_recipe

    recipe, source = resolve_recipe(model, ctx.training, config.recipe, method="connection_weights",
                                    action="refitting the network", loss=net.loss,
                                    derived=net.derived_recipe)
    if recipe.loss_scale is not None:
        raise InvalidConfigError(
            f"The training recipe from {source} sets 'loss_scale', which the batched MLP trainer of "
            "connection_weights does not apply; remove it (an MLP spec has no buffers to name).")
    if recipe.loss != net.loss:
        raise InvalidConfigError(
            f"The training recipe from {source} uses loss {recipe.loss!r}, but the network's output "
            f"({net.output_mode}, {net.spec.sizes[-1]} unit(s)) needs {net.loss!r}.")
    if config.n_restarts is not None:
        from dataclasses import replace

        recipe = replace(recipe, n_restarts=config.n_restarts)
    elif "n_restarts" in recipe.defaulted:
        pass  # Recipe's default (10 restarts) applies and is reported as a default
    return recipe, source


# --------------------------------------------------------------------------------------------
# Statistics from weights
# --------------------------------------------------------------------------------------------


def _output_transform(M: np.ndarray, mode: str) -> np.ndarray:
    """Map the last axis (raw outputs) to the identifiable outputs."""
    if mode == "contrast":
        return M[..., 1:2] - M[..., 0:1]
    if mode == "centred":
        return M - M.mean(axis=-1, keepdims=True)
    return M


def olden_importance(weights: Any, *, scale: np.ndarray | None = None, mode: str = "logit") -> np.ndarray:
    """Olden's connection-weight importance ``[B, D, O]``: ``W1 W2 ... WL`` (biases excluded),
    times each input's scale ``s_i`` when given, with the output transform of ``mode``.

    Examples
    --------
    >>> from audit.train.batched import Weights
    >>> W1 = np.array([[[1.0, -2.0], [0.5, 1.0]]])      # 2 inputs, 2 hidden
    >>> W2 = np.array([[[3.0], [1.0]]])                  # 2 hidden, 1 output
    >>> w = Weights([W1, W2], [np.zeros((1, 2)), np.zeros((1, 1))])
    >>> olden_importance(w)[0, :, 0].tolist()
    [1.0, 2.5]
    """
    M = np.asarray(weights.W[0], dtype=np.float64)
    for W in weights.W[1:]:
        M = M @ np.asarray(W, dtype=np.float64)
    if scale is not None:
        M = M * scale[None, :, None]
    return _output_transform(M, mode)


def connection_contributions(weights: Any, *, scale: np.ndarray | None = None, mode: str = "logit") -> np.ndarray:
    """``c[b, i, j, k] = W1[i, j] (W2 ... WL)[j, k]`` (scaled), summing over ``j`` to Olden's CW.

    Examples
    --------
    >>> from audit.train.batched import Weights
    >>> W1 = np.array([[[1.0, -2.0], [0.5, 1.0]]])
    >>> W2 = np.array([[[3.0], [1.0]]])
    >>> w = Weights([W1, W2], [np.zeros((1, 2)), np.zeros((1, 1))])
    >>> connection_contributions(w)[0, :, :, 0].tolist()
    [[3.0, -2.0], [1.5, 1.0]]
    """
    W1 = np.asarray(weights.W[0], dtype=np.float64)
    if scale is not None:
        W1 = W1 * scale[None, :, None]
    R = np.broadcast_to(np.eye(W1.shape[2]), (W1.shape[0], W1.shape[2], W1.shape[2]))
    for W in weights.W[1:]:
        R = R @ np.asarray(W, dtype=np.float64)
    return _output_transform(W1[:, :, :, None] * R[:, None, :, :], mode)


def garson_importance(weights: Any, *, scale: np.ndarray | None = None, mode: str = "logit") -> np.ndarray:
    """Garson's relative importance ``[B, D]`` (Goh's form), one hidden layer and one output.

    Examples
    --------
    >>> from audit.train.batched import Weights
    >>> W1 = np.array([[[1.0, -2.0], [0.5, 1.0]]])
    >>> W2 = np.array([[[3.0], [1.0]]])
    >>> w = Weights([W1, W2], [np.zeros((1, 2)), np.zeros((1, 1))])
    >>> garson_importance(w)[0].round(4).tolist()
    [0.6667, 0.3333]
    """
    if len(weights.W) != 2:
        raise InvalidConfigError(f"Garson's algorithm is defined for one hidden layer; this network has {len(weights.W) - 1}.")
    W1 = np.abs(np.asarray(weights.W[0], dtype=np.float64))
    if scale is not None:
        W1 = W1 * np.abs(scale)[None, :, None]
    V = _output_transform(np.asarray(weights.W[1], dtype=np.float64), mode)
    if V.shape[2] != 1:
        raise InvalidConfigError(f"Garson's algorithm is defined for one output; this network has {V.shape[2]}.")
    P = W1 * np.abs(V[:, None, :, 0])
    with np.errstate(invalid="ignore", divide="ignore"):
        Q = P / P.sum(axis=1, keepdims=True)
        S = Q.sum(axis=2)
        return S / S.sum(axis=1, keepdims=True)


def kendall_w(scores: np.ndarray) -> float | None:
    """Kendall's coefficient of concordance of ``M`` rankings (rows) of ``m`` items (columns):
    1 when every row ranks the items identically, 0 when the rankings cancel out.

    Examples
    --------
    >>> kendall_w(np.array([[1.0, 2.0, 3.0], [0.1, 0.5, 0.9]]))
    1.0
    """
    from scipy.stats import rankdata

    M, m = scores.shape
    if M < 2 or m < 2:
        return None
    R = np.vstack([rankdata(row) for row in scores])
    S = ((R.sum(0) - M * (m + 1) / 2) ** 2).sum()
    return float(12 * S / (M ** 2 * (m ** 3 - m)))


# --------------------------------------------------------------------------------------------
# The method
# --------------------------------------------------------------------------------------------


class ConnectionWeights(AuditMethod[ConnectionWeightsConfig, ConnectionWeightsResult]):
    name = "connection_weights"
    title = "Connection-weight importance with the Olden–Jackson randomization test"
    requires = frozenset({"weights"})
    needs_target = True
    Config = ConnectionWeightsConfig

    def skip_reason(self, model: ModelAdapter, data: AuditData, config: ConnectionWeightsConfig) -> str | None:
        found = sklearn_mlp(getattr(model, "estimator", None))
        if isinstance(found, str):
            return f"needs a plain MLP: {found}"
        if found is not None and "weights" not in model.capabilities:
            # a fitted scikit-learn MLPClassifier/MLPRegressor (after scalers): weights from coefs_
            reason = super().skip_reason(model, data, config)
            if reason is None or reason.startswith("needs a model with weights"):
                if data.task not in self.tasks:
                    return f"not defined for {data.task} tasks"
                if (why := self.modality_skip(data)) is not None:
                    return why
                if data.y is None:
                    return "needs the true outcome (a target column)"
                return None
            return reason
        reason = super().skip_reason(model, data, config)
        if reason is not None and reason.startswith("needs a model with weights"):
            return (f"needs a fully connected network with readable weights (a torch chain of Linear "
                    f"layers and elementwise activations, or a scikit-learn MLP); {model.description} "
                    "is not one. For other refittable scikit-learn estimators use the model-agnostic "
                    "permutation_significance method")
        return reason

    def run(self, model: ModelAdapter, data: AuditData, config: ConnectionWeightsConfig,
            ctx: RunContext) -> ConnectionWeightsResult:
        config.validate()
        net = extract_network(model, data)
        recipe, source = resolve_recipe(model, net, config, ctx)
        return randomization_test(model, data, net, recipe, source, config, ctx)

    # ---- summary --------------------------------------------------------------------------
    def plan(self, model: ModelAdapter, data: AuditData, config: ConnectionWeightsConfig, ctx: RunContext) -> Any:
        """Networks retrained on permuted outcomes, trained together as one wide network (about
        ten times cheaper than one by one; NOTES.md): priced as passes over the training rows."""
        from audit.core.cost import Plan

        train = ctx.train if ctx.train is not None else data
        n = min(train.n_rows, config.max_training_rows) if config.max_training_rows is not None else train.n_rows
        nets = config.n_permutations + 1 + config.per_input * config.per_input_permutations
        epochs = int(config.recipe.get("epochs", 20)) if isinstance(config.recipe.get("epochs", 20), int) else 20
        return Plan(f"{nets:,} networks retrained on {n:,} rows", uncounted_rows=3 * nets * epochs * n / 10)

    def findings(self, result: ConnectionWeightsResult, config: ConnectionWeightsConfig) -> list[Finding]:
        out: list[Finding] = []
        n_in = len(result.inputs)
        out.append(Finding(
            "info",
            f"Olden–Jackson randomization test (response permuted, {result.n_null_used} null networks "
            f"retrained from the same start): 'no association between the outcome and any input' is "
            f"rejected for {result.n_significant_bh} of {n_in} encoded inputs "
            f"({result.n_features_significant} of {len(result.features)} raw features) after "
            f"Benjamini–Hochberg at {result.alpha:g}; {result.n_significant_maxt} survive Westfall–Young "
            "max-T. This null says little about any single input."))
        pi = [f for f in result.features if f.per_input_p is not None]
        if pi:
            parts = ", ".join(f"{f.feature} (p = {f.per_input_p:.3g})" for f in pi)
            out.append(Finding("info", "Per-input null (only that feature permuted, a different "
                                       f"question — does it matter beyond the others?): {parts}."))
        top = sorted(result.features, key=lambda f: -f.statistic)[:3]
        if top:
            submitted: dict[str, float] = {}
            for t in result.inputs:  # the submitted weights' own ranking, by raw feature (max |CW|)
                submitted[t.feature] = max(submitted.get(t.feature, 0.0), abs(t.submitted))
            own = sorted(submitted, key=lambda f: -submitted[f])[:3]
            out.append(Finding("info", "Largest connection-weight importances (standardized inputs) of "
                                       "the network the test retrains from θ₀ (the statistic tested): "
                                       + ", ".join(f.feature for f in top) + "; of the submitted "
                                       "model's own weights: " + ", ".join(own) + "."))
        for msg in result.reachability:
            out.append(Finding("warning", msg))
        if result.diverged:
            out.append(Finding("warning", f"{len(result.diverged)} of {result.n_permutations} null "
                                          "networks diverged (non-finite loss) and were excluded from "
                                          "the p-values."))
        if result.kendall_w is not None and result.kendall_w < 0.7:
            out.append(Finding("warning", f"Importance rankings disagree across the {result.n_restarts} "
                                          f"random restarts (Kendall's W = {result.kendall_w:.2f}): "
                                          "equally accurate networks weigh the inputs differently."))
        for metric, vals in result.refit_metrics.items():
            s, r = vals.get("submitted"), vals.get("refit")
            if s is not None and r is not None and abs(s - r) > 0.02:
                out.append(Finding("warning", f"The refitted network's {metric} ({r:.3f}) differs from "
                                              f"the submitted model's ({s:.3f}): the test describes "
                                              "networks trained with the stated recipe, which may not "
                                              "be how the submitted model was trained."))
                break
        return out

    def figures(self, result: ConnectionWeightsResult, data: AuditData) -> dict[str, Any]:
        return _figures(result)


# --------------------------------------------------------------------------------------------
# The procedure
# --------------------------------------------------------------------------------------------


def _loss_values(logits: np.ndarray, y: np.ndarray, loss: str) -> np.ndarray:
    """Mean loss of each network: ``logits`` ``[N, n, out]`` against the shared targets ``y``."""
    logits = np.asarray(logits, dtype=np.float64)
    if loss == "bce":
        z = logits[..., 0]
        return np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))), axis=-1)
    if loss == "ce":
        m = logits.max(-1, keepdims=True)
        lse = (m + np.log(np.exp(logits - m).sum(-1, keepdims=True)))[..., 0]
        return np.mean(lse - logits[..., np.arange(len(y)), y.astype(int)], axis=-1)
    return np.mean((logits[..., 0] - y) ** 2, axis=-1)


def _loss_value(logits: np.ndarray, y: np.ndarray, loss: str) -> float:
    return float(_loss_values(np.asarray(logits)[None], y, loss)[0])


def _fit_selected(Xf: np.ndarray, targets: Any, inits: list[Any], Xv: np.ndarray, yv: np.ndarray, spec: Any,
                  recipe: Any, loss: str, *, shuffle: Any = None, device: str = "cpu",
                  n_workers: int | None = None) -> tuple[Any, np.ndarray]:
    """Every network trains each of the ``M`` restarts (initial weights ``inits[r]``, schedule
    ``seed + r``) on its own targets and keeps the one with the lowest validation loss — the
    observed network's selection, repeated for each null network so that both are selected alike.

    Returns the kept networks (a :class:`~audit.train.batched.FitResult`) and which restart each
    kept. Networks keep their weights from one restart at a time, so memory stays that of one
    batch."""
    from dataclasses import replace

    from audit.train.batched import forward_many, train_batched

    kept = None
    best_loss = None
    chosen = None
    for r, init in enumerate(inits):
        fit = train_batched(Xf, targets, spec, recipe, init, schedule_seed=recipe.shuffle_seed + r, shuffle=shuffle,
                            device=device, n_workers=n_workers)
        with np.errstate(all="ignore"):
            vl = _loss_values(forward_many(fit.weights, spec, Xv), yv, loss)
        vl = np.where(fit.diverged | ~np.isfinite(vl), np.inf, vl)
        if kept is None:
            kept, best_loss, chosen = fit, vl, np.zeros(len(vl), dtype=int)
            continue
        better = vl < best_loss
        for W, Wn in zip(kept.weights.W + kept.weights.b, fit.weights.W + fit.weights.b):
            W[better] = Wn[better]
        kept.loss[better] = fit.loss[better]
        best_loss = np.where(better, vl, best_loss)
        chosen[better] = r
    kept = replace(kept, diverged=~np.isfinite(best_loss))
    return kept, chosen


class _NullFits:
    """The randomization test's networks as independent chunks for :func:`audit.execution.map`.

    A job is ``(columns, seeds)``: with ``columns`` None, network ``b`` trains on ``y`` permuted
    by ``seeds[b]`` (the observed network has seed -1); otherwise on the real ``y`` with those
    input columns permuted (the per-input null). Each job is cut into blocks of the trainer's own
    chunk size (set by the network's and the data's size, never by the number of workers), so
    every network trains in the same company, and gives the same weights, on every backend. Each
    network starts from θ₀ (``selection = "first"``) or repeats the restarts' selection."""

    def __init__(self, rows: _RefitRows, net: _Network, recipe: Any, inits: list[Any], selection: str,
                 device: str) -> None:
        # the arrays alone (what a Ray task needs), not the whole training data
        self.Xf, self.yf, self.Xv, self.yv = rows.Xf, rows.yf, rows.Xv, rows.yv
        self.spec, self.recipe, self.inits, self.loss = net.spec, recipe, inits, net.loss
        self.selection, self.device = selection, device

    def block_size(self, n_columns: int) -> int:
        """The networks that :func:`~audit.train.batched.train_batched` trains at once on one worker."""
        from audit.train.batched import chunk_size_for

        cuda = str(self.device).startswith("cuda")
        n = len(self.Xf)
        size = chunk_size_for(self.spec, self.recipe, n, chunk_mb=2.0 * (64 if cuda else 1))
        return max(1, min(size, int(1024.0 * 1e6 // (n * 4 * (1 + n_columns)))))

    def fit(self, task: tuple[Any, np.ndarray]) -> tuple[Any, np.ndarray, np.ndarray | None]:
        from audit.train.batched import ColumnShuffle, FixedTargets, PermutedTargets, train_batched

        columns, seeds = task
        if columns is None:
            targets, shuffle = PermutedTargets(self.yf, seeds), None
        else:
            targets, shuffle = FixedTargets(self.yf, len(seeds)), ColumnShuffle(columns, seeds)
        kw = dict(shuffle=shuffle, device=self.device, n_workers=1)
        if self.selection == "first":
            f = train_batched(self.Xf, targets, self.spec, self.recipe, self.inits[0],
                              schedule_seed=self.recipe.shuffle_seed, **kw)
            return f.weights, f.diverged, None
        f, chosen = _fit_selected(self.Xf, targets, self.inits, self.Xv, self.yv, self.spec, self.recipe,
                                  self.loss, **kw)
        return f.weights, f.diverged, chosen

    def run(self, jobs: list[tuple[Any, np.ndarray]], n_workers: int | None,
            progress: Any) -> list[tuple[Any, np.ndarray | None]]:
        """Per job, its networks' fit (``weights``, ``diverged``) and, with per-network
        selection, the restart each kept."""
        from audit import execution
        from audit.train.batched import FitResult, Weights

        tasks, owner = [], []
        for j, (columns, seeds) in enumerate(jobs):
            for r in execution.split_by(len(seeds), self.block_size(0 if columns is None else len(columns))):
                tasks.append((columns, np.asarray(seeds)[r.start:r.stop]))
                owner.append(j)
        cpu = self.device == "cpu"
        parts = execution.map(self.fit, tasks, n_jobs=n_workers if cpu else 1, prefer="threads",
                              gpus=0 if cpu else 1, progress=progress)
        out = []
        for j in range(len(jobs)):
            mine = [p for p, o in zip(parts, owner) if o == j]
            weights = Weights([np.concatenate([p[0].W[i] for p in mine]) for i in range(self.spec.n_layers)],
                              [np.concatenate([p[0].b[i] for p in mine]) for i in range(self.spec.n_layers)])
            diverged = np.concatenate([p[1] for p in mine])
            chosen = None if mine[0][2] is None else np.concatenate([p[2] for p in mine])
            fit = FitResult(weights, np.full(len(diverged), np.nan), diverged, 0.0,
                            self.block_size(0 if jobs[j][0] is None else len(jobs[j][0])), 1, str(self.device))
            out.append((fit, chosen))
        return out


def _targets_for(y: np.ndarray, loss: str) -> np.ndarray:
    return y.astype(np.int64) if loss == "ce" else y.astype(np.float32)


@dataclass(frozen=True)
class _RefitRows:
    """The rows the networks are refitted on: fitting and validation parts, model-space inputs."""

    train: AuditData
    source: str                 # where the rows come from, in the report's words
    fit: np.ndarray             # row indices of the fitting rows
    val: np.ndarray             # ... and of the validation rows
    Xf: np.ndarray              # fitting inputs as the network sees them (after a scaler)
    yf: np.ndarray
    Xv: np.ndarray
    yv: np.ndarray
    scale: np.ndarray           # each encoded input's importance multiplier (its sd, or 1)


def _refit_rows(data: AuditData, net: _Network, recipe: Any, config: ConnectionWeightsConfig,
                ctx: RunContext, notes: list[str]) -> _RefitRows:
    """``ctx.train`` (or ``data`` when there is none), sampled to ``max_training_rows``, split as the
    recipe says."""
    train = ctx.train
    if train is None or train.y is None:
        train = data
        source = (f"the audited data ({data.n_rows:,} rows; no training data was given — set "
                  "[data] train_path to refit on the rows the model was trained on)")
        notes.append("No training data was given, so the networks were refitted on the audited rows.")
    else:
        source = f"the training data ({train.n_rows:,} rows{', ' + repr(train.source) if train.source else ''})"
    X = np.ascontiguousarray(train.X.reshape(train.n_rows, -1), dtype=np.float32)
    y = np.asarray(train.y)
    if config.max_training_rows is not None and len(X) > config.max_training_rows:
        rows = np.sort(ctx.rng.choice(len(X), config.max_training_rows, replace=False))
        X, y = X[rows], y[rows]
        notes.append(f"A random sample of {config.max_training_rows:,} training rows was used (max_training_rows).")
    if X.shape[1] != net.spec.sizes[0]:
        raise CapabilityError(f"the network has {net.spec.sizes[0]} inputs but the data has {X.shape[1]} columns")
    y = _targets_for(y, net.loss)
    # rows drawn as examples/adult_mlp/train.py does; without a validation_fraction every row
    # is fitted and the random restarts are compared by their loss on the fitted rows
    fit, val = (np.sort(rows) for rows in recipe.fit_rows(len(X)))
    if not len(val):
        val = fit
        notes.append("The training recipe holds out no validation rows (no validation_fraction), so "
                     "the random restarts were compared by their loss on the fitted rows.")
    # With a scaler before the MLP the networks train on its output a*x + d (as the pipeline did)
    # and their first layers are read folded, diag(a) W1: importances stay on the encoded inputs.
    a_in = np.ones(X.shape[1]) if net.input_affine is None else net.input_affine[0]
    Xm = X if net.input_affine is None else (X * a_in + net.input_affine[1]).astype(np.float32)
    scale = (X[fit].std(0).astype(np.float64) if config.scale == "sd" else np.ones(X.shape[1])) * a_in
    return _RefitRows(train, source, fit, val, Xm[fit], y[fit], Xm[val], y[val], scale)


def _restarts(rows: _RefitRows, net: _Network, recipe: Any, device: str, n_workers: int | None,
              tick: Callable[[int], None]) -> tuple[list[Any], list[Any], list[float]]:
    """Step 1: ``recipe.n_restarts`` fits of the real data from random starts. Returns each
    restart's initial weights, fitted weights and validation loss (inf when it diverged)."""
    import torch

    from audit import execution
    from audit.train.batched import FixedTargets, forward_numpy, torch_default_init, train_batched

    spec, loss = net.spec, net.loss
    inits = [torch_default_init(spec, recipe.seed + r) for r in range(recipe.n_restarts)]
    # the arrays alone go to a Ray worker, not the whole training data (rows.train)
    Xf, yf, Xv, yv = rows.Xf, rows.yf, rows.Xv, rows.yv

    def restart(r: int) -> tuple[Any, float]:
        fitr = train_batched(Xf, FixedTargets(yf, 1), spec, recipe, inits[r],
                             schedule_seed=recipe.shuffle_seed + r, device=device, n_workers=1)
        vl = (_loss_value(forward_numpy(fitr.weights, spec, Xv), yv, loss)
              if not fitr.diverged[0] else np.inf)
        return fitr.weights, (vl if np.isfinite(vl) else np.inf)

    # Each restart has its own initialisation and schedule (seed + r), so they are separate
    # training runs: chunks of execution.map (side by side on the CPU threads, or Ray tasks).
    cpu = device == "cpu"
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        outs = execution.map(restart, range(recipe.n_restarts), n_jobs=n_workers if cpu else 1,
                             prefer="threads", gpus=0 if cpu else 1, progress=lambda d, t: tick(1))
    finally:
        torch.set_num_threads(prev_threads)
    val_losses = [o[1] for o in outs]
    if not np.isfinite(val_losses).any():
        raise CapabilityError("every random restart diverged (non-finite loss) with the given training "
                              "recipe; lower the learning rate")
    return inits, [o[0] for o in outs], val_losses


def _restart_stability(weights: list[Any], scale: np.ndarray, mode: str
                       ) -> tuple[np.ndarray, float | None, float | None]:
    """The restarts' importances (finite ones, [R, D·O]), Kendall's W of their magnitudes and the
    share of inputs whose sign every restart agrees on."""
    restart_cw = np.concatenate([olden_importance(w, scale=scale, mode=mode) for w in weights])
    ok = np.isfinite(restart_cw.reshape(len(restart_cw), -1)).all(1)
    rcw = restart_cw[ok].reshape(ok.sum(), -1)
    kw = kendall_w(np.abs(rcw)) if len(rcw) >= 2 else None
    sign_agree = float(np.mean(np.abs(np.sign(rcw).mean(0)) == 1)) if len(rcw) >= 2 else None
    return rcw, kw, sign_agree


def _null_networks(rows: _RefitRows, net: _Network, recipe: Any, inits: list[Any], val_losses: list[float],
                   config: ConnectionWeightsConfig, ctx: RunContext, train_kw: dict[str, Any],
                   progress: Callable[[int, int], None]) -> tuple[Any, int, tuple[int, ...] | None]:
    """Step 2: the observed network (slot 0, identity permutation) and ``n_permutations`` null
    networks on permuted outcomes, each selected among the restarts as configured. Returns the
    fitted networks, the observed network's restart (θ₀) and, per restart, how many null
    networks kept it (per-network selection only)."""
    seeds = np.concatenate([[-1], ctx.rng.integers(0, 2**62, size=config.n_permutations)])
    if config.selection == "first" and not np.isfinite(val_losses[0]):
        # θ₀ chosen without the outcome: the observed network is the first restart's
        raise CapabilityError("the first random restart diverged (non-finite loss) with the given "
                              "training recipe; lower the learning rate")
    nulls = _NullFits(rows, net, recipe, inits, config.selection, train_kw["device"])
    fitn, chosen = nulls.run([(None, seeds)], train_kw["n_workers"], progress)[0]
    best, null_restarts = 0, None
    if chosen is not None:
        best = int(chosen[0])
        null_restarts = tuple(int(c) for c in np.bincount(chosen[1:][~fitn.diverged[1:]],
                                                          minlength=recipe.n_restarts))
    if fitn.diverged[0]:
        raise CapabilityError("the observed network (retrained from θ₀ on the real data) diverged; "
                              "check the training recipe")
    return fitn, best, null_restarts


@dataclass(frozen=True)
class _EncodedTests:
    """The tests of every encoded input × output from the null networks."""

    cw_all: np.ndarray          # [B+1, D, O] importances, slot 0 observed, diverged nulls NaN
    flat_obs: np.ndarray        # [D·O]
    flat_null: np.ndarray       # [B, D·O]
    pv: Any                     # audit.stats.permutation.PermutationPValues
    p: np.ndarray               # the configured alternative's p-values
    p_bh: np.ndarray
    p_maxt: np.ndarray
    alternative: str            # in the report's words


def _encoded_tests(fitn: Any, scale: np.ndarray, mode: str, config: ConnectionWeightsConfig) -> _EncodedTests:
    cw_all = olden_importance(fitn.weights, scale=scale, mode=mode)          # [B+1, D, O]
    cw_all[1:][fitn.diverged[1:]] = np.nan
    B = len(cw_all) - 1
    flat_obs, flat_null = cw_all[0].reshape(-1), cw_all[1:].reshape(B, -1)
    pv = permutation_pvalues(flat_obs, flat_null)
    if config.alternative == "two-sided":
        p_sel, alt = pv.two_sided, "two-sided"
        p_maxt = maxt_stepdown(flat_obs, flat_null, "two-sided")
    else:
        # one-sided in the observed direction (Olden & Jackson): above or below the null mean
        greater = flat_obs >= np.nanmean(flat_null, axis=0)
        p_sel = np.where(greater, pv.upper, pv.lower)
        alt = "one-sided in the observed direction"
        z = np.where(greater, 1.0, -1.0)
        p_maxt = maxt_stepdown(flat_obs * z, flat_null * z[None, :], "greater")
    # An adjusted p-value is never below the raw one: max-T standardizes |t - mean| / sd, whose
    # two-sided p can undercut the doubled empirical tail, so take the larger of the two.
    p_maxt = np.maximum(p_maxt, p_sel)
    return _EncodedTests(cw_all, flat_obs, flat_null, pv, p_sel, benjamini_hochberg(p_sel), p_maxt, alt)


def _garson_tests(fitn: Any, spec: Any, scale: np.ndarray, mode: str, n_outputs: int
                  ) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """Garson's importances ([B+1, D]) and upper-tail p-values, where it is defined, and a note."""
    if len(spec.sizes) != 3 or n_outputs != 1:
        return None, None, ("Garson's algorithm is defined for one hidden layer and one output; this "
                            f"network has {len(spec.sizes) - 2} hidden layer(s) and {n_outputs} tested output(s).")
    g_all = garson_importance(fitn.weights, scale=scale, mode=mode)
    g_all[1:][fitn.diverged[1:]] = np.nan
    return (g_all, permutation_pvalues(g_all[0], g_all[1:]).upper,
            "Garson's relative importance, upper-tail test (it has no sign).")


def _input_rows(rows: _RefitRows, net: _Network, tests: _EncodedTests, rcw: np.ndarray,
                garson: tuple[np.ndarray | None, np.ndarray | None], config: ConnectionWeightsConfig
                ) -> tuple[list[InputTest], float]:
    """One :class:`InputTest` per encoded input × output, and the Spearman correlation of the
    submitted model's importance magnitudes with the observed network's."""
    from scipy.stats import spearmanr

    obs = tests.cw_all[0]
    D, O = obs.shape
    sub_cw = olden_importance(net.weights, scale=rows.scale, mode=net.output_mode)[0]
    a_sub, a_obs = np.abs(sub_cw.ravel()), np.abs(obs.ravel())
    rho = (spearmanr(a_sub, a_obs).statistic
           if obs.size > 2 and np.ptp(a_sub) > 0 and np.ptp(a_obs) > 0 else np.nan)
    rmean = rcw.mean(0) if len(rcw) else np.full(D * O, np.nan)
    rsd = rcw.std(0, ddof=1) if len(rcw) > 1 else np.full(D * O, np.nan)
    nmean, _, nlow, nhigh = null_summary(tests.flat_null)
    g_all, g_p = garson
    columns = list(rows.train.columns)
    col_feature = [rows.train.feature_names[int(i)] for i in rows.train.encoding.column_feature]
    pv = tests.pv
    inputs = []
    for i in range(D):
        for k in range(O):
            f = i * O + k
            inputs.append(InputTest(
                name=columns[i], feature=col_feature[i], output=net.outputs[k],
                importance=float(obs[i, k]), submitted=float(sub_cw[i, k]),
                null_mean=float(nmean[f]), null_low=float(nlow[f]), null_high=float(nhigh[f]),
                p_upper=float(pv.upper[f]), p_lower=float(pv.lower[f]), p_two_sided=float(pv.two_sided[f]),
                p=float(tests.p[f]), p_bh=float(tests.p_bh[f]), p_maxt=float(tests.p_maxt[f]),
                significant=bool(tests.p_bh[f] <= config.alpha),
                restart_mean=float(rmean[f]), restart_sd=float(rsd[f]),
                garson=float(g_all[0][i]) if g_all is not None else None,
                garson_p=float(g_p[i]) if g_p is not None else None))
    return inputs, float(rho)


def _feature_tests(rows: _RefitRows, net: _Network, recipe: Any, inits: list[Any], best: int, fitn: Any,
                   cw_all: np.ndarray, config: ConnectionWeightsConfig, ctx: RunContext,
                   train_kw: dict[str, Any], tick: Callable[[int], None]) -> tuple[list[FeatureTest], dict[str, tuple[float, float, int]]]:
    """Raw features: the largest |importance| over each feature's columns (and classes), tested
    on the same null networks; for the top ``per_input`` features also against a per-input null
    (only that feature's columns permuted). Returns the tests and the per-input results."""
    groups = rows.train.groups
    names = list(groups)

    def group_stat(cw: np.ndarray) -> np.ndarray:   # cw [N, D, O] -> [N, F]
        return np.stack([np.abs(cw[:, idx, :]).reshape(len(cw), -1).max(1) for idx in groups.values()], axis=1)

    gs_all = group_stat(cw_all)
    gs_all[1:][fitn.diverged[1:]] = np.nan
    gp = permutation_pvalues(gs_all[0], gs_all[1:]).upper
    g_bh = benjamini_hochberg(gp)
    g_maxt = np.maximum(maxt_stepdown(gs_all[0], gs_all[1:], "greater"), gp)

    per_input: dict[str, tuple[float, float, int]] = {}
    fits_per_net = recipe.n_restarts if config.selection == "per_network" else 1
    Bp = config.per_input_permutations
    order = np.argsort(-gs_all[0])[: config.per_input] if config.per_input else ()
    # every block of every feature's null networks is one chunk: the features run side by side
    nulls = _NullFits(rows, net, recipe, inits, config.selection, train_kw["device"])
    fits = nulls.run([(groups[names[fi]], ctx.rng.integers(0, 2**62, size=Bp)) for fi in order],
                     train_kw["n_workers"], lambda d, t: None) if len(order) else []
    for fi, (fitp, _) in zip(order, fits):
        cols = groups[names[fi]]
        cwp = olden_importance(fitp.weights, scale=rows.scale, mode=net.output_mode)
        stat = np.abs(cwp[:, cols, :]).reshape(Bp, -1).max(1)
        stat[fitp.diverged] = np.nan
        pp = permutation_pvalues(np.array([gs_all[0, fi]]), stat[:, None])
        per_input[names[fi]] = (float(pp.upper[0]), float(np.nanmean(stat)), pp.n_null)
    tick(fits_per_net * Bp * len(order))

    features = []
    for fi, fname in enumerate(names):
        pi = per_input.get(fname)
        features.append(FeatureTest(
            feature=fname, n_columns=len(groups[fname]), statistic=float(gs_all[0, fi]), p=float(gp[fi]),
            p_bh=float(g_bh[fi]), p_maxt=float(g_maxt[fi]), significant=bool(g_bh[fi] <= config.alpha),
            per_input_p=pi[0] if pi else None, per_input_null_mean=pi[1] if pi else None,
            per_input_n=pi[2] if pi else None))
    return features, per_input


def _connection_tests(fitn: Any, spec: Any, rows: _RefitRows, net: _Network, n_outputs: int, alpha: float
                      ) -> tuple[int, int, tuple[Connection, ...], tuple[np.ndarray, np.ndarray] | None]:
    """Each input→hidden→output path tested two-sided on the null networks (BH over all paths),
    when there are at most 50,000 of them: how many were tested and significant, the 20 largest
    significant ones, and (observed, BH p) for the figures."""
    if len(spec.sizes) < 3 or spec.sizes[0] * spec.sizes[1] * n_outputs > 50_000:
        return 0, 0, (), None
    c_all = connection_contributions(fitn.weights, scale=rows.scale, mode=net.output_mode)    # [B+1, D, H, O]
    c_all[1:][fitn.diverged[1:]] = np.nan
    c_obs = c_all[0]
    cp = permutation_pvalues(c_obs.reshape(-1), c_all[1:].reshape(len(c_all) - 1, -1)).two_sided
    c_bh = benjamini_hochberg(cp).reshape(c_obs.shape)
    columns = list(rows.train.columns)
    top: list[Connection] = []
    for f in np.argsort(-np.abs(c_obs).ravel()):
        i, j, k = np.unravel_index(f, c_obs.shape)
        if c_bh[i, j, k] <= alpha:
            top.append(Connection(columns[i], int(j), net.outputs[k], float(c_obs[i, j, k]),
                                  float(cp.reshape(c_obs.shape)[i, j, k]), float(c_bh[i, j, k])))
        if len(top) >= 20:
            break
    return int(c_obs.size), int((c_bh <= alpha).sum()), tuple(top), (c_obs, c_bh)


def _reachability(n_null: int, n_encoded: int, n_features: int, n_connections: int,
                  config: ConnectionWeightsConfig) -> tuple[str, ...]:
    """Can each family reach alpha with this many null networks? One sentence per family that cannot."""
    side = "two-sided" if config.alternative == "two-sided" else "greater"
    families = [(n_encoded, side, "encoded inputs"), (n_features, "greater", "raw features")]
    if n_connections:
        families.append((n_connections, "two-sided", "input→hidden connections"))
    return tuple(dict.fromkeys(
        msg for m, alt, what in families
        if (msg := reachability(n_null, m, config.alpha, alt, "bh").message(what, "n_permutations"))))


def randomization_test(model: ModelAdapter | None, data: AuditData, net: _Network, recipe: Any,
                       source: str, config: ConnectionWeightsConfig, ctx: RunContext) -> ConnectionWeightsResult:
    """Olden & Jackson's procedure on ``ctx.train`` (or ``data`` when there is no training data):
    random restarts (step 1), the observed and the null networks (step 2), then the tests of
    encoded inputs, Garson's importances, raw features (with optional per-input nulls) and
    connections, all on the same null networks."""
    from audit import execution

    notes = list(net.notes)
    seconds: dict[str, float] = {}
    t_start = time.perf_counter()
    rows = _refit_rows(data, net, recipe, config, ctx, notes)
    device = execution.resolve_device(config.device, "connection_weights")
    spec, mode, B = net.spec, net.output_mode, config.n_permutations
    fits_per_net = recipe.n_restarts if config.selection == "per_network" else 1
    total_work = recipe.n_restarts + fits_per_net * (B + 1 + config.per_input * (config.per_input_permutations if config.per_input else 0))
    done = [0]

    def tick(k: int) -> None:
        done[0] += k
        ctx.progress(min(done[0], total_work), total_work)

    t0 = time.perf_counter()
    inits, restart_weights, val_losses = _restarts(rows, net, recipe, device, config.n_workers, tick)
    seconds["restarts"] = time.perf_counter() - t0
    rcw, kw, sign_agree = _restart_stability(restart_weights, rows.scale, mode)

    t0 = time.perf_counter()
    train_kw = dict(device=device, n_workers=config.n_workers)
    fitn, best, null_restarts = _null_networks(
        rows, net, recipe, inits, val_losses, config, ctx, train_kw,
        progress=lambda d, t: ctx.progress(min(done[0] + d, total_work), total_work))
    tick(fits_per_net * (B + 1))
    seconds["null_networks"] = time.perf_counter() - t0
    diverged = tuple(int(i) for i in np.flatnonzero(fitn.diverged[1:]))
    tests = _encoded_tests(fitn, rows.scale, mode, config)
    D, O = tests.cw_all[0].shape
    g_all, g_p, garson_note = _garson_tests(fitn, spec, rows.scale, mode, O)
    inputs, rho = _input_rows(rows, net, tests, rcw, (g_all, g_p), config)

    t0 = time.perf_counter()
    features, per_input = _feature_tests(rows, net, recipe, inits, best, fitn, tests.cw_all, config, ctx,
                                         train_kw, tick)
    seconds["per_input_null"] = time.perf_counter() - t0
    conn_tested, conn_sig, top_conn, conn_private = _connection_tests(fitn, spec, rows, net, O, config.alpha)
    reach = _reachability(tests.pv.n_null, int(np.isfinite(tests.flat_obs).sum()), len(features),
                          conn_tested, config)

    refit_metrics = _compare(model, data, net, fitn.weights, spec)
    seconds["total"] = time.perf_counter() - t_start
    rec_json = recipe.to_json()
    rec_json.pop("defaulted", None)
    columns = list(rows.train.columns)
    return ConnectionWeightsResult(
        model_kind=net.kind, architecture=tuple(spec.sizes), activations=tuple(spec.activations),
        output_mode=mode, outputs=net.outputs,
        scale=("standardized inputs (each input's importance times its standard deviation in the fitting rows)"
               if config.scale == "sd" else "raw encoded inputs (no rescaling)"),
        recipe=rec_json, recipe_source=source, recipe_defaults=tuple(recipe.defaulted),
        train_source=rows.source, n_fit=len(rows.fit), n_validation=len(rows.val), n_permutations=B,
        n_null_used=tests.pv.n_null, diverged=diverged, alternative=tests.alternative, alpha=config.alpha,
        inputs=tuple(inputs), input_rank=tuple(int(i) for i in np.argsort(-np.abs(tests.flat_obs), kind="stable")),
        features=tuple(features),
        n_significant_raw=int((tests.p <= config.alpha).sum()),
        n_significant_bh=int((tests.p_bh <= config.alpha).sum()),
        n_significant_maxt=int((tests.p_maxt <= config.alpha).sum()),
        n_features_significant=sum(f.significant for f in features),
        per_input_features=tuple(per_input), per_input_permutations=config.per_input_permutations if per_input else None,
        garson_available=g_all is not None, garson_note=garson_note,
        n_restarts=recipe.n_restarts, selection=config.selection, selected_restart=best,
        null_restarts=null_restarts, reachability=reach,
        restart_validation_loss=tuple(float(v) for v in val_losses), kendall_w=kw, sign_agreement=sign_agree,
        refit_metrics=refit_metrics, importance_spearman=rho if np.isfinite(rho) else None,
        connections_tested=conn_tested, connections_significant=conn_sig, top_connections=top_conn,
        skip_connections=("The network has no skip connections (a plain chain), so the importance is the "
                          "product of its weight matrices. (For networks with skip connections the direct "
                          "weights add to the path sum; NeuralNetTools documents but does not implement this.)"),
        device=f"{fitn.device}, chunks of {fitn.chunk_size} networks",
        notes=tuple(notes), _seconds={k: round(v, 2) for k, v in seconds.items()},
        _null=(tests.flat_null, tests.flat_obs), _conn=conn_private,
        _weights=(fitn.weights.take(slice(0, 1)) if net.input_affine is None
                  else fold_input_affine(fitn.weights.take(slice(0, 1)), net.input_affine), columns, D, O),
    )


def _compare(model: ModelAdapter | None, data: AuditData, net: _Network, weights: Any, spec: Any) -> dict[str, dict[str, float | None]]:
    """Submitted model vs the refitted observed network on the audited rows."""
    from audit.train.batched import forward_numpy

    if model is None or data.y is None:
        return {}
    X = np.asarray(data.X.reshape(data.n_rows, -1), dtype=np.float32)
    if net.input_affine is not None:
        weights = fold_input_affine(weights.take(slice(0, 1)), net.input_affine)
    z = forward_numpy(weights, spec, X, 0)
    out: dict[str, dict[str, float | None]] = {}
    y = data.y
    try:
        sub = model.predictions(data)
    except Exception:  # the comparison is informative only; never fail the method on it
        return {}
    if data.task == "regression":
        def r2(pred: np.ndarray) -> float:
            return float(1 - np.sum((y - pred) ** 2) / max(np.sum((y - y.mean()) ** 2), 1e-300))
        out["R²"] = {"submitted": r2(np.asarray(sub.labels, float)), "refit": r2(z[:, 0])}
        return out
    if net.loss == "bce":
        p1 = 1 / (1 + np.exp(-z[:, 0]))
    else:
        e = np.exp(z - z.max(1, keepdims=True))
        p = e / e.sum(1, keepdims=True)
        p1 = p[:, 1] if data.task == "binary" else None
    if data.task == "binary":
        refit_labels = (p1 >= model.threshold).astype(int)
    else:
        refit_labels = np.argmax(p, axis=1)
    out["accuracy"] = {"submitted": float(np.mean(sub.labels == y)), "refit": float(np.mean(refit_labels == y))}
    if data.task == "binary" and len(np.unique(y)) == 2:
        from sklearn.metrics import roc_auc_score

        out["ROC AUC"] = {"submitted": float(roc_auc_score(y, sub.scores)) if sub.scores is not None else None,
                          "refit": float(roc_auc_score(y, p1))}
    return out


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def _figures(result: ConnectionWeightsResult) -> dict[str, Any]:
    from audit.core.plots import NEGATIVE, NEUTRAL, POSITIVE, new_figure, pyplot, shorten

    figs: dict[str, Any] = {}
    rows = sorted(result.inputs, key=lambda r: -abs(r.importance))[:25][::-1]
    if rows:
        fig, ax = new_figure(6.5, 0.6 + 0.22 * len(rows))
        ypos = np.arange(len(rows))
        vals = [r.importance for r in rows]
        ax.barh(ypos, vals, color=[POSITIVE if v > 0 else NEGATIVE for v in vals], height=0.7)
        lo = [r.null_low for r in rows]
        hi = [r.null_high for r in rows]
        ax.hlines(ypos, lo, hi, color=NEUTRAL, lw=3, alpha=0.6, label="null 95% range")
        labels = []
        for r in rows:
            mark = "**" if r.p_maxt <= result.alpha else ("*" if r.significant else "")
            out = f" [{r.output}]" if len(result.outputs) > 1 else ""
            labels.append(shorten(f"{r.name}{out} {mark}", 45))
        ax.set_yticks(ypos, labels, fontsize=7)
        ax.axvline(0, color="#444444", lw=0.6)
        ax.set_xlabel("Olden connection-weight importance (standardized inputs)")
        ax.set_title("Top inputs by |importance|: * BH-significant, ** also max-T; grey: null 95% range", fontsize=8)
        fig.tight_layout()
        figs["importance"] = fig
    if result._null is not None:
        flat_null, flat_obs = result._null
        top = np.argsort(-np.abs(flat_obs))[:6]
        plt = pyplot()
        fig, axes = plt.subplots(2, 3, figsize=(7.0, 3.8))
        for ax, f in zip(axes.ravel(), top):
            col = flat_null[:, f]
            col = col[np.isfinite(col)]
            ax.hist(col, bins=30, color=NEUTRAL)
            ax.axvline(flat_obs[f], color=POSITIVE, lw=1.5)
            r = result.inputs[f]
            ax.set_title(shorten(r.name, 28) + f"\np = {r.p:.3g}", fontsize=7)
            ax.tick_params(labelsize=6)
        for ax in axes.ravel()[len(top):]:
            ax.set_axis_off()
        fig.suptitle("Null distributions (response permuted) with the observed value (line)", fontsize=8)
        fig.tight_layout()
        figs["null"] = fig
    if result._conn is not None and result._weights is not None:
        figs["diagram"] = _diagram(result)
    return figs


_DIAGRAM_INPUTS = 12        # inputs drawn (largest |importance| among those with a significant connection)
_DIAGRAM_MIN_SHARE = 0.05   # connections weaker than this share of the strongest are not drawn


def _diagram(result: ConnectionWeightsResult) -> Any:
    """Olden & Jackson's pruned neural interpretation diagram: only connections whose
    contribution c_ij is significant (BH) are drawn; width ~ |c|, colour = sign."""
    from audit.core.plots import NEGATIVE, POSITIVE, pyplot, shorten

    plt = pyplot()
    c_obs, c_bh = result._conn
    weights, columns, D, O = result._weights
    sig = c_bh <= result.alpha                                # [D, H, O]
    inputs_any = np.flatnonzero(sig.any(axis=(1, 2)))
    if inputs_any.size > _DIAGRAM_INPUTS:
        strength = np.abs(c_obs.sum(axis=1)).max(axis=1)[inputs_any]      # |CW| of each input
        inputs_any = np.sort(inputs_any[np.argsort(-strength)[:_DIAGRAM_INPUTS]])
    H = c_obs.shape[1]
    fig, ax = plt.subplots(figsize=(7.0, max(3.0, 0.25 * max(len(inputs_any), H) + 1)))
    ax.set_axis_off()
    n_in = max(len(inputs_any), 1)
    yin = {i: 1 - (k + 0.5) / n_in for k, i in enumerate(inputs_any)}
    yh = {j: 1 - (j + 0.5) / H for j in range(H)}
    yo = {k: 1 - (k + 0.5) / O for k in range(O)}
    cmax = np.abs(c_obs[sig]).max() if sig.any() else 1.0
    used_hidden = set()
    for i in inputs_any:
        for j in range(H):
            c = c_obs[i, j, int(np.argmax(np.abs(c_obs[i, j])))]
            if sig[i, j].any() and abs(c) >= _DIAGRAM_MIN_SHARE * cmax:
                ax.plot([0, 1], [yin[i], yh[j]], color=POSITIVE if c > 0 else NEGATIVE,
                        lw=0.3 + 3 * abs(c) / cmax, alpha=0.8)
                used_hidden.add(j)
    W = weights.W
    R = np.asarray(W[1][0], dtype=float)
    for Wl in W[2:]:
        R = R @ np.asarray(Wl[0], dtype=float)
    R = _output_transform(R, result.output_mode)
    rmax = np.abs(R).max() or 1.0
    for j in used_hidden:
        for k in range(R.shape[1]):
            ax.plot([1, 2], [yh[j], yo[k]], color=POSITIVE if R[j, k] > 0 else NEGATIVE,
                    lw=0.3 + 3 * abs(R[j, k]) / rmax, alpha=0.8)
    for i in inputs_any:
        ax.text(-0.03, yin[i], shorten(columns[i], 30), ha="right", va="center", fontsize=6.5)
    ax.scatter([0] * len(inputs_any), [yin[i] for i in inputs_any], s=14, color="#333333", zorder=3)
    ax.scatter([1] * H, [yh[j] for j in range(H)], s=20, color=["#333333" if j in used_hidden else "#CCCCCC" for j in range(H)], zorder=3)
    ax.scatter([2] * R.shape[1], [yo[k] for k in range(R.shape[1])], s=24, color="#333333", zorder=3)
    for k in range(R.shape[1]):
        ax.text(2.05, yo[k], shorten(result.outputs[k], 20), ha="left", va="center", fontsize=7)
    ax.set_xlim(-1.2, 2.6)
    ax.set_title("Neural interpretation diagram: significant input→hidden contributions (BH), "
                 f"top {_DIAGRAM_INPUTS} inputs; orange positive, blue negative", fontsize=8)
    if not len(inputs_any):
        ax.text(0.7, 0.5, "no connection is significant", ha="center", fontsize=8)
    return fig


__all__ = [
    "ConnectionWeights",
    "ConnectionWeightsConfig",
    "ConnectionWeightsResult",
    "FeatureTest",
    "InputTest",
    "connection_contributions",
    "extract_network",
    "fold_input_affine",
    "garson_importance",
    "kendall_w",
    "olden_importance",
    "randomization_test",
    "resolve_recipe",
    "sklearn_mlp",
]
