"""Gradient-boosted trees in their own formats: XGBoost (JSON / UBJSON) and LightGBM (text).

These files are data, not programs: XGBoost's ``Booster.load_model`` parses JSON or UBJSON in
C++ into tree arrays, and LightGBM's ``LGBM_BoosterLoadModelFromString`` parses the text model
in C++, its Python side only ``json.loads`` the ``pandas_categorical`` line and the parameter
block. Neither runs anything the file's author wrote, so they need no ``--trust-code`` and no
trusted-types list, and they load under ``--untrusted-config`` too. (A model saved with
``pickle`` / ``joblib`` is a program: save it with ``save_model`` instead.)

Which loader reads the file
---------------------------
``[model] format = "xgboost" | "lightgbm"`` says it outright (any file name). Without it the
suffix decides: ``.json`` and ``.ubj`` are XGBoost, ``.txt`` is LightGBM (what each library's
``save_model`` writes by convention); no content is guessed at.

A crafted or damaged file can still crash the C++ parsers (measured: an empty XGBoost buffer
and some truncated LightGBM files abort the process; deeply nested JSON overflows the stack), so
the file is first parsed and scored on a few rows in a child Python process with the memory
budget as its address-space limit: a crash or a hang there is a clear error (exit 2), never
the audit's own crash.

Class labels
------------
Neither file names its classes (XGBoost's JSON holds ``num_class`` only; a LightGBM file trained
on codes 0..k-1 likewise). The booster's output ``k`` is the ``k``-th of ``[model] classes``
when that is set, else the ``k``-th of the data's label values in sorted order -- numerically
when every label is a number, otherwise as text -- which is the order ``LabelEncoder`` (and
``XGBClassifier``) gives. The adapter reorders its probability columns to the audit's class
order (for binary: negative, positive) when it is bound to the data (:meth:`bind`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from audit.core.adapter import LoadRecord, ModelAdapter, sha256_file
from audit.core.dataset import AuditData, Task
from audit.errors import (CapabilityError, DataValidationError, InvalidConfigError, MissingDependencyError,
                          ModelLoadError)

FORMATS = ("xgboost", "lightgbm")
SUFFIXES = {".json": "xgboost", ".ubj": "xgboost", ".txt": "lightgbm"}
_NAMES = {"xgboost": "XGBoost", "lightgbm": "LightGBM"}
_BATCH = 65536
_HOW = {"xgboost": "booster.save_model(\"model.json\") or \"model.ubj\"",
        "lightgbm": "booster.save_model(\"model.txt\")"}

# Objectives whose output is understood, by task. "margin" outputs go through the link named.
_XGB_BINARY = {"binary:logistic": "sigmoid", "reg:logistic": "sigmoid", "binary:logitraw": "sigmoid"}
_XGB_MULTI = {"multi:softprob": "softmax", "multi:softmax": "softmax"}
_XGB_REGRESSION = ("reg:squarederror", "reg:squaredlogerror", "reg:pseudohubererror", "reg:absoluteerror",
                   "reg:logistic", "reg:gamma", "reg:tweedie", "count:poisson")
_LGB_BINARY = ("binary", "cross_entropy", "xentropy")
_LGB_MULTI = ("multiclass", "softmax")
_LGB_REGRESSION = ("regression", "regression_l2", "l2", "mean_squared_error", "mse", "regression_l1", "l1",
                   "mean_absolute_error", "mae", "huber", "fair", "poisson", "quantile", "mape",
                   "mean_absolute_percentage_error", "gamma", "tweedie", "cross_entropy", "xentropy")


def booster_format(path: Path, fmt: str | None) -> str | None:
    """``"xgboost"`` / ``"lightgbm"`` for a booster file (by ``[model] format``, else by suffix),
    None for other model files."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise InvalidConfigError(f"The [model] 'format' must be one of {list(FORMATS)}. Got {fmt!r} "
                                     "instead. Other formats are chosen by the file's suffix.")
        return fmt
    return SUFFIXES.get(path.suffix.lower())


