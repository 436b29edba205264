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
and some truncated LightGBM files abort the process; deeply nested JSON overflows the stack; a
LightGBM child index past its leaves segfaults or silently reads other memory), so: the file's
size is checked against the memory budget before it is read; every LightGBM ``Tree=`` block is
validated in Python (:func:`_check_lightgbm_text`); and the file is parsed, its XGBoost trees
checked, and scored on a few synthetic rows (at load) and on every audited row (at :meth:`bind`)
in a child Python process whose address space is its start-up size plus the memory budget: a
crash or a hang there is a clear error (exit 2), never the audit's own crash.

Early stopping
--------------
XGBoost saves ``best_iteration`` with a model trained with early stopping, and its scikit-learn
wrapper predicts with ``iteration_range=(0, best_iteration + 1)``; the audit slices the booster to
those rounds (for scoring and for shap alike) and says so in the description and provenance.
LightGBM's text format has no best iteration (``save_model`` writes up to it by default) and a
loaded ``Booster`` predicts with every saved tree, which the audit does too.

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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audit.core.adapter import LoadRecord, ModelAdapter, sha256_file
from audit.core.dataset import AuditData, Task
from audit.core.limits import check_size
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


# The child process: parse the file from stdin with the library and score rows: a few synthetic
# ones (zeros, ones, large values) at load time, every audited row (argv[4], a .npy file, in
# chunks) when bound to the data, so that any path real rows take through the trees runs here
# first. Its address space is what the interpreter and library take plus the memory budget
# (argv[2]). Isolated mode (-I): nothing from the working directory or PYTHON* variables is imported.
_PROBE = r"""
import sys
budget = int(sys.argv[2])
# the libraries import these only if present (for data frames and their scikit-learn wrappers);
# the probe needs none of them, and they are most of the start-up time (measured ~4x)
for name in ("pandas", "sklearn", "scipy.stats", "pyarrow", "polars", "dask", "cudf", "cupy",
             "matplotlib", "graphviz"):
    sys.modules[name] = None
import numpy as np
if sys.argv[1] == "xgboost":
    import xgboost
else:
    import lightgbm
try:
    import resource
    with open("/proc/self/status") as f:
        base = next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("VmSize:"))
except (ImportError, OSError, StopIteration, ValueError):
    base = 2 * 1024**3
try:
    if budget > 0:
        resource.setrlimit(resource.RLIMIT_AS, (base + budget, base + budget))
except (NameError, ValueError, OSError):  # no address-space limits on this platform
    pass
blob = sys.stdin.buffer.read()
if sys.argv[1] == "xgboost":
    b = xgboost.Booster()
    b.load_model(bytearray(blob))
    n = b.num_features()
    predict = lambda X: b.inplace_predict(X, predict_type="margin")
    import json
    trees = json.loads(b.save_raw("json"))["learner"]["gradient_booster"]["model"].get("trees", [])
    for k, t in enumerate(trees):   # each node reached once from the root, children and parents agree
        m, left, right, up = len(t["parents"]), t["left_children"], t["right_children"], t["parents"]
        if not (len(left) == len(right) == m == int(t["tree_param"]["num_nodes"]) >= 1):
            raise ValueError(f"tree {k}: num_nodes and its node arrays disagree")
        seen, stack = {0}, [0]
        while stack:
            i = stack.pop()
            for side, c in (("left_children", left[i]), ("right_children", right[i])):
                if (c == -1) != (left[i] == -1) or (c != -1 and not (0 < c < m and c not in seen and up[c] == i)):
                    raise ValueError(f"tree {k}: {side}[{i}] = {c} is not a child node in 1..{m - 1} "
                                     "reached once whose parent it is")
                if c != -1:
                    seen.add(c)
                    stack.append(c)
        if len(seen) != m:
            raise ValueError(f"tree {k}: {m - len(seen)} node(s) not reachable from the root")
else:
    b = lightgbm.Booster(model_str=blob.decode("utf-8"))
    n = b.num_feature()
    predict = lambda X: b.predict(X, raw_score=True, num_threads=1)
del blob
if 0 < n <= 100000:
    X = np.zeros((4, n), np.float32)
    X[1], X[2], X[3] = 1, -3e38, 3e38
    predict(X)
if len(sys.argv) > 3:
    X = np.load(sys.argv[3], mmap_mode="r")
    for start in range(0, len(X), 65536):
        predict(np.ascontiguousarray(X[start:start + 65536], dtype=np.float32))
print("ok")
"""
PROBE_SECONDS = 120


