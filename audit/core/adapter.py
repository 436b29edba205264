"""Any model -> one :class:`ModelAdapter` interface.

Every adapter speaks the *encoded* input space of :class:`~audit.core.dataset.AuditData`:
``X`` is the float matrix the encoding produces. Models that consume raw data frames
(scikit-learn pipelines with their own preprocessing) are wrapped with the encoding's
``decode`` so that explainers can still perturb a numeric matrix.

Capabilities (``adapter.capabilities``):

- ``"predict"``: scores arbitrary inputs (``predict`` / ``predict_proba``);
- ``"proba"``: class probabilities are available;
- ``"torch"``: ``forward`` maps a tensor to a differentiable tensor;
- ``"gradients"``: gradients of the output with respect to the input are meaningful;
- ``"weights"``: a chain of fully connected layers exposes its weight matrices;
- ``"sklearn"``: an unfitted clone of the estimator can be refitted;
- ``"trees"``: a gradient-boosted tree ensemble whose library object is ``estimator``
  (XGBoost / LightGBM, :mod:`audit.core.boosters`), readable by shap's ``TreeExplainer``;
- ``"predictions"``: predictions on the audited rows are available (every adapter).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from audit.core.dataset import TASKS, AuditData, Encoding, Task
from audit.errors import CapabilityError, DataValidationError, InvalidConfigError, ModelLoadError

if TYPE_CHECKING:  # pragma: no cover
    import torch

_BATCH = 8192


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class LoadRecord:
    """How one file was loaded (for the report's provenance appendix)."""

    role: str
    path: str
    sha256: str
    loader: str
    tensor_sha256: str | None = None
    trusted_pickle: bool = False
    # What code from this file ran while loading it (None: none did), for the report.
    code: str | None = None


# The one opt-in for model files that are programs (pickle, joblib, TorchScript, skops types
# outside its safe list), and the flag that refuses every Python import a config names.
TRUST_CODE_FLAG = "--trust-code"
UNTRUSTED_CONFIG_FLAG = "--untrusted-config"


@dataclass(frozen=True)
class Predictions:
    """A model's predictions on the audited rows.

    ``labels``: class index (classification) or predicted value (regression);
    ``scores``: P(positive) (binary, shape (n,)), class probabilities (multiclass, (n, k)),
    or None when the model gives labels only.
    """

    labels: np.ndarray
    scores: np.ndarray | None = None


@dataclass
class ModelAdapter:
    """Uniform interface over a model.

    Subclasses implement ``_scores`` (class probabilities, or values for regression) on encoded
    input; ``predict`` and ``predict_proba`` derive from it.
    """

    task: Task
    n_classes: int = 2
    threshold: float = 0.5
    capabilities: frozenset[str] = frozenset({"predict", "proba", "predictions"})
    description: str = "model"
    loaded: tuple[LoadRecord, ...] = ()
    n_inputs: int | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise InvalidConfigError(f"The 'task' of the model must be one of {TASKS}. Got {self.task!r} instead.")
        if self.task == "regression":
            self.n_classes = 1
            self.capabilities = self.capabilities - {"proba"}

    def require(self, capability: str, method: str) -> None:
        if capability not in self.capabilities:
            raise CapabilityError(f"{method} needs a model with {capability!r}; {self.description} "
                                  f"offers {sorted(self.capabilities)}.")

    def bind(self, data: AuditData) -> None:
        """Match the model to the audited data before anything is scored (called by
        ``check_compatible``); adapters whose outputs need the data's classes override it."""

    def _check_width(self, X: np.ndarray) -> None:
        if self.n_inputs is not None and X.ndim == 2 and X.shape[1] != self.n_inputs:
            raise ModelLoadError(
                f"{self.description} expects {self.n_inputs} input columns but was given {X.shape[1]}. "
                "Check that the encoding JSON is the one the model was trained with.")

    def _scores(self, X: np.ndarray) -> np.ndarray:
        raise CapabilityError(f"{self.description} cannot score new inputs.")

    def scores(self, X: np.ndarray) -> np.ndarray:
        """``_scores`` checked by :func:`check_outputs`: every adapter's outputs pass here."""
        n_classes = self.n_classes if self.task == "multiclass" and self.n_classes > 2 else None
        return check_outputs(self._scores(X), task=self.task, n_rows=len(X), what=self.description,
                             n_classes=n_classes)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (n, n_classes)."""
        if "proba" not in self.capabilities:
            raise CapabilityError(f"{self.description} gives no class probabilities.")
        X = np.asarray(X, dtype=np.float32)
        self._check_width(X)
        return self.scores(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class indices (classification) or predicted values (regression)."""
        X = np.asarray(X, dtype=np.float32)
        self._check_width(X)
        s = self.scores(X)
        if self.task == "regression":
            return s.reshape(len(X))
        if self.task == "binary":
            return (s[:, 1] >= self.threshold).astype(np.int64)
        return np.argmax(s, axis=1).astype(np.int64)

    def output(self, X: np.ndarray) -> np.ndarray:
        """The scalar explained by attributions: P(positive) for binary, value for regression,
        all class probabilities (n, k) for multiclass."""
        s = self.predict_proba(X) if self.task != "regression" else self.predict(X)
        return s[:, 1] if self.task == "binary" else s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise CapabilityError(f"{self.description} is not a differentiable torch model.")

    def predictions(self, data: AuditData) -> Predictions:
        """Predictions on the audited rows (computed, or precomputed for a predictions file)."""
        if self.task == "regression":
            return Predictions(self.predict(data.X))
        if "proba" not in self.capabilities:
            return Predictions(self.predict(data.X))
        p = self.predict_proba(data.X)
        if self.task == "multiclass" and data.classes is not None and p.shape[1] != len(data.classes):
            raise ModelLoadError(
                f"{self.description} returned {p.shape[1]} class probabilities per row but the "
                f"target has {len(data.classes)} classes ({', '.join(map(str, data.classes[:5]))}"
                f"{', ...' if len(data.classes) > 5 else ''}). Use the model trained for these "
                "classes, or list its classes in the encoding JSON (\"classes\").")
        if self.task == "binary":
            return Predictions((p[:, 1] >= self.threshold).astype(np.int64), p[:, 1])
        return Predictions(np.argmax(p, axis=1).astype(np.int64), p)


_RAW_KEY = "[model] raw_input = true"


def check_width(model: ModelAdapter, data: AuditData) -> None:
    """Refuse a model whose input width does not fit the data, saying which input it does take.

    A model reads either the encoded matrix (one-hot columns, ...) or, with ``[model] raw_input
    = true`` (scikit-learn pipelines and Python functions), the raw columns. When the model's
    width (or a scikit-learn model's ``feature_names_in_``) matches the other one, the error says
    to switch; otherwise it names both widths and the encoding to check.
    """
    if data.X.ndim != 2:
        return
    width, raw = data.X.shape[1], [str(f) for f in data.feature_names]
    estimator = getattr(model, "estimator", None)
    names = getattr(estimator, "feature_names_in_", None)
    named_raw = names is not None and sorted(map(str, names)) == sorted(raw)
    shown = ", ".join(raw[:6]) + (", ..." if len(raw) > 6 else "")
    if getattr(model, "raw", False):
        n = getattr(estimator, "n_features_in_", None) if estimator is not None else None
        if n is None or n == len(raw) or named_raw:
            return
        if n == width:
            raise DataValidationError(
                f"{model.description} expects {n} input columns, as many as the encoding gives, but "
                f"{_RAW_KEY} hands it the {len(raw)} raw columns ({shown}): this model takes the "
                "encoded columns: remove raw_input from [model] (or set it to false).")
        raise DataValidationError(
            f"{model.description} expects {n} input columns, but {_RAW_KEY} hands it {len(raw)} raw "
            f"columns ({shown}) and the encoding would give {width}. Check that [data] features lists "
            "the columns the model was trained on.")
    n = model.n_inputs
    if named_raw and hasattr(model, "raw") and not _identity_encoding(data):
        # fitted on a data frame of the raw columns (scikit-learn kept their names) but handed the
        # encoded matrix: even at the same width its inputs would be silently wrong
        raise DataValidationError(
            f"{model.description} was fitted on a data frame of the raw columns ({shown}; scikit-learn "
            f"kept their names), but the audit would hand it the encoded columns: this model takes the "
            f"raw columns: set `{_RAW_KEY}`. (If it was fitted on encoded values under these names, fit "
            "it on the encoded array instead.)")
    if n is None or n == width:
        return
    if n == len(raw) or named_raw:
        if hasattr(model, "raw"):  # a scikit-learn model or a Python function can take them
            raise DataValidationError(
                f"{model.description} expects {n} input columns, one per raw column ({shown}), but the "
                f"encoding gives {width}: this model takes the raw columns: set `{_RAW_KEY}` "
                "(the model then receives the data frame, as a scikit-learn Pipeline with its own "
                "preprocessing does).")
        raise DataValidationError(
            f"{model.description} expects {n} input columns, one per raw column ({shown}), but the "
            f"encoding gives {width} (one-hot columns). Use the encoding JSON the model was trained "
            "with (set [model] encoding; e.g. ordinal codes for its categories); [model] raw_input "
            "applies only to scikit-learn models and Python functions.")
    raise DataValidationError(
        f"{model.description} expects {n} input columns but the encoded data has {width} "
        f"({len(raw)} raw features: {shown}). Use the encoding JSON the model was trained with (set "
        "[model] encoding), and check that [data] features lists the columns it was trained on.")


def _identity_encoding(data: AuditData) -> bool:
    """Whether the encoded columns equal the raw ones (numeric, centre 0, scale 1, no transform)."""
    from audit.core.dataset import NumericFeature

    return all(isinstance(f, NumericFeature) and f.center == 0 and f.scale == 1 and f.transform is None
               for f in data.encoding.features)


# Tolerances of check_outputs: float32 softmax rows sum to 1 within ~1e-6 and sigmoid/softmax
# stay inside [0, 1]; a model whose "probabilities" miss by more than this is not giving them.
PROBA_TOLERANCE = 1e-4
SUM_TOLERANCE = 1e-3


_LOGIT_HINT = "If the model outputs logits or scores, set [model] output = \"logit\" (sigmoid / softmax are then applied)."
_WEIGHTS_HINT = "Check the model's weights and inputs; no audit number can be computed from non-finite outputs."


def check_outputs(out: Any, *, task: str, n_rows: int, what: str,
                  n_classes: int | None = None, range_hint: str = _LOGIT_HINT,
                  finite_hint: str = _WEIGHTS_HINT) -> np.ndarray:
    """The one validation point of model outputs; returns them as float (n, k).

    Every adapter's scores pass here before any method sees them: numbers, shape (n_rows, k)
    with one output row per input row, k = 1 for regression, 2 for binary (a single P(positive)
    column is widened by the adapter first), ``n_classes`` for multiclass when known; finite;
    for classification probabilities in [0, 1] (within ``PROBA_TOLERANCE``, then clipped) and
    rows summing to 1 (within ``SUM_TOLERANCE``). Anything else raises ModelLoadError (exit 2)
    naming the model and what it returned, e.g. "412 of 1,000 rows had NaN".

    Examples
    --------
    >>> check_outputs(np.array([[0.2, 0.8], [0.6, 0.4]]), task="binary", n_rows=2, what="m").shape
    (2, 2)
    """
    arr = np.asarray(out)
    if arr.dtype.kind not in "biuf":
        raise ModelLoadError(f"{what} returned values of type {arr.dtype}, not numbers.")
    arr = arr.astype(float, copy=False)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ModelLoadError(f"{what} returned an array of shape {arr.shape}; a model must return "
                             "one row of outputs per input row, shape (rows, outputs).")
    n, k = arr.shape
    if n != n_rows:
        raise ModelLoadError(f"{what} returned {n:,} rows of output for {n_rows:,} input rows; a model "
                             "must return exactly one output row per input row.")
    if task == "regression" and k != 1:
        raise ModelLoadError(f"{what} returned {k} outputs per row but the task is regression (one "
                             "value per row). Set [model] task, or export a single-output model.")
    if task == "binary" and k != 2:
        raise ModelLoadError(f"{what} returned {k} outputs per row but the task is binary (1 or 2 "
                             f"outputs). Set task = \"multiclass\" if the model has {k} classes.")
    if task == "multiclass" and (k < 2 or (n_classes is not None and k != n_classes)):
        raise ModelLoadError(f"{what} returned {k} class probabilities per row; the task is multiclass "
                             f"with {n_classes if n_classes is not None else 'at least 2'} classes.")
    finite = np.isfinite(arr)
    if not finite.all():
        bad = ~finite.all(axis=1)
        kinds = " and ".join(name for name, hit in (("NaN", np.isnan(arr).any()),
                                                    ("infinite values", np.isinf(arr).any())) if hit)
        raise ModelLoadError(
            f"{what} returned {kinds}: {int(bad.sum()):,} of {n:,} rows had them (first at row "
            f"{int(np.flatnonzero(bad)[0]) + 1:,} of the rows given to it, counted from 1). {finite_hint}")
    if task == "regression" or n == 0:
        return arr
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -PROBA_TOLERANCE or hi > 1 + PROBA_TOLERANCE:
        bad = ((arr < -PROBA_TOLERANCE) | (arr > 1 + PROBA_TOLERANCE)).any(axis=1)
        raise ModelLoadError(
            f"{what} returned probabilities outside [0, 1]: values from {lo:.4g} to {hi:.4g} in "
            f"{int(bad.sum()):,} of {n:,} rows. {range_hint}")
    dev = np.abs(arr.sum(axis=1) - 1)
    if float(dev.max()) > SUM_TOLERANCE:
        bad = dev > SUM_TOLERANCE
        raise ModelLoadError(
            f"{what} returned class probabilities that do not sum to 1 (within {SUM_TOLERANCE:g}) in "
            f"{int(bad.sum()):,} of {n:,} rows (largest deviation {float(dev.max()):.4g}). If the "
            "model outputs logits, set [model] output = \"logit\".")
    return np.clip(arr, 0.0, 1.0)


# --------------------------------------------------------------------------------------------
# Callables and precomputed predictions
# --------------------------------------------------------------------------------------------


@dataclass
class CallableAdapter(ModelAdapter):
    """Wrap any Python function of the encoded matrix.

    ``fn`` returns probabilities (n, k) or P(positive) (n,) for classification, values for
    regression. With ``raw=True`` it receives the decoded raw data frame instead.

    Examples
    --------
    >>> import numpy as np
    >>> m = CallableAdapter(task="binary", fn=lambda X: 1 / (1 + np.exp(-X[:, 0])))
    >>> m.predict(np.array([[2.0], [-2.0]]))
    array([1, 0])
    """

    fn: Callable[[Any], Any] | None = None
    encoding: Encoding | None = None
    raw: bool = False

    def _scores(self, X: np.ndarray) -> np.ndarray:
        if self.fn is None:
            raise CapabilityError("CallableAdapter was given no function.")
        arg = self.encoding.decode(X) if self.raw and self.encoding is not None else X
        try:
            out = np.asarray(self.fn(arg), dtype=float)
        except (TypeError, ValueError) as exc:
            raise ModelLoadError(f"{self.description} returned something that is not an array of "
                                 f"numbers ({type(exc).__name__}: {exc}).") from None
        return _as_scores(out, self.task, len(X), self.description)


def _as_scores(out: np.ndarray, task: str, n: int, what: str) -> np.ndarray:
    """A single P(positive) column widened to (1 - p, p); everything else is left to
    :func:`check_outputs`, which names what is wrong."""
    if task == "binary" and out.ndim in (1, 2) and out.shape[0] == n and (out.ndim == 1 or out.shape[1] == 1):
        p = out.reshape(n)
        return np.column_stack([1 - p, p])
    return out


_SCORES_HINT = ("A binary predictions column holds the target's labels or scores in [0, 1] "
                "(probabilities of the positive label).")


@dataclass
class PredictionsAdapter(ModelAdapter):
    """Precomputed predictions only: no new inputs can be scored."""

    column: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.capabilities = frozenset({"predictions"})
        self.description = f"precomputed predictions in column {self.column!r}"

    def predictions(self, data: AuditData) -> Predictions:
        raw = data.predictions
        if raw is None:
            raise CapabilityError(f"The data has no predictions column {self.column!r}.")
        if self.task == "binary" and raw.dtype.kind == "f":
            # the same rule as every model's probabilities: within PROBA_TOLERANCE of [0, 1],
            # then clipped
            p = check_outputs(np.column_stack([1 - raw, raw]), task="binary", n_rows=data.n_rows,
                              what=self.description, range_hint=_SCORES_HINT)[:, 1]
            return Predictions((p >= self.threshold).astype(np.int64), p)
        if self.task == "regression":
            check_outputs(raw, task="regression", n_rows=data.n_rows, what=self.description)
        return Predictions(raw)


# --------------------------------------------------------------------------------------------
# scikit-learn
# --------------------------------------------------------------------------------------------


@dataclass
class SklearnAdapter(ModelAdapter):
    """A fitted scikit-learn estimator or Pipeline.

    ``raw=True`` means the estimator consumes the raw data frame (a Pipeline with its own
    preprocessing); inputs are decoded with ``encoding`` first.
    """

    estimator: Any = None
    encoding: Encoding | None = None
    raw: bool = False

    def __post_init__(self) -> None:
        caps = {"predict", "predictions", "sklearn"}
        if self.task != "regression" and hasattr(self.estimator, "predict_proba"):
            caps.add("proba")
        if self.task != "regression":
            classes = getattr(self.estimator, "classes_", None)
            if classes is not None:
                self.n_classes = len(classes)
        self.capabilities = frozenset(caps)
        super().__post_init__()
        if self.n_inputs is None and not self.raw:
            self.n_inputs = getattr(self.estimator, "n_features_in_", None)

    def _input(self, X: np.ndarray) -> Any:
        if self.raw:
            if self.encoding is None:
                raise InvalidConfigError("A raw-input scikit-learn model needs the data's encoding.")
            return self.encoding.decode(X)
        return X

    def _scores(self, X: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(X), _BATCH):
            chunk = self._input(X[start:start + _BATCH])
            if self.task == "regression":
                pred = np.asarray(self.estimator.predict(chunk), dtype=float)
                out.append(pred.reshape(len(pred), -1) if pred.ndim else pred.reshape(1, 1))
            elif "proba" in self.capabilities:
                out.append(np.asarray(self.estimator.predict_proba(chunk), dtype=float))
            else:
                labels = np.asarray(self.estimator.predict(chunk))
                onehot = np.zeros((len(labels), self.n_classes))
                onehot[np.arange(len(labels)), np.searchsorted(self.estimator.classes_, labels)] = 1
                out.append(onehot)
        return np.vstack(out)

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.task == "multiclass" or "proba" not in self.capabilities:
            X = np.asarray(X, dtype=np.float32)
            self._check_width(X)
            if self.task == "regression":
                return self.scores(X).reshape(len(X))
            return np.argmax(self.scores(X), axis=1).astype(np.int64)
        return super().predict(X)


# --------------------------------------------------------------------------------------------
# PyTorch
# --------------------------------------------------------------------------------------------

_ACTIVATIONS = ("relu", "sigmoid", "tanh", "gelu", "elu", "leaky_relu", "softplus", "identity")


@dataclass
class TorchAdapter(ModelAdapter):
    """A torch ``nn.Module`` whose output is logits (``output="logit"``), probabilities
    (``"probability"``) or values (regression, ``"identity"``).

    Binary models may output one logit (sigmoid) or two (softmax); multiclass models k logits.
    """

    module: Any = None
    output_kind: str = "logit"

    def __post_init__(self) -> None:
        import torch

        if self.output_kind not in ("logit", "probability", "identity"):
            raise InvalidConfigError(
                "The 'output' of a torch model must be \"logit\", \"probability\" or \"identity\". "
                f"Got {self.output_kind!r} instead.")
        self.module.eval()
        caps = {"predict", "predictions", "proba", "torch", "gradients"}
        if linear_chain(self.module) is not None:
            caps.add("weights")
        self.capabilities = frozenset(caps)
        super().__post_init__()
        if self.n_inputs is None:
            chain = linear_chain(self.module)
            if chain:
                self.n_inputs = int(chain[0].in_features)
        self._torch = torch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable (n, n_classes) probabilities, or (n, 1) values for regression."""
        torch = self._torch
        out = self.module(x)
        if out.ndim == 1:
            out = out[:, None]
        if self.task == "regression":
            return out
        if self.output_kind == "probability":
            p = out
        elif out.shape[1] == 1:
            p1 = torch.sigmoid(out)
            p = torch.cat([1 - p1, p1], dim=1)
        else:
            p = torch.softmax(out, dim=1)
        if p.shape[1] == 1:
            p = torch.cat([1 - p, p], dim=1)
        return p

    def _scores(self, X: np.ndarray) -> np.ndarray:
        torch = self._torch
        outs = []
        with torch.no_grad():
            for start in range(0, len(X), _BATCH):
                xb = torch.from_numpy(np.ascontiguousarray(X[start:start + _BATCH]))
                try:
                    outs.append(self.forward(xb).double().numpy())
                except RuntimeError as exc:
                    raise ModelLoadError(
                        f"The torch model failed on input of shape {tuple(xb.shape)}: "
                        f"{str(exc).splitlines()[0]}. Check that the encoding matches the model.") from None
        return np.vstack(outs)


def linear_chain(module: Any) -> list[Any] | None:
    """The Linear layers of ``module`` if they form a simple chain (an MLP), else None.

    A chain means: the module contains only Linear layers, elementwise activations, dropout and
    containers, each Linear's input width equals the previous one's output width, and applying
    those layers in registration order reproduces the module's output (checked on random
    input, because a custom ``forward`` may use its layers in any order or add other operations).
    """
    import torch.nn as nn

    elementwise = (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.GELU, nn.ELU, nn.LeakyReLU, nn.Softplus,
                   nn.Identity, nn.Dropout, nn.SiLU, nn.Softmax, nn.LogSoftmax, nn.Flatten)
    linears = []
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            linears.append(sub)
        elif isinstance(sub, (nn.Sequential, nn.ModuleList)) or sub is module:
            continue
        elif not isinstance(sub, elementwise):
            return None
    if not linears:
        return None
    for a, b in zip(linears, linears[1:]):
        if a.out_features != b.in_features:
            return None
    return linears if _runs_as_chain(module, linears[0].in_features) else None


def _runs_as_chain(module: Any, width: int) -> bool:
    """Whether ``module(x)`` equals its leaf layers applied one after another."""
    import torch

    leaves = [m for m in module.modules() if not any(True for _ in m.children())]
    gen = torch.Generator().manual_seed(0)
    dtype = next(module.parameters()).dtype
    x = torch.randn(4, width, generator=gen, dtype=dtype)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            expected = module(x)
            out = x
            for leaf in leaves:
                out = leaf(out)
    except Exception:  # a forward that cannot take a plain batch is not a chain
        return False
    finally:
        module.train(was_training)
    return (isinstance(expected, torch.Tensor) and expected.shape == out.shape
            and bool(torch.allclose(expected, out, rtol=1e-5, atol=1e-6)))


def build_mlp(spec: Mapping[str, Any], *, source: str = "architecture") -> Any:
    """Build an ``nn.Sequential`` MLP from a small JSON spec.

    ``{"type": "mlp", "input_dim": 107, "hidden": [16], "activation": "sigmoid",
    "output_dim": 1, "output": "logit"}`` gives Linear(107, 16), Sigmoid, Linear(16, 1);
    parameter names are ``0.weight``, ``0.bias``, ``2.weight``, ...
    """
    import torch.nn as nn

    def need(key: str, kind: type) -> Any:
        if key not in spec:
            raise InvalidConfigError(f"The architecture in {source} lacks the key {key!r}.")
        value = spec[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise InvalidConfigError(f"The {key!r} of the architecture in {source} must be "
                                     f"{kind.__name__}. Got {value!r} instead.")
        return value

    if spec.get("type", "mlp") != "mlp":
        raise InvalidConfigError(
            f"The architecture in {source} must have type \"mlp\" (other architectures are given "
            f"as \"package.module:Class\"). Got {spec.get('type')!r} instead.")
    d_in, hidden, d_out = need("input_dim", int), need("hidden", list), need("output_dim", int)
    act = spec.get("activation", "relu")
    if act not in _ACTIVATIONS:
        raise InvalidConfigError(f"The 'activation' of the architecture in {source} must be one of "
                                 f"{_ACTIVATIONS}. Got {act!r} instead.")
    acts = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "gelu": nn.GELU,
            "elu": nn.ELU, "leaky_relu": nn.LeakyReLU, "softplus": nn.Softplus,
            "identity": nn.Identity}
    for key, value in (("input_dim", d_in), ("output_dim", d_out)):
        if value < 1:
            raise InvalidConfigError(f"The {key!r} of the architecture in {source} must be a positive "
                                     f"integer. Got {value!r} instead.")
    for h in hidden:
        if isinstance(h, bool) or not isinstance(h, int) or h < 1:
            raise InvalidConfigError(f"The 'hidden' widths in {source} must be positive integers. "
                                     f"Got {h!r} instead.")
    from audit.core.limits import check_size

    widths = [d_in, *hidden, d_out]
    n_params = sum((a + 1) * b for a, b in zip(widths, widths[1:]))
    check_size(8 * n_params, f"The architecture in {source} (widths {widths}) has {n_params:,} "
               "parameters; the network and its loaded weights (float32) need", error=InvalidConfigError,
               fix="Check the 'input_dim', 'hidden' and 'output_dim' widths.")
    layers: list[Any] = []
    width = d_in
    for h in hidden:
        layers += [nn.Linear(width, h), acts[act]()]
        width = h
    layers.append(nn.Linear(width, d_out))
    return nn.Sequential(*layers)



def as_adapter(model: Any, *, task: Task = "binary", encoding: Encoding | None = None,
               raw_input: bool = False, threshold: float = 0.5, output: str = "logit") -> ModelAdapter:
    """Wrap a Python object as a :class:`ModelAdapter` (the Python-API entry point).

    Accepts an adapter (returned as is), a torch ``nn.Module``, a fitted scikit-learn estimator
    or Pipeline, or any callable returning probabilities / values.
    """
    if isinstance(model, ModelAdapter):
        return model
    try:
        import torch.nn as nn

        if isinstance(model, nn.Module):
            return TorchAdapter(task=task, module=model, output_kind=output, threshold=threshold,
                                description=f"torch model {type(model).__name__}")
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    if hasattr(model, "predict") and hasattr(model, "fit"):
        return SklearnAdapter(task=task, estimator=model, encoding=encoding, raw=raw_input,
                              threshold=threshold,
                              description=f"scikit-learn {type(model).__name__}")
    if callable(model):
        return CallableAdapter(task=task, fn=model, encoding=encoding, raw=raw_input,
                               threshold=threshold, description=f"function {getattr(model, '__name__', 'model')}")
    raise InvalidConfigError(f"Cannot audit a {type(model).__name__}: pass a torch module, a fitted "
                             "scikit-learn estimator, a callable or a ModelAdapter.")


__all__ = [
    "CallableAdapter",
    "LoadRecord",
    "ModelAdapter",
    "Predictions",
    "PredictionsAdapter",
    "SklearnAdapter",
    "TRUST_CODE_FLAG",
    "TorchAdapter",
    "UNTRUSTED_CONFIG_FLAG",
    "as_adapter",
    "build_mlp",
    "check_outputs",
    "check_width",
    "linear_chain",
    "sha256_file",
]