# The child process: parse the file from stdin with the library and score a few rows (zeros,
# ones, large values) so that tree traversal is exercised too. Isolated mode (-I): nothing from
# the working directory or PYTHON* variables is imported.
_PROBE = r"""
import sys
limit = int(sys.argv[2])
try:
    import resource
    if limit > 0:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
except (ImportError, ValueError, OSError):  # no address-space limits on this platform
    pass
# the libraries import these only if present (for data frames and their scikit-learn wrappers);
# the probe needs none of them, and they are most of the start-up time (measured ~4x)
for name in ("pandas", "sklearn", "scipy.stats", "pyarrow", "polars", "dask", "cudf", "cupy",
             "matplotlib", "graphviz"):
    sys.modules[name] = None
import numpy as np
blob = sys.stdin.buffer.read()
if sys.argv[1] == "xgboost":
    import xgboost
    b = xgboost.Booster()
    b.load_model(bytearray(blob))
    n = b.num_features()
    predict = lambda X: b.inplace_predict(X, predict_type="margin")
else:
    import lightgbm
    b = lightgbm.Booster(model_str=blob.decode("utf-8"))
    n = b.num_feature()
    predict = lambda X: b.predict(X, raw_score=True, num_threads=1)
if 0 < n <= 100000:
    X = np.zeros((4, n), np.float32)
    X[1], X[2], X[3] = 1, -3e38, 3e38
    predict(X)
print("ok")
"""
PROBE_SECONDS = 120


def _probe(fmt: str, blob: bytes, path: Path) -> None:
    """Parse and score the file in a child process; raise ModelLoadError if that fails."""
    import os
    import signal
    import subprocess
    import sys

    from audit.core.limits import memory_budget

    name = _NAMES[fmt]
    budget = memory_budget()[0]
    # the child's address space holds the interpreter and the library (~1 GB mapped) too
    limit = max(budget, 2 * 1024**3)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(OMP_NUM_THREADS="1")
    try:
        done = subprocess.run([sys.executable, "-I", "-c", _PROBE, fmt, str(limit)], input=blob,
                              capture_output=True, timeout=PROBE_SECONDS, env=env)
    except subprocess.TimeoutExpired:
        raise ModelLoadError(f"Reading {str(path)!r} with {name} took more than {PROBE_SECONDS} s and was "
                             "stopped. Is it a damaged or hostile file? Re-save the model.") from None
    if done.returncode == 0 and done.stdout.strip().endswith(b"ok"):
        return
    if done.returncode < 0:
        sig = signal.Signals(-done.returncode).name if -done.returncode in signal.valid_signals() else str(-done.returncode)
        what = f"the {name} library crashed reading it ({sig})"
    else:
        what = _library_message(done.stderr.decode("utf-8", "replace")) or f"exit status {done.returncode}"
        if "MemoryError" in what or "bad_alloc" in what:
            what = f"reading it needed more than the memory budget ({what})"
        elif "terminate called" in what:
            what = f"the {name} library aborted reading it"
    raise ModelLoadError(
        f"{str(path)!r} is not a readable {name} model file: {what}. Is it truncated, damaged or another "
        f"format? Re-save the model ({_HOW[fmt]}), or set [model] format if it is the other library's.")


def _library_message(text: str) -> str:
    """The informative line of an XGBoost / LightGBM / Python error text (not its stack trace)."""
    import re

    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith(("xgboost.core.XGBoostError:", "lightgbm.basic.LightGBMError:")):
            ln = ln.split(":", 1)[1].strip()
            # "[09:10:00] /path/src/file.cc:123: Check failed: ..." -> "Check failed: ..."
            return re.sub(r"^\[[0-9:]+\]\s+\S+:\d+:\s*", "", ln).rstrip(" :")[:300]
    for ln in reversed(lines):
        if re.match(r"^[A-Za-z_.]*(Error|Exception)\b", ln) or ln.startswith("terminate called"):
            return ln[:300]
    return lines[-1][:300] if lines else ""