def _probe(fmt: str, blob: bytes, path: Path, X: np.ndarray | None = None) -> None:
    """Parse the file and score synthetic rows (and the rows ``X`` when given) in a child process;
    raise ModelLoadError if that fails."""
    import os
    import signal
    import subprocess
    import sys
    import tempfile

    from audit.core.limits import memory_budget

    name = _NAMES[fmt]
    budget = memory_budget()[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(OMP_NUM_THREADS="1")
    try:
        with tempfile.TemporaryDirectory(prefix="audit-probe-") as tmp:
            args = [sys.executable, "-I", "-c", _PROBE, fmt, str(budget)]
            if X is not None:
                np.save(Path(tmp) / "rows.npy", np.asarray(X))   # the child converts chunk by chunk
                args.append(str(Path(tmp) / "rows.npy"))
            done = subprocess.run(args, input=blob, capture_output=True, timeout=PROBE_SECONDS, env=env)
    except subprocess.TimeoutExpired:
        raise ModelLoadError(f"Reading {str(path)!r} with {name} took more than {PROBE_SECONDS} s and was "
                             "stopped. Is it a damaged or hostile file? Re-save the model.") from None
    if done.returncode == 0 and done.stdout.strip().endswith(b"ok"):
        return
    if done.returncode < 0:
        sig = signal.Signals(-done.returncode).name if -done.returncode in signal.valid_signals() else str(-done.returncode)
        what = f"the {name} library crashed {'scoring the audited rows with' if X is not None else 'reading'} it ({sig})"
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
    blob: bytes = field(default=b"", repr=False)   # the file as read (for the child-process probe)

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
        if self.blob and len(data.X):   # every audited row through the trees in a child first
            _probe(self.library, self.blob, Path(self.loaded[0].path), data.X)
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
    check_size(path.stat().st_size, f"The {name} model file {str(path)!r} is", error=ModelLoadError)
    blob = path.read_bytes()
    digest = sha256_file(path)
    if fmt == "lightgbm":
        _check_lightgbm_text(blob, path)
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
                          feature_names=names, blob=blob)


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
    header = _lightgbm_blocks(text, "")[0][1]
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


_INT = None  # compiled on first use: a plain ASCII integer, as LightGBM's parser reads it
_NODE_ARRAYS = ("split_feature", "split_gain", "threshold", "decision_type", "left_child", "right_child",
                "internal_value", "internal_weight", "internal_count")
_LEAF_ARRAYS = ("leaf_value", "leaf_weight", "leaf_count")


def _lightgbm_blocks(text: str, where: str) -> list[tuple[int, dict[str, str]]]:
    """The header and each ``Tree=`` block of a LightGBM text model as (byte offset, key -> value),
    split into lines as LightGBM does; a key given twice in one block is refused (LightGBM keeps
    the last, the audit would otherwise read the first)."""
    import re

    blocks: list[tuple[int, dict[str, str]]] = [(0, {})]
    offset = 0
    for line in re.split(r"(?<=\n)|(?<=\r)(?!\n)", text):
        body = line.rstrip("\r\n")
        if body.startswith("Tree="):
            blocks.append((offset, {}))
        elif body == "end of trees":
            blocks.append((offset, {}))
            break
        key, sep, value = body.partition("=")
        if sep:
            if key.strip() in blocks[-1][1]:
                part = "header" if len(blocks) == 1 else f"tree {len(blocks) - 2}"
                raise ModelLoadError(f"{where}its {part} gives {key.strip()!r} twice; "
                                     "LightGBM reads the last, so the file is ambiguous. Re-save the model.")
            blocks[-1][1][key.strip()] = value.strip()
        offset += len(line.encode("utf-8"))   # byte offsets, as tree_sizes counts
    return blocks


