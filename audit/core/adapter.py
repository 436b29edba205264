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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from audit.core.dataset import TASKS, AuditData, Encoding, Task
from audit.core.userfiles import load_json
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
            f"{int(np.flatnonzero(bad)[0])}). {finite_hint}")
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


def tensor_digest(state: Mapping[str, Any]) -> str:
    """SHA-256 over the tensors themselves (names, dtypes, shapes, bytes), independent of the
    container file, so re-saving the same weights gives the same digest."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        # numpy has no bfloat16: hash its exact float32 widening instead.
        h.update((t.float() if str(t.dtype) == "torch.bfloat16" else t).numpy().tobytes())
    return h.hexdigest()


def _is_identifier_path(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def _import_object(ref: str, search_dir: str | Path | None = None, *,
                   allow_import: bool = True) -> tuple[Any, list[LoadRecord]]:
    """The object ``"package.module:Class"`` names, and records of the code that was imported
    (the module, and any sibling file of the config's folder that it imported in turn).

    The module is looked up first as a file in ``search_dir`` (the config's folder, so a bundled
    example's ``model.py`` needs no install), then on the Python path. Importing a module runs
    its top-level code: with ``allow_import=False`` (``--untrusted-config``) nothing is imported
    and the reference is refused. A module found in ``search_dir`` is loaded under a name unique
    to its path, so two folders that both define ``model.py`` do not shadow each other in
    ``sys.modules``; the folder is on ``sys.path`` while it loads, so it may import its siblings.
    """
    import importlib.util
    import sys

    module_name, _, attr = ref.partition(":")
    if not _is_identifier_path(module_name) or not _is_identifier_path(attr):
        raise InvalidConfigError(
            "The [model] 'architecture' must be a JSON file or a Python reference like "
            f"\"package.module:Class\" (dotted identifiers only). Got {ref!r} instead.")
    if not allow_import:
        raise ModelLoadError(
            f"The [model] architecture {ref!r} is Python code: importing it runs that module's "
            f"code, and {UNTRUSTED_CONFIG_FLAG} refuses every code import a config names. Audit "
            "the model with a JSON MLP architecture or as ONNX, or drop "
            f"{UNTRUSTED_CONFIG_FLAG} if you trust this config and the code it names.")
    file = None
    if search_dir is not None:
        candidate = Path(search_dir, *module_name.split("."))
        candidate = candidate.with_name(candidate.name + ".py")
        file = candidate if candidate.is_file() else None
    if file is not None:
        unique = f"_audit_arch_{hashlib.sha256(str(file.resolve()).encode()).hexdigest()[:12]}_{module_name.replace('.', '_')}"
        digest = sha256_file(file)
        folder = Path(search_dir).resolve()  # type: ignore[arg-type]
        before = set(sys.modules)
        try:
            module = sys.modules.get(unique)
            if module is None:
                spec = importlib.util.spec_from_file_location(unique, file)
                module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
                sys.modules[unique] = module
                sys.path.insert(0, str(Path(search_dir)))  # type: ignore[arg-type]
                try:
                    spec.loader.exec_module(module)  # type: ignore[union-attr]
                except BaseException:
                    sys.modules.pop(unique, None)
                    raise
                finally:
                    sys.path.remove(str(Path(search_dir)))  # type: ignore[arg-type]
                from audit.execution import ship_by_value

                ship_by_value(unique)  # Ray workers cannot import it by this name
        except Exception as exc:
            raise ModelLoadError(f"Could not import {ref!r} from {str(file)!r}: "
                                 f"{type(exc).__name__}: {exc}.") from None
        records = [LoadRecord("architecture", str(file), digest,
                              f"python module {module_name} from the config's folder",
                              code=f"imported {file.name}: its top-level code ran")]
        for name in sorted(set(sys.modules) - before - {unique}):
            origin = getattr(sys.modules[name], "__file__", None)
            if origin and Path(origin).is_file() and Path(origin).resolve().is_relative_to(folder):
                records.append(LoadRecord("architecture", origin, sha256_file(origin),
                                          f"python module {name}, imported by {file.name}",
                                          code=f"imported by {file.name}: its top-level code ran"))
    else:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # ImportError, or whatever the module's own code raised
            fix = (f"Name the module without its suffix ('{module_name[:-3]}:{attr}')"
                   if module_name.endswith(".py") else
                   f"Put {module_name.replace('.', '/')}.py beside the config, or install the "
                   "package that defines it")
            raise ModelLoadError(f"Could not import the [model] architecture {ref!r}: "
                                 f"{type(exc).__name__}: {exc}. {fix}.") from None
        origin = getattr(module, "__file__", None)
        is_file = bool(origin) and Path(origin).is_file()
        records = [LoadRecord("architecture", str(origin) if is_file else f"<module {module_name}>",
                              sha256_file(origin) if is_file else "",  # type: ignore[arg-type]
                              f"python module {module_name} (installed)",
                              code=f"imported {module_name} from the Python path: its code ran")]
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            where = str(file) if file is not None else f"module {module_name!r}"
            raise ModelLoadError(f"Could not import {ref!r}: {where} defines no {attr!r}.")
        obj = getattr(obj, part)
    return obj, records


def _check_module_class(obj: Any, ref: str) -> None:
    """Only ``torch.nn.Module`` subclasses are constructed: a function or any other callable a
    config names (``subprocess:run``, ``os:system``, ``builtins:eval``) is refused uncalled."""
    import torch.nn as nn

    if isinstance(obj, type) and issubclass(obj, nn.Module):
        return
    kind = (f"the class {obj.__module__}.{obj.__qualname__}" if isinstance(obj, type)
            else f"a {type(obj).__name__}")
    raise ModelLoadError(
        f"The [model] architecture {ref!r} is {kind}, not a torch.nn.Module subclass; audit-suite "
        "constructs only nn.Module subclasses and called nothing. Name the class of your network.")


def _check_plain_args(value: Any, where: str = "[model.init_args]") -> None:
    """Constructor arguments are plain data (what TOML can hold), never objects or callables."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain_args(v, f"{where}[{i}]")
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidConfigError(f"The keys of {where} must be strings. Got {k!r} instead.")
            _check_plain_args(v, f"{where}.{k}")
        return
    raise InvalidConfigError(f"{where} must be plain data (strings, numbers, booleans, lists, "
                             f"tables). Got a {type(value).__name__} instead.")


def _is_torchscript(path: Path) -> bool:
    """Whether a file is a TorchScript archive (a zip with compiled code), read without loading."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
    return any(n.endswith("constants.pkl") or "/code/" in n for n in names)


# Safe loaders with published code-execution bypasses before these versions: below them, a file
# read by that loader is treated as code (needs --trust-code).
SAFE_LOADER_VERSIONS = {
    "torch": ((2, 10), "torch.load(weights_only=True)", "CVE-2025-32434, CVE-2026-24747"),
    "skops": ((0, 12), "skops.io.load", "CVE-2025-54412"),
}


def _require_safe_loader(module: Any, path: Path, trust_code: bool) -> str | None:
    """Refuse (without ``trust_code``) a file whose loader version has known bypasses; returns
    the code note for the record when the file is loaded anyway."""
    import re

    name = module.__name__.split(".")[0]
    minimum, loader, cves = SAFE_LOADER_VERSIONS[name]
    version = str(getattr(module, "__version__", ""))
    numbers = tuple(int(x) for x in re.findall(r"\d+", version)[:2])
    if len(numbers) == 2 and numbers >= minimum:
        return None
    need = ".".join(map(str, minimum))
    if not trust_code:
        raise ModelLoadError(
            f"{str(path)!r} would be read by {loader} of {name} {version or '(unknown version)'}, "
            f"which has known code-execution bypasses ({cves}; fixed in {name} {need}). Upgrade "
            f"(pip install '{name}>={need}'), use safetensors, or pass {TRUST_CODE_FLAG} if you "
            "trust the file.")
    return f"read by {name} {version}, whose safe loader has known bypasses ({cves})"


def _refuse_torchscript(path: Path, trust_code: bool) -> None:
    if not trust_code:
        raise ModelLoadError(
            f"{str(path)!r} is TorchScript, a compiled program: loading it runs code its author "
            "put in it (e.g. __setstate__). Save the weights with safetensors and set [model] "
            f"architecture, or pass {TRUST_CODE_FLAG} if you trust the file's author "
            "(recorded in the report).")


def load_state_dict(path: Path, *, trust_code: bool = False,
                    trust_pickle: bool | None = None) -> tuple[dict[str, Any], LoadRecord]:
    """Read torch weights without executing code (safetensors or weights-only torch.load).

    Only when the weights-only loader refuses the file and ``trust_code`` is set is it
    unpickled in full (which runs any code in it); the record says so.
    """
    import torch

    trust_code = trust_code or bool(trust_pickle)
    digest = sha256_file(path)
    code = None
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"The weights file {str(path)!r} is not a readable safetensors "
                                 f"file ({exc}). Is it truncated or another format?") from None
        loader = "safetensors"
    elif _is_torchscript(path):
        _refuse_torchscript(path, trust_code)
        try:
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
        except Exception as exc:
            raise ModelLoadError(f"Could not load the TorchScript weights {str(path)!r}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else exc!r}.") from None
        loader = f"torch.jit.load [{TRUST_CODE_FLAG}]"
        code = "TorchScript program: its compiled code ran at load"
    else:
        loader = "torch.load(weights_only=True)"
        code = _require_safe_loader(torch, path, trust_code)
        try:
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:
                refused = "weights_only" in str(exc).lower() or "unpickl" in str(exc).lower()
                if not (trust_code and refused):
                    raise
                state = torch.load(path, map_location="cpu", weights_only=False)
                loader = f"torch.load(weights_only=False) [{TRUST_CODE_FLAG}]"
                code = "unpickled in full: any code in the pickle ran"
        except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError...
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            hint = (" It contains objects beyond plain tensors (code, when unpickled); re-save the "
                    f"weights with safetensors, or pass {TRUST_CODE_FLAG} if you trust the file's "
                    "author." if "weights_only" in str(exc).lower() or "unpickl" in str(exc).lower() else "")
            if "zip archive" in msg or isinstance(exc, EOFError):
                # torch's own text for this goes on about miniz internals; say what it means
                msg = f"{type(exc).__name__}: the file is truncated or not a torch save file"
                hint = " Re-save or re-download the weights (safetensors is preferred)."
            raise ModelLoadError(f"Could not load the weights file {str(path)!r}: {msg}.{hint}") from None
        if hasattr(state, "state_dict") and not isinstance(state, Mapping):
            state = state.state_dict()
        if not isinstance(state, Mapping):
            raise ModelLoadError(f"The weights file {str(path)!r} does not hold a state dict of tensors.")
    return dict(state), LoadRecord("weights", str(path), digest, loader, tensor_digest(state),
                                   code is not None, code)


def load_torch_model(path: Path, *, architecture: str | Path | Mapping[str, Any] | None,
                     task: Task, output: str = "logit", threshold: float = 0.5,
                     trust_code: bool = False, init_args: Mapping[str, Any] | None = None,
                     search_dir: str | Path | None = None, allow_import: bool = True,
                     trust_pickle: bool | None = None) -> TorchAdapter:
    """Load a torch model: TorchScript (only with ``trust_code``), or an architecture plus a
    state dict.

    A ``"module:Class"`` architecture whose module file lies in ``search_dir`` (the config's
    folder) is loaded from there; otherwise it is imported from the Python path. Either import
    runs the module's code (refused with ``allow_import=False``), and only a ``torch.nn.Module``
    subclass is then constructed.
    """
    import torch

    trust_code = trust_code or bool(trust_pickle)
    records = []
    if architecture is None:
        if path.suffix in (".safetensors",):
            raise InvalidConfigError(
                f"Weights {str(path)!r} need an architecture: set 'architecture' in [model] to a "
                "JSON MLP spec or \"package.module:Class\".")
        if not _is_torchscript(path):
            raise ModelLoadError(
                f"{str(path)!r} is not a TorchScript archive. For plain weights set 'architecture' "
                "in [model].")
        _refuse_torchscript(path, trust_code)
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:
            raise ModelLoadError(
                f"{str(path)!r} is not a loadable TorchScript file ({str(exc).splitlines()[0] if str(exc) else exc!r}). "
                "For plain weights set 'architecture' in [model].") from None
        records.append(LoadRecord("model", str(path), sha256_file(path),
                                  f"torch.jit.load [{TRUST_CODE_FLAG}]",
                                  tensor_digest(dict(module.state_dict())), True,
                                  "TorchScript program: its compiled code ran at load"))
        return TorchAdapter(task=task, module=module, output_kind=output, threshold=threshold,
                            description=f"TorchScript model {path.name}", loaded=tuple(records))

    if isinstance(architecture, Mapping):
        module = build_mlp(architecture)
        output = architecture.get("output", output)
        arch_name = "inline MLP spec"
    elif str(architecture).endswith(".json"):
        arch_path = Path(architecture)
        spec = load_json(arch_path, "architecture file")
        module = build_mlp(spec, source=str(arch_path))
        output = spec.get("output", output)
        records.append(LoadRecord("architecture", str(arch_path), sha256_file(arch_path), "json"))
        arch_name = arch_path.name
    else:
        _check_plain_args(dict(init_args or {}))
        cls, imported = _import_object(str(architecture), search_dir, allow_import=allow_import)
        records.extend(imported)
        _check_module_class(cls, str(architecture))
        try:
            module = cls(**dict(init_args or {}))
        except TypeError as exc:
            raise ModelLoadError(f"Could not build {architecture!r}: {exc}. Set its constructor "
                                 "arguments in [model.init_args].") from None
        arch_name = str(architecture)

    state, rec = load_state_dict(path, trust_code=trust_code)
    records.append(rec)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()
        detail = "; ".join(line.strip() for line in first[:3])
        raise ModelLoadError(f"The weights in {str(path)!r} do not fit the architecture "
                             f"{arch_name}: {detail}") from None
    return TorchAdapter(task=task, module=module, output_kind=output, threshold=threshold,
                        description=f"torch model {arch_name} + {path.name}", loaded=tuple(records))


# --------------------------------------------------------------------------------------------
# scikit-learn files
# --------------------------------------------------------------------------------------------


def load_sklearn_model(path: Path, *, task: Task, encoding: Encoding | None, raw: bool,
                       threshold: float = 0.5, trust_code: bool = False,
                       trusted_types: tuple[str, ...] = (), allow_trusted_types: bool = True,
                       trust_pickle: bool | None = None) -> SklearnAdapter:
    """Load a scikit-learn model: skops by default, pickle/joblib only with ``trust_code``.

    skops builds only types on its safe list; types beyond it run their own code when built,
    so they need ``[model] trusted_types`` (refused with ``allow_trusted_types=False``, i.e.
    ``--untrusted-config``) or ``trust_code``.
    """
    trust_code = trust_code or bool(trust_pickle)
    digest = sha256_file(path)
    suffix = path.suffix.lower()
    code = None
    unknown: list[str] = []
    if suffix == ".skops":
        import skops.io as sio

        import skops

        code = _require_safe_loader(skops, path, trust_code)
        try:
            untrusted = sio.get_untrusted_types(file=str(path))
        except Exception as exc:
            raise ModelLoadError(f"{str(path)!r} is not a readable skops file ({exc}).") from None
        if trusted_types and not allow_trusted_types:
            raise ModelLoadError(
                f"[model] trusted_types ({', '.join(trusted_types[:5])}) lets the config trust code "
                f"in {str(path)!r}, and {UNTRUSTED_CONFIG_FLAG} refuses that. Remove trusted_types, "
                f"or drop {UNTRUSTED_CONFIG_FLAG} if you trust this config.")
        unknown = sorted(set(untrusted) - set(trusted_types))
        if unknown and not trust_code:
            raise ModelLoadError(
                f"The skops file {str(path)!r} contains types that are not trusted by default: "
                f"{', '.join(unknown[:5])}. Building them runs their code: if you trust them, list "
                f"them in [model] trusted_types, or pass {TRUST_CODE_FLAG}.")
        estimator = sio.load(str(path), trusted=list(untrusted))
        loader = f"skops (trusted extra types: {', '.join(untrusted) or 'none'})"
        if untrusted:
            via = "[model] trusted_types" if not unknown else TRUST_CODE_FLAG
            code = "; ".join(filter(None, [code, f"built types outside skops' safe list ({via}): "
                                                 f"{', '.join(untrusted)}"]))
    elif suffix in (".pkl", ".pickle", ".joblib"):
        if not trust_code:
            raise ModelLoadError(
                f"{str(path)!r} is a pickle, and loading a pickle runs any code its author put in "
                f"it. Re-save the model with skops (skops.io.dump), or pass {TRUST_CODE_FLAG} if "
                "you trust the file.")
        import joblib

        try:
            estimator = joblib.load(path)
        except Exception as exc:
            raise ModelLoadError(f"Could not unpickle {str(path)!r}: {exc}.") from None
        loader = f"joblib.load [{TRUST_CODE_FLAG}]"
        code = "unpickled: any code in the pickle ran"
    else:
        raise ModelLoadError(f"Unknown scikit-learn model format {suffix!r} for {str(path)!r}; "
                             f"use .skops (or .pkl/.joblib with {TRUST_CODE_FLAG}).")
    if not hasattr(estimator, "predict"):
        raise ModelLoadError(f"{str(path)!r} holds a {type(estimator).__name__}, not a fitted estimator.")
    # trusted_pickle: the load needed trust_code (types the config itself listed do not)
    needed = suffix != ".skops" or bool(unknown) or "known bypasses" in (code or "")
    rec = LoadRecord("model", str(path), digest, loader, trusted_pickle=needed, code=code)
    return SklearnAdapter(task=task, estimator=estimator, encoding=encoding, raw=raw,
                          threshold=threshold, loaded=(rec,),
                          description=f"scikit-learn {type(estimator).__name__} ({path.name})")


@dataclass(frozen=True)
class ModelSpec:
    """The ``[model]`` table of the config."""

    path: str | None = None
    architecture: str | dict[str, Any] | None = None
    encoding: str | None = None
    predictions: str | None = None
    task: Task = "binary"
    threshold: float = 0.5
    output: str = "logit"
    raw_input: bool = False
    # "xgboost" | "lightgbm": read path with that library (default: by suffix, audit.core.boosters)
    format: str | None = None
    # the model's class labels in output order (boosters, whose files do not name them)
    classes: tuple[str, ...] | None = None
    trusted_types: tuple[str, ...] = ()
    init_args: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    # The config file's folder: "module:Class" architectures are looked up there first.
    base_dir: str | None = None


def check_trust_flags(*, trust_code: bool, untrusted_config: bool) -> None:
    """The two trust flags contradict each other: refuse them together."""
    if untrusted_config and trust_code:
        raise InvalidConfigError(
            f"{UNTRUSTED_CONFIG_FLAG} and {TRUST_CODE_FLAG} cannot be combined: an untrusted config "
            "also names untrusted model files. Drop one of them.")


def load_model(spec: ModelSpec, *, encoding: Encoding | None, trust_code: bool = False,
               untrusted_config: bool = False, trust_pickle: bool | None = None) -> ModelAdapter:
    """Load the model a :class:`ModelSpec` describes (paths already resolved).

    Nothing in a model file runs unless ``trust_code`` (the CLI's ``--trust-code``) allows it:
    pickle/joblib, TorchScript and torch pickles beyond plain tensors are refused otherwise, and
    every load that ran code says so in its :class:`LoadRecord` (``code``). A ``"module:Class"``
    architecture is imported (its module's code runs) unless ``untrusted_config`` refuses every
    code import the config names, and only a ``torch.nn.Module`` subclass is constructed.
    ``trust_pickle`` is the former name of ``trust_code``.

    Examples
    --------
    >>> load_model(ModelSpec(path="model.pkl"), encoding=None)  # doctest: +SKIP
    Traceback (most recent call last):
    audit.errors.ModelLoadError: 'model.pkl' is a pickle, ... pass --trust-code if you trust the file.
    """
    trust_code = trust_code or bool(trust_pickle)
    check_trust_flags(trust_code=trust_code, untrusted_config=untrusted_config)
    if spec.predictions is not None:
        return PredictionsAdapter(task=spec.task, threshold=spec.threshold, column=spec.predictions)
    if spec.path is None:
        raise InvalidConfigError("[model] needs either 'path' (a model file) or 'predictions' "
                                 "(a column of precomputed predictions).")
    path = Path(spec.path)
    if not path.is_file():
        raise ModelLoadError(f"The model file {str(path)!r} does not exist. Check [model] path "
                             "(relative paths are resolved against the config file's folder).")
    suffix = path.suffix.lower()
    from audit.core.boosters import booster_format, load_booster

    fmt = booster_format(path, spec.format)
    if fmt is not None:  # XGBoost / LightGBM files are data: no trust needed
        return load_booster(path, fmt=fmt, task=spec.task, threshold=spec.threshold,
                            classes=spec.classes, raw_input=spec.raw_input)
    if suffix in (".skops", ".pkl", ".pickle", ".joblib"):
        return load_sklearn_model(path, task=spec.task, encoding=encoding, raw=spec.raw_input,
                                  threshold=spec.threshold, trust_code=trust_code,
                                  trusted_types=spec.trusted_types,
                                  allow_trusted_types=not untrusted_config)
    if spec.raw_input and suffix not in (".skops", ".pkl", ".pickle", ".joblib"):
        raise InvalidConfigError(
            f"[model] raw_input = true applies only to scikit-learn models (and Python functions), "
            f"which can take a data frame; {str(path)!r} reads the encoded numeric matrix. Remove "
            "raw_input from [model].")
    if suffix in (".safetensors", ".pt", ".pth", ".bin", ".ts", ".torchscript"):
        return load_torch_model(path, architecture=spec.architecture, task=spec.task,
                                output=spec.output, threshold=spec.threshold,
                                trust_code=trust_code, init_args=spec.init_args,
                                search_dir=spec.base_dir, allow_import=not untrusted_config)
    if suffix == ".onnx":
        from audit.core.onnx import load_onnx_model

        return load_onnx_model(path, task=spec.task, output=spec.output, threshold=spec.threshold)
    raise ModelLoadError(f"Unknown model format {suffix!r} for {str(path)!r}. Supported: .safetensors/"
                         ".pt/.pth (torch weights + architecture), .pt/.ts (TorchScript, with "
                         f"{TRUST_CODE_FLAG}), .skops (scikit-learn), .onnx (onnxruntime), "
                         ".json/.ubj (XGBoost), .txt (LightGBM; or set [model] format), "
                         f".pkl/.joblib (with {TRUST_CODE_FLAG}).")




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
    "ModelSpec",
    "Predictions",
    "PredictionsAdapter",
    "SklearnAdapter",
    "TRUST_CODE_FLAG",
    "TorchAdapter",
    "UNTRUSTED_CONFIG_FLAG",
    "check_trust_flags",
    "as_adapter",
    "build_mlp",
    "check_outputs",
    "check_width",
    "linear_chain",
    "load_model",
    "sha256_file",
    "tensor_digest",
]