def _library(fmt: str) -> Any:
    try:
        if fmt == "xgboost":
            import xgboost as lib
        else:
            import lightgbm as lib
    except ImportError:
        raise MissingDependencyError(
            f"{_NAMES[fmt]} models need the {fmt} package, which is not installed: pip install {fmt}"
            f"{' (or xgboost-cpu)' if fmt == 'xgboost' else ''}.") from None
    return lib


@dataclass
class BoosterAdapter(ModelAdapter):
    """An XGBoost or LightGBM booster loaded from its own file format.

    ``estimator`` is the library's fitted ``Booster`` (what shap's ``TreeExplainer`` reads;
    capability ``"trees"``); its output column ``class_order[j]`` is the audit's class ``j``.
    The booster is not refittable from the file (its training parameters are not all saved), so
    it has no ``"sklearn"`` capability.

    Examples
    --------
    >>> adapter = load_booster(Path("model.json"), fmt="xgboost", task="binary")  # doctest: +SKIP
    """

    estimator: Any = None
    library: str = ""
    objective: str = ""
    # how the booster's output becomes scores: "sigmoid" / "softmax" of XGBoost's margins,
    # "probability" (LightGBM's own transformed output), "identity" (regression values)
    link: str = "identity"
    model_classes: tuple[str, ...] | None = None   # [model] classes, in the booster's output order
    class_order: tuple[int, ...] | None = None     # set by bind(): booster column of audit class j
    feature_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        self.capabilities = frozenset({"predict", "proba", "predictions", "trees"})
        super().__post_init__()

    def bind(self, data: AuditData) -> None:
        """Match the booster's outputs to the audit's classes and its feature names (when the
        file has them) to the encoded columns."""
        if self.feature_names is not None and len(self.feature_names) == len(data.columns) \
                and tuple(self.feature_names) != tuple(data.columns):
            bad = next(i for i, (a, b) in enumerate(zip(self.feature_names, data.columns)) if a != b)
            raise DataValidationError(
                f"{self.description} was trained on columns named {list(self.feature_names[:6])}"
                f"{'...' if len(self.feature_names) > 6 else ''}, but the encoded data's columns are "
                f"{list(data.columns[:6])}{'...' if len(data.columns) > 6 else ''} (first difference at "
                f"column {bad}: {self.feature_names[bad]!r} vs {data.columns[bad]!r}). Use the encoding "
                "JSON the model was trained with (set [model] encoding).")
        if self.task == "regression" or data.classes is None:
            return
        audit = tuple(data.classes)
        given = self.model_classes
        model = given if given is not None else _sorted_labels(audit)
        where = "[model] classes" if given is not None else "the data's labels in sorted order"
        if len(model) != self.n_classes or set(model) != set(audit):
            raise DataValidationError(
                f"{self.description} has {self.n_classes} outputs, read as the classes {list(model)} "
                f"({where}), but the target's classes are {list(audit)}. List the booster's classes in "
                "output order with [model] classes = [...].")
        self.class_order = tuple(model.index(c) for c in audit)

    def _margins(self, X: np.ndarray) -> np.ndarray:
        if self.library == "xgboost":
            out = self.estimator.inplace_predict(X, predict_type="margin" if self.link != "identity" else "value")
        else:  # LightGBM's own output transform (its sigmoid parameter included)
            out = self.estimator.predict(X, num_threads=1)
        return np.asarray(out, dtype=float)

    def _scores(self, X: np.ndarray) -> np.ndarray:
        if self.task != "regression" and self.class_order is None:
            raise CapabilityError(f"{self.description} is not yet matched to the data's classes: "
                                  "call bind(data) (run_audit and audit_model do) before scoring.")
        parts = []
        for start in range(0, len(X), _BATCH):
            chunk = np.ascontiguousarray(X[start:start + _BATCH], dtype=np.float32)
            try:
                parts.append(self._margins(chunk).reshape(len(chunk), -1))
            except Exception as exc:  # XGBoostError / LightGBMError on inputs the booster refuses
                first = str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else type(exc).__name__
                raise ModelLoadError(f"{self.description} failed on input of shape {chunk.shape}: "
                                     f"{first}. Check that the encoding JSON is the one the model was "
                                     "trained with.") from None
        z = np.vstack(parts) if parts else np.zeros((0, 1))
        if self.link == "sigmoid":
            p = 1.0 / (1.0 + np.exp(-z[:, -1]))
            z = np.column_stack([1.0 - p, p])
        elif self.link == "probability" and z.shape[1] == 1:
            z = np.column_stack([1.0 - z[:, 0], z[:, 0]])
        elif self.link == "softmax":
            e = np.exp(z - z.max(axis=1, keepdims=True))
            z = e / e.sum(axis=1, keepdims=True)
        if self.class_order is not None and self.task != "regression":
            z = z[:, list(self.class_order)]
        return z