def _check_lightgbm_text(blob: bytes, path: Path) -> None:
    """Refuse a LightGBM text model whose trees would make the library read outside its arrays.

    LightGBM's parser trusts the file: a child index past the node arrays reads (or crashes on)
    memory that is not the tree. Every ``Tree=`` block is checked: num_leaves >= 1; each array as
    long as num_leaves says; every left/right child an internal node in [0, num_leaves - 2] or a leaf
    ``~i`` with i in [0, num_leaves - 1], each node reached exactly once from the root; split
    features below max_feature_idx + 1; categorical thresholds inside cat_boundaries; and
    ``tree_sizes`` (byte offsets LightGBM jumps to) equal to the blocks' sizes.
    """
    import re

    global _INT
    _INT = _INT or re.compile(r"-?[0-9]{1,10}", re.ASCII)
    where = f"{str(path)!r} is not a readable LightGBM model file: "
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelLoadError(f"{where}it is not utf-8 text (byte {exc.start}). "
                             "Re-save the model.") from None
    blocks = _lightgbm_blocks(text, where)
    header, trees = blocks[0][1], blocks[1:]
    ended = bool(trees) and not trees[-1][1] and text.encode("utf-8")[trees[-1][0]:].startswith(b"end of trees")
    if ended:
        trees, end = trees[:-1], blocks[-1][0]
    else:
        end = len(blob)

    def ints(tree: str, values: dict[str, str], key: str) -> list[int]:
        raw = values.get(key, "")
        items = raw.split(" ") if raw else []
        if not all(_INT.fullmatch(v) for v in items):
            raise ModelLoadError(f"{where}{tree}: {key!r} must be integers separated by single spaces. "
                                 "Re-save the model.")
        return [int(v) for v in items]

    n_features = ints("the header", header, "max_feature_idx")
    if len(n_features) != 1 or n_features[0] < 0:
        raise ModelLoadError(f"{where}the header needs max_feature_idx = a number >= 0. Re-save the model.")
    n_features = n_features[0] + 1
    for k, (_, tree) in enumerate(trees):
        name = f"tree {k}"
        leaves = ints(name, tree, "num_leaves")
        if len(leaves) != 1 or leaves[0] < 1:
            raise ModelLoadError(f"{where}{name}: num_leaves must be one number >= 1. Re-save the model.")
        n = leaves[0]
        arrays = {key: ints(name, tree, key) if key not in ("split_gain", "threshold", "internal_value",
                                                             "internal_weight", "leaf_value", "leaf_weight")
                  else tree.get(key, "").split(" ") if tree.get(key) else []
                  for key in _NODE_ARRAYS + _LEAF_ARRAYS}
        need = _NODE_ARRAYS[:6] + ("leaf_value",) if n > 1 else ("leaf_value",)
        for key in _NODE_ARRAYS + _LEAF_ARRAYS:
            size = n - 1 if key in _NODE_ARRAYS else n
            if (key in need or arrays[key]) and len(arrays[key]) != size:
                raise ModelLoadError(f"{where}{name}: {key!r} has {len(arrays[key])} values but num_leaves = "
                                     f"{n} needs {size}. Re-save the model.")
        bad = next((f for f in arrays["split_feature"] if not 0 <= f < n_features), None)
        if bad is not None:
            raise ModelLoadError(f"{where}{name}: split_feature {bad} is not a feature index below "
                                 f"max_feature_idx + 1 = {n_features}. Re-save the model.")
        seen_nodes, seen_leaves, stack = {0} if n > 1 else set(), set() if n > 1 else {0}, [0] if n > 1 else []
        while stack:
            node = stack.pop()
            for side in ("left_child", "right_child"):
                child = arrays[side][node]
                if child >= 0:
                    ok, seen, idx = child <= n - 2, seen_nodes, child
                else:
                    ok, seen, idx = ~child <= n - 1, seen_leaves, ~child
                if not ok or idx in seen:
                    what = "is out of range" if not ok else "is reached twice"
                    raise ModelLoadError(
                        f"{where}{name}: {side}[{node}] = {child} {what} (children are internal nodes "
                        f"0..{n - 2} or leaves ~0..~{n - 1}, i.e. -1..-{n}, each reached once). The file "
                        "is damaged or crafted; re-save the model.")
                seen.add(idx)
                if child >= 0:
                    stack.append(child)
        if len(seen_nodes) != n - 1 or len(seen_leaves) != n:
            raise ModelLoadError(f"{where}{name}: {n - 1 - len(seen_nodes)} internal node(s) and "
                                 f"{n - len(seen_leaves)} leaf/leaves are not reachable from the root. "
                                 "Re-save the model.")
        cats = ints(name, tree, "num_cat") or [0]
        bounds = ints(name, tree, "cat_boundaries")
        words = len(tree.get("cat_threshold", "").split(" ")) if tree.get("cat_threshold") else 0
        if cats[0] < 0 or (cats[0] and (len(bounds) != cats[0] + 1 or bounds[0] != 0 or bounds[-1] != words
                                        or any(a > b for a, b in zip(bounds, bounds[1:])))):
            raise ModelLoadError(f"{where}{name}: num_cat / cat_boundaries / cat_threshold do not agree. "
                                 "Re-save the model.")
        for node, kind in enumerate(arrays["decision_type"]):
            if kind & 1:   # categorical split: threshold is an index into cat_boundaries
                t = arrays["threshold"][node]
                if not (_INT.fullmatch(t.split(".")[0]) and 0 <= float(t) < cats[0]):
                    raise ModelLoadError(f"{where}{name}: categorical threshold[{node}] = {t} is not one of "
                                         f"its {cats[0]} category sets. Re-save the model.")
        if tree.get("is_linear", "0") != "0":
            raise ModelLoadError(f"{where}{name}: linear trees (linear_tree=true) are not supported: their "
                                 "leaf models are not checked. Train without linear_tree.")
    if "tree_sizes" in header:
        sizes = ints("the header", header, "tree_sizes")
        actual = [b - a for (a, _), b in zip(trees, [t[0] for t in trees[1:]] + [end])]
        if sizes != actual:
            raise ModelLoadError(f"{where}the header's tree_sizes {sizes[:5]}... do not match the sizes of "
                                 f"its {len(trees)} Tree= blocks {actual[:5]}...; LightGBM would read trees "
                                 "at the wrong offsets. Re-save the model (or delete the tree_sizes line).")


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
