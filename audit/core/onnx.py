"""ONNX models through onnxruntime (the optional ``onnx`` extra).

An ONNX file is a graph of operators, not code: loading it with onnxruntime runs nothing the
file's author wrote, so it needs no ``--trust-code``. Two ways a graph could reach beyond
itself are closed: no custom-operator library is ever registered (an unknown operator is a load
error), and tensors stored as external data must be relative files inside the model's folder
(checked here with the ``onnx`` package before onnxruntime opens anything, and again by
onnxruntime ≥ 1.17's own path validation), so a model cannot read other files on the machine. The adapter scores the encoded matrix
(``predict`` / ``predict_proba``); methods that need gradients, weights or a refittable
estimator are skipped with the reason, as for any black box.

Output conventions understood (checked in this order):

- a classifier converted by skl2onnx: a label output plus a probability output, either a
  ``[N, k]`` tensor or a ZipMap (a list of ``{class: probability}`` dicts);
- a single float output, read according to ``[model] output``: ``"logit"`` (one column:
  sigmoid; k columns: softmax), ``"probability"``, or values for regression.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from audit.core.adapter import LoadRecord, ModelAdapter, sha256_file
from audit.core.dataset import Task
from audit.errors import InvalidConfigError, MissingDependencyError, ModelLoadError

_BATCH = 8192
_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64,
           "tensor(float16)": np.float16}


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependencyError(
            "ONNX models need onnxruntime, which is not installed. Install the extra with "
            "pip install 'audit-suite[onnx]' (or pip install onnxruntime).") from None
    return onnxruntime


@dataclass
class OnnxAdapter(ModelAdapter):
    """An ONNX model run by onnxruntime on the CPU.

    Examples
    --------
    >>> adapter = load_onnx_model(Path("model.onnx"), task="binary")  # doctest: +SKIP
    >>> adapter.predict_proba(X).shape  # doctest: +SKIP
    (n, 2)
    """

    session: Any = None
    output_kind: str = "logit"
    input_name: str = ""
    input_dtype: Any = np.float32
    proba_output: str | None = None
    score_output: str | None = None

    def __post_init__(self) -> None:
        if self.output_kind not in ("logit", "probability", "identity"):
            raise InvalidConfigError(
                "The 'output' of an ONNX model must be \"logit\", \"probability\" or \"identity\". "
                f"Got {self.output_kind!r} instead.")
        self.capabilities = frozenset({"predict", "proba", "predictions", "onnx"})
        super().__post_init__()

    def _run(self, X: np.ndarray, name: str) -> Any:
        try:
            return self.session.run([name], {self.input_name: X.astype(self.input_dtype, copy=False)})[0]
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidArgument types
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ModelLoadError(
                f"The ONNX model failed on input of shape {tuple(X.shape)}: {first[:300]}. Check "
                "that the encoding JSON is the one the model was trained with.") from None

    def _scores(self, X: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(X), _BATCH):
            chunk = np.ascontiguousarray(X[start:start + _BATCH])
            if self.proba_output is not None:
                raw = self._run(chunk, self.proba_output)
                if isinstance(raw, list):  # ZipMap: one {class: p} dict per row
                    keys = sorted(raw[0]) if raw else []
                    raw = np.array([[row[k] for k in keys] for row in raw], dtype=float)
                p = np.asarray(raw, dtype=float).reshape(len(chunk), -1)
                if p.shape[1] == 1:
                    p = np.column_stack([1 - p[:, 0], p[:, 0]])
                out.append(p)
                continue
            s = np.asarray(self._run(chunk, self.score_output or ""), dtype=float).reshape(len(chunk), -1)
            if self.task == "regression":
                out.append(s)  # more than one value per row is refused by check_outputs
            elif self.output_kind == "identity":
                out.append(s[:, :1])
            elif self.output_kind == "probability":
                out.append(np.column_stack([1 - s[:, 0], s[:, 0]]) if s.shape[1] == 1 else s)
            elif s.shape[1] == 1:
                p1 = 1.0 / (1.0 + np.exp(-s[:, 0]))
                out.append(np.column_stack([1 - p1, p1]))
            else:
                e = np.exp(s - s.max(axis=1, keepdims=True))
                out.append(e / e.sum(axis=1, keepdims=True))
        if not out:
            return np.zeros((0, 1 if self.task == "regression" else max(self.n_classes, 2)))
        return np.vstack(out)  # checked, like every adapter's outputs, by check_outputs


def _check_external_data(path: Path) -> list[str]:
    """The external-data files a model names, each checked to be a file inside its folder.

    Read with ``onnx`` (protobuf parsing only, no tensors loaded); when ``onnx`` is missing the
    check is left to onnxruntime's own validation.
    """
    try:
        import onnx
    except ImportError:
        return []
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:
        return []  # onnxruntime reports an unreadable file with its own message
    from onnx.external_data_helper import uses_external_data

    try:  # every tensor, subgraphs included (a private helper of onnx; the top graph otherwise)
        from onnx.external_data_helper import _get_all_tensors
    except ImportError:  # pragma: no cover - depends on the onnx version
        def _get_all_tensors(m: Any) -> list[Any]:
            return list(m.graph.initializer)

    folder = path.resolve().parent
    names: list[str] = []
    for tensor in _get_all_tensors(model):
        if not uses_external_data(tensor):
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (folder / location).resolve()
        if (not location or Path(location).is_absolute() or ".." in Path(location).parts
                or not target.is_relative_to(folder)):
            raise ModelLoadError(
                f"The ONNX model {str(path)!r} stores tensor {tensor.name!r} as external data at "
                f"{location!r}, outside the model's folder; audit-suite reads external data only "
                "from files beside the model. Re-export it with the data embedded or beside it.")
        if location not in names:
            names.append(location)
    return names


def load_onnx_model(path: Path, *, task: Task, output: str = "logit",
                    threshold: float = 0.5) -> OnnxAdapter:
    """Load an ONNX file with onnxruntime (CPU) and pick the outputs to read."""
    ort = _onnxruntime()
    path = Path(path)
    digest = sha256_file(path)
    external = _check_external_data(path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # the audited models are small; 1 thread is fastest here
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), sess_options=options,
                                       providers=["CPUExecutionProvider"])
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelLoadError(
            f"{str(path)!r} is not a loadable ONNX model ({first[:200]}). Is it truncated or "
            "another format?") from None
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ModelLoadError(
            f"The ONNX model {str(path)!r} has {len(inputs)} inputs "
            f"({', '.join(i.name for i in inputs)}); audit-suite feeds one matrix of encoded "
            "features. Export the model with a single [N, features] input.")
    inp = inputs[0]
    if inp.type not in _DTYPES:
        raise ModelLoadError(
            f"The ONNX model {str(path)!r} takes input of type {inp.type}; audit-suite feeds "
            "float tensors. Export it with a float input.")
    width = inp.shape[-1] if inp.shape and isinstance(inp.shape[-1], int) else None
    outputs = session.get_outputs()
    proba = score = None
    if task != "regression":
        for o in outputs:
            is_map = o.type.startswith("seq(map")
            if is_map or ("prob" in o.name.lower() and o.type in _DTYPES):
                proba = o.name
                break
    if proba is None:
        floats = [o for o in outputs if o.type in _DTYPES]
        if not floats:
            raise ModelLoadError(
                f"The ONNX model {str(path)!r} has no float output to read scores from (outputs: "
                f"{', '.join(f'{o.name}: {o.type}' for o in outputs)}). Export probabilities, "
                "logits or values.")
        score = floats[0].name
    n_classes = 2
    probe = proba or score
    shape = next(o.shape for o in outputs if o.name == probe)
    if task == "multiclass":
        if shape and len(shape) == 2 and isinstance(shape[1], int):
            n_classes = shape[1]
        elif width is not None:  # a ZipMap or a dynamic width: ask the model once
            probe_adapter = OnnxAdapter(task=task, session=session, output_kind=output,
                                        input_name=inp.name, input_dtype=_DTYPES[inp.type],
                                        proba_output=proba, score_output=score)
            n_classes = probe_adapter._scores(np.zeros((1, width), dtype=np.float32)).shape[1]
    rec = LoadRecord("model", str(path), digest, f"onnxruntime {ort.__version__} (CPU)"
                     + (f"; external data: {', '.join(external)}" if external else ""))
    return OnnxAdapter(task=task, n_classes=n_classes, threshold=threshold, session=session,
                       output_kind=output, input_name=inp.name, input_dtype=_DTYPES[inp.type],
                       proba_output=proba, score_output=score, n_inputs=width, loaded=(rec,),
                       description=f"ONNX model {path.name}")


__all__ = ["OnnxAdapter", "load_onnx_model"]