def _sorted_labels(labels: tuple[str, ...]) -> tuple[str, ...]:
    """Labels in the order LabelEncoder gives them: numerically when all are numbers."""
    try:
        return tuple(sorted(labels, key=float))
    except ValueError:
        return tuple(sorted(labels))


def load_booster(path: Path, *, fmt: str, task: Task, threshold: float = 0.5,
                 classes: tuple[str, ...] | None = None, raw_input: bool = False) -> BoosterAdapter:
    """Load an XGBoost (JSON / UBJSON) or LightGBM (text) model file; nothing in it runs."""
    name = _NAMES[fmt]
    if raw_input:
        raise InvalidConfigError(f"[model] raw_input = true does not apply to {name} models: a booster "
                                 "reads the encoded numeric matrix. Remove raw_input.")
    lib = _library(fmt)
    blob = path.read_bytes()
    digest = sha256_file(path)
    _probe(fmt, blob, path)
    try:
        if fmt == "xgboost":
            booster, objective, n_out, n_features, names, used = _read_xgboost(lib, blob)
        else:
            booster, objective, n_out, n_features, names, used = _read_lightgbm(lib, blob)
    except ModelLoadError:
        raise
    except Exception as exc:  # XGBoostError, LightGBMError, KeyError, ... (the probe passed)
        first = _library_message(f"{type(exc).__module__}.{type(exc).__name__}: {exc}") or type(exc).__name__
        raise ModelLoadError(
            f"{str(path)!r} is not a readable {name} model file: {first}. Re-save the model "
            f"({_HOW[fmt]}).") from None
    link = _link(fmt, objective, task, n_out, path)
    n_classes = n_out if task == "multiclass" else 2
    if classes is not None and task != "regression" and len(classes) != n_classes:
        raise InvalidConfigError(f"[model] classes lists {len(classes)} labels but {str(path)!r} has "
                                 f"{n_classes} classes. List one label per booster output, in order.")
    rec = LoadRecord("model", str(path), digest, f"{fmt} {lib.__version__} (model file format; no code; {used})")
    return BoosterAdapter(task=task, threshold=threshold, n_classes=n_classes, n_inputs=n_features,
                          loaded=(rec,), description=f"{name} model {path.name} ({objective}; {used})",
                          estimator=booster, library=fmt, objective=objective, link=link,
                          model_classes=classes if task != "regression" else None,
                          feature_names=names)


