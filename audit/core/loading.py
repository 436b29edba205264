"""Model files -> a :class:`~audit.core.adapter.ModelAdapter`: the ``[model]`` table, the trust
checks and one loader per format (torch weights with an architecture, scikit-learn via skops or a
trusted pickle, XGBoost / LightGBM via :mod:`audit.core.boosters`, ONNX via :mod:`audit.core.onnx`).

Loading lives here, above the adapters and the format modules that build them, so that
:mod:`audit.core.adapter` imports none of them (it used to import ``onnx`` and ``boosters``,
which import it back).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.core.adapter import (
    TRUST_CODE_FLAG,
    UNTRUSTED_CONFIG_FLAG,
    LoadRecord,
    ModelAdapter,
    PredictionsAdapter,
    SklearnAdapter,
    TorchAdapter,
    build_mlp,
    sha256_file,
)
from audit.core.dataset import Encoding, Task
from audit.core.userfiles import load_json
from audit.errors import InvalidConfigError, ModelLoadError


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


__all__ = [
    "ModelSpec",
    "SAFE_LOADER_VERSIONS",
    "check_trust_flags",
    "load_model",
    "load_sklearn_model",
    "load_state_dict",
    "load_torch_model",
    "tensor_digest",
]