def _read_xgboost(xgb: Any, blob: bytes) -> tuple[Any, str, int, int, tuple[str, ...] | None, str]:
    import json
    import re

    booster = xgb.Booster()
    booster.load_model(bytearray(blob))   # JSON or UBJSON, told apart by its first byte
    config = json.loads(booster.save_config())
    learner = config["learner"]
    objective = str(learner["objective"]["name"])
    n_out = max(1, int(learner["learner_model_param"].get("num_class", "0") or 0))
    n_features = int(booster.num_features())
    names = tuple(booster.feature_names) if booster.feature_names else None
    rounds = int(booster.num_boosted_rounds())
    used = f"all {rounds} boosting rounds"
    best = booster.attr("best_iteration")
    if best is not None:
        # saved after early stopping: XGBClassifier.load_model (the deployed model) predicts with
        # iteration_range=(0, best_iteration + 1); the slice is that model for scoring and shap alike
        if not re.fullmatch(r"[0-9]{1,9}", best, re.ASCII) or int(best) >= rounds:
            raise ModelLoadError(f"The XGBoost model's best_iteration {best!r} is not a round of its "
                                 f"{rounds} boosting rounds. Re-save the model.")
        booster = booster[: int(best) + 1]
        used = (f"{int(best) + 1} of {rounds} boosting rounds: best_iteration = {best} from early "
                "stopping, as XGBClassifier uses")
    if booster.feature_types and any(t == "c" for t in booster.feature_types):
        raise ModelLoadError("The XGBoost model uses categorical splits (enable_categorical), which "
                             "read pandas category codes, not the audit's encoded columns. Train it on "
                             "the encoded matrix.")
    return booster, objective, n_out, n_features, names, used


def _read_lightgbm(lgb: Any, blob: bytes) -> tuple[Any, str, int, int, tuple[str, ...] | None, str]:
    text = blob.decode("utf-8")
    if not text.startswith("tree\n") and not text.startswith("tree\r\n"):
        raise ValueError("a LightGBM text model starts with the line 'tree'")
    header = {}
    for line in text.splitlines()[:64]:
        key, sep, value = line.partition("=")
        if sep:
            header.setdefault(key.strip(), value.strip())
        if line.startswith("Tree="):
            break
    booster = lgb.Booster(model_str=text)
    objective = header.get("objective", "").split(" ")[0]
    n_out = int(booster.num_model_per_iteration())
    names = tuple(booster.feature_name()) or None
    # LightGBM names unnamed columns Column_0, Column_1, ...: not names to compare
    if names and all(n == f"Column_{i}" for i, n in enumerate(names)):
        names = None
    # the text format stores no best_iteration: a loaded Booster's predict uses every saved tree
    used = f"all {booster.current_iteration()} boosting rounds saved"
    return booster, objective, n_out, int(booster.num_feature()), names, used


def _link(fmt: str, objective: str, task: str, n_out: int, path: Path) -> str:
    name = _NAMES[fmt]
    if fmt == "xgboost":
        binary, multi, regression = _XGB_BINARY, _XGB_MULTI, _XGB_REGRESSION
    else:
        binary = dict.fromkeys(_LGB_BINARY, "probability")
        multi = dict.fromkeys(_LGB_MULTI, "probability")
        regression = _LGB_REGRESSION
    if task == "binary" and objective in binary and n_out == 1:
        return binary[objective]
    if objective in multi and ((task == "binary" and n_out == 2) or (task == "multiclass" and n_out > 2)):
        return multi[objective]
    if task == "regression" and objective in regression and n_out == 1:
        return "identity"
    kinds = {"binary": list(binary), "multiclass": list(multi), "regression": list(regression)}
    fits = [t for t, objs in kinds.items() if objective in objs]
    hint = (f" Set [model] task = \"{fits[0]}\" if that is what the model does." if fits and fits[0] != task
            else "")
    raise ModelLoadError(
        f"The {name} model {str(path)!r} has objective {objective!r} with {n_out} output(s), which does "
        f"not give {task} predictions (supported for {task}: {', '.join(kinds[task])}).{hint}")


__all__ = ["BoosterAdapter", "FORMATS", "booster_format", "load_booster"]
