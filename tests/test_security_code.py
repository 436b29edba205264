"""No code from a model file or a config runs without an explicit, recorded opt-in.

Every test drives the real CLI (typer's CliRunner, in process) or the public loader, with a
real attack: a TorchScript archive whose compiled ``__setstate__`` overwrites a marker file
through ``torch.from_file``, pickles whose ``__reduce__`` writes a file, configs naming
``subprocess:Popen``, ``os:system``, ``builtins:eval``..., a ``model.py`` with side effects.
The README's "What runs code" paragraph names these tests; the last test checks that every
test it names exists.

The trust model under test:
- model files that are programs (pickle/joblib, TorchScript, torch pickles beyond plain tensors,
  skops types outside its safe list) load only with ``--trust-code`` (``--trust-pickle`` is its
  former name), and the report records it;
- an architecture ``"module:Class"`` imports that module (its code runs; a ``model.py`` beside
  the config included), recorded with SHA-256; ``--untrusted-config`` refuses every such
  import; only ``torch.nn.Module`` subclasses are ever constructed.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from audit.cli import app

SAFE = b"safe"  # the marker's content until an attack's code runs (TorchScript writes b"XXXX")


def _run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def _error_line(result) -> str:
    text = result.output.strip()
    assert "Traceback" not in text
    assert result.exit_code == 2, text
    assert text.startswith("error:") and "\n" not in text, text
    return text


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _use_model(model_dir: Path, model_lines: str) -> Path:
    """Replace the [model] table's path/architecture lines of the fixture config."""
    cfg = model_dir / "audit.toml"
    text = cfg.read_text()
    text = text.replace('path = "model.safetensors"\narchitecture = "architecture.json"\n', model_lines)
    cfg.write_text(text)
    return cfg


def _evil_torchscript(path: Path, marker: Path, width: int) -> None:
    """A working binary classifier whose compiled ``__setstate__`` overwrites ``marker``.

    ``torch.jit.load`` calls ``__setstate__`` while it reads the archive, so the first four
    bytes of the marker become ``XXXX`` exactly when the archive's code runs.
    """
    import torch

    class Evil(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(width, 1) * 0.1)
            self.path = str(marker)
            self.probe = torch.zeros(4, dtype=torch.uint8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x @ self.w

        @torch.jit.export
        def __getstate__(self) -> tuple[str, torch.Tensor, bool]:
            return (self.path, self.w, self.training)

        @torch.jit.export
        def __setstate__(self, state: tuple[str, torch.Tensor, bool]) -> None:
            self.path = state[0]
            self.w = state[1]
            # the side effect: map the marker file and overwrite it
            self.probe = torch.from_file(state[0], shared=True, size=4, dtype=torch.uint8).fill_(88)
            self.training = state[2]

    torch.jit.script(Evil()).save(str(path))


class _Payload:
    """Unpickling this creates ``target``: proof that a pickle's code ran."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.write_text, (Path(self.target), "pwned"))


@pytest.fixture
def evil_ts(model_dir, encoding):
    marker = model_dir / "marker.txt"
    marker.write_bytes(SAFE)
    _evil_torchscript(model_dir / "model.pt", marker, len(encoding.columns))
    assert marker.read_bytes() == SAFE  # saving the archive ran nothing
    return model_dir / "model.pt", marker


# ---------------------------------------------------------------------------------------------
# TorchScript is a program
# ---------------------------------------------------------------------------------------------


def test_torchscript_archive_code_does_not_run_without_trust_code(model_dir, evil_ts):
    path, marker = evil_ts
    cfg = _use_model(model_dir, 'path = "model.pt"\n')
    out = model_dir / "out"
    text = _error_line(_run("run", cfg, "--out", out, "-q", "-m", "surrogate"))
    assert "TorchScript" in text and "--trust-code" in text and "model.pt" in text
    assert marker.read_bytes() == SAFE
    assert not out.exists()


@pytest.mark.slow
def test_torchscript_archive_runs_only_with_trust_code_and_the_report_records_it(model_dir, evil_ts):
    path, marker = evil_ts
    cfg = _use_model(model_dir, 'path = "model.pt"\n')
    out = model_dir / "out"
    result = _run("run", cfg, "--out", out, "-q", "-m", "surrogate", "--trust-code")
    assert result.exit_code == 0, result.output
    assert marker.read_bytes() == b"XXXX"  # the opt-in was real: the archive's code did run
    prov = json.loads((out / "results.json").read_text())["provenance"]
    assert prov["trust_code"] is True and prov["untrusted_config"] is False
    ran = [c for c in prov["code_ran"] if c["path"] == str(path)]
    assert len(ran) == 1 and "TorchScript" in ran[0]["what"] and ran[0]["sha256"] == _sha256(path)
    html = (out / "report.html").read_text()
    assert "ALLOWED (--trust-code)" in html and "TorchScript program" in html


def test_torchscript_given_as_weights_with_an_architecture_is_still_refused(model_dir, evil_ts):
    path, marker = evil_ts
    cfg = _use_model(model_dir, 'path = "model.pt"\narchitecture = "architecture.json"\n')
    text = _error_line(_run("run", cfg, "--out", model_dir / "out", "-q", "-m", "surrogate"))
    assert "--trust-code" in text and "model.pt" in text
    assert marker.read_bytes() == SAFE


def test_check_command_refuses_torchscript_without_trust_code(model_dir, evil_ts):
    path, marker = evil_ts
    cfg = _use_model(model_dir, 'path = "model.pt"\n')
    cfg.write_text(cfg.read_text() + '\n[gate]\n"fairness.sex.demographic_parity_difference" = { max = 0.5 }\n')
    text = _error_line(_run("check", cfg, "-q"))
    assert "--trust-code" in text
    assert marker.read_bytes() == SAFE


def test_python_api_load_model_refuses_torchscript_without_trust_code(evil_ts, encoding):
    from audit import ModelLoadError, load_model
    from audit.core.loading import ModelSpec

    path, marker = evil_ts
    with pytest.raises(ModelLoadError, match="--trust-code"):
        load_model(ModelSpec(path=str(path)), encoding=encoding)
    assert marker.read_bytes() == SAFE
    model = load_model(ModelSpec(path=str(path)), encoding=encoding, trust_code=True)
    assert marker.read_bytes() == b"XXXX" and model.loaded[0].code is not None


def test_python_api_report_records_code_that_ran_in_a_trusted_load(evil_ts, frame, encoding):
    from audit import audit_model, load_model
    from audit.core.loading import ModelSpec

    path, marker = evil_ts
    model = load_model(ModelSpec(path=str(path)), encoding=encoding, trust_code=True)
    report = audit_model(model, frame, target="income", positive_label=">50K", sensitive=["sex"],
                         encoding=encoding, methods=["surrogate"])
    prov = report.provenance
    assert prov["trust_code"] is True
    assert [(c["path"], c["sha256"]) for c in prov["code_ran"]] == [(str(path), _sha256(path))]


# ---------------------------------------------------------------------------------------------
# Pickles (torch and joblib)
# ---------------------------------------------------------------------------------------------


def test_pickle_payload_in_torch_weights_never_runs_without_trust_code(model_dir):
    import torch

    marker = model_dir / "pwned.txt"
    torch.save({"0.weight": torch.zeros(2, 2), "hook": _Payload(str(marker))}, model_dir / "model.pt")
    cfg = _use_model(model_dir, 'path = "model.pt"\narchitecture = "architecture.json"\n')
    text = _error_line(_run("run", cfg, "--out", model_dir / "out", "-q", "-m", "surrogate"))
    assert "--trust-code" in text and "model.pt" in text
    assert not marker.exists()


def test_joblib_pickle_payload_never_runs_without_trust_code(model_dir):
    marker = model_dir / "pwned.txt"
    (model_dir / "model.joblib").write_bytes(pickle.dumps(_Payload(str(marker))))
    cfg = _use_model(model_dir, 'path = "model.joblib"\n')
    text = _error_line(_run("run", cfg, "--out", model_dir / "out", "-q", "-m", "surrogate"))
    assert "--trust-code" in text and "model.joblib" in text
    assert not marker.exists()


@pytest.mark.parametrize("types, says", [
    ([1], "must be a list of strings"), ("sklearn.Tree", "must be a list of strings"),
    (["*"], "'*' is not a type path"), (["sklearn.*"], "'sklearn.*' is not a type path"),
    ([""], "'' is not a type path"), (["Tree"], "'Tree' is not a type path")])
def test_trusted_types_must_be_exact_type_paths(tmp_path, types, says):
    from audit.config import AuditPlan
    from audit.errors import InvalidConfigError

    doc = {"model": {"path": "m.skops", "trusted_types": types}, "data": {"path": "d.csv", "target": "y"}}
    with pytest.raises(InvalidConfigError, match=re.escape(says)):
        AuditPlan.from_dict(doc, base_dir=tmp_path)


def test_trusted_types_are_recorded_in_provenance(tmp_path):
    from audit.report.model import provenance

    prov = provenance(seed=0, files=[], trusted_types=("_operator.pos", "<b>x.y</b>"))
    assert prov["trusted_types"] == ["_operator.pos", "<b>x.y</b>"]
    assert provenance(seed=0, files=[])["trusted_types"] == []


@pytest.mark.slow
def test_skops_types_outside_the_safe_list_need_trusted_types_and_are_recorded(model_dir, frame, encoding):
    import operator

    import skops.io as sio
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X = encoding.encode(frame)
    pipe = make_pipeline(FunctionTransformer(operator.pos), LogisticRegression(max_iter=500))
    sio.dump(pipe.fit(X, frame.income == ">50K"), model_dir / "model.skops")
    cfg = _use_model(model_dir, 'path = "model.skops"\n')
    text = _error_line(_run("run", cfg, "--out", model_dir / "out", "-q", "-m", "surrogate"))
    assert "_operator.pos" in text and "trusted_types" in text and "--trust-code" in text

    cfg.write_text(cfg.read_text().replace('task = "binary"', 'task = "binary"\ntrusted_types = ["_operator.pos"]'))
    out = model_dir / "out"
    assert _run("run", cfg, "--out", out, "-q", "-m", "surrogate", "-f", "json,html").exit_code == 0
    prov = json.loads((out / "results.json").read_text())["provenance"]
    assert prov["trust_code"] is False and prov["trusted_types"] == ["_operator.pos"]
    assert "<td>_operator.pos</td>" in (out / "report.html").read_text()
    assert [c["what"] for c in prov["code_ran"]] == [
        "built types outside skops' safe list ([model] trusted_types): _operator.pos"]

    text = _error_line(_run("run", cfg, "--out", model_dir / "out2", "-q", "-m", "surrogate",
                            "--untrusted-config"))
    assert "trusted_types" in text and "--untrusted-config" in text


def test_safe_loaders_with_known_bypasses_are_treated_as_code(model_dir, encoding, monkeypatch):
    """torch < 2.10 (weights_only bypasses) and skops < 0.12 (trusted-type bypass) cannot be
    relied on to run nothing: their files need --trust-code; safetensors still loads."""
    import skops
    import skops.io as sio
    import torch
    from sklearn.linear_model import LogisticRegression

    from audit import ModelLoadError, load_model
    from audit.core.loading import ModelSpec

    net = load_model(ModelSpec(path=str(model_dir / "model.safetensors"),
                               architecture=str(model_dir / "architecture.json")), encoding=encoding)
    torch.save(net.module.state_dict(), model_dir / "weights.pt")
    sio.dump(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), model_dir / "m.skops")
    monkeypatch.setattr(torch, "__version__", "2.5.1")
    monkeypatch.setattr(skops, "__version__", "0.11.0")
    pt = ModelSpec(path=str(model_dir / "weights.pt"), architecture=str(model_dir / "architecture.json"))
    with pytest.raises(ModelLoadError, match=r"CVE-2025-32434.*--trust-code"):
        load_model(pt, encoding=encoding)
    with pytest.raises(ModelLoadError, match=r"CVE-2025-54412.*--trust-code"):
        load_model(ModelSpec(path=str(model_dir / "m.skops")), encoding=None)
    trusted = load_model(pt, encoding=encoding, trust_code=True)
    assert "known bypasses" in trusted.loaded[-1].code
    load_model(ModelSpec(path=str(model_dir / "model.safetensors"),
                         architecture=str(model_dir / "architecture.json")), encoding=encoding)


# ---------------------------------------------------------------------------------------------
# The config is code: "module:Class" architectures
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "init_args"),
    [
        ("subprocess:Popen", 'args = ["touch", "{marker}"]'),  # a class, but not an nn.Module
        ("subprocess:run", 'args = ["touch", "{marker}"]'),
        ("os:system", 'command = "touch {marker}"'),
        ("builtins:eval", 'source = "open(r\'{marker}\', \'w\')"'),
        ("builtins:exec", 'source = "open(r\'{marker}\', \'w\')"'),
        ("pathlib:Path.touch", 'self = "{marker}"'),
        ("shutil:rmtree", 'path = "{victim}"'),
    ],
)
def test_config_naming_a_callable_that_is_not_a_module_class_is_refused_uncalled(model_dir, ref, init_args):
    marker, victim = model_dir / "pwned.txt", model_dir / "victim"
    victim.mkdir()
    args = init_args.format(marker=marker.as_posix(), victim=victim.as_posix())
    cfg = _use_model(model_dir, f'path = "model.safetensors"\narchitecture = "{ref}"\n')
    cfg.write_text(cfg.read_text().replace("[data]", f"[model.init_args]\n{args}\n\n[data]"))
    text = _error_line(_run("run", cfg, "--out", model_dir / "out", "-q", "-m", "surrogate"))
    assert ref in text and "not a torch.nn.Module subclass" in text and "called nothing" in text
    assert not marker.exists() and victim.is_dir()


def test_a_function_in_model_py_beside_the_config_is_not_called(model_dir):
    marker = model_dir / "pwned.txt"
    (model_dir / "model.py").write_text(
        f"def make_net(**kwargs):\n    open({str(marker)!r}, 'w').write('pwned')\n")
    cfg = _use_model(model_dir, 'path = "model.safetensors"\narchitecture = "model:make_net"\n')
    text = _error_line(_run("run", cfg, "--out", model_dir / "out", "-q", "-m", "surrogate"))
    assert "not a torch.nn.Module subclass" in text
    assert not marker.exists()


def _net_py(marker: Path | None = None) -> str:
    side_effect = f"open({str(marker)!r}, 'w').write('imported')\n" if marker else ""
    return ("import torch.nn as nn\n" + side_effect +
            "class Net(nn.Sequential):\n"
            "    def __init__(self, d_in, hidden=8):\n"
            "        super().__init__(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, 1))\n")


def _net_config(model_dir: Path, ref: str, width: int) -> Path:
    cfg = _use_model(model_dir, f'path = "model.safetensors"\narchitecture = "{ref}"\n')
    cfg.write_text(cfg.read_text().replace("[data]", f"[model.init_args]\nd_in = {width}\n\n[data]"))
    return cfg


def test_model_py_beside_the_config_is_refused_under_untrusted_config(model_dir, encoding):
    marker = model_dir / "imported.txt"
    (model_dir / "model.py").write_text(_net_py(marker))
    cfg = _net_config(model_dir, "model:Net", len(encoding.columns))
    out = model_dir / "out"
    text = _error_line(_run("run", cfg, "--out", out, "-q", "-m", "surrogate", "--untrusted-config"))
    assert "'model:Net'" in text and "--untrusted-config" in text
    assert not marker.exists() and not out.exists()


def test_installed_module_is_refused_under_untrusted_config(model_dir, encoding):
    cfg = _use_model(model_dir, 'path = "model.safetensors"\narchitecture = "torch.nn:Linear"\n')
    text = _error_line(_run("run", cfg, "--out", model_dir / "out", "-q", "--untrusted-config"))
    assert "'torch.nn:Linear'" in text and "--untrusted-config" in text


def test_untrusted_config_cannot_be_combined_with_trust_code(model_dir):
    text = _error_line(_run("run", model_dir / "audit.toml", "--out", model_dir / "out", "-q",
                            "--untrusted-config", "--trust-code"))
    assert "--untrusted-config" in text and "--trust-code" in text and "cannot be combined" in text


def test_untrusted_config_still_audits_a_model_without_code(model_dir):
    out = model_dir / "out"
    result = _run("run", model_dir / "audit.toml", "--out", out, "-q", "-m", "surrogate",
                  "--untrusted-config")
    assert result.exit_code == 0, result.output
    prov = json.loads((out / "results.json").read_text())["provenance"]
    assert prov["untrusted_config"] is True and prov["code_ran"] == []
    assert "refused (--untrusted-config)" in (out / "report.html").read_text()


def _config_folder_below(model_dir: Path) -> Path:
    """A copy of the fixture's config folder one level down, so files can lie outside it."""
    sub = model_dir / "cfg"
    sub.mkdir()
    for f in ("audit.toml", "architecture.json", "encoding.json", "data.csv", "model.safetensors"):
        (sub / f).write_bytes((model_dir / f).read_bytes())
    return sub


@pytest.mark.parametrize("where", ["data", "symlink", "encoding", "report"])
def test_untrusted_config_reads_and_writes_only_inside_its_folder(model_dir, where):
    sub = _config_folder_below(model_dir)
    secret = model_dir / "secret.csv"
    secret.write_bytes((model_dir / "data.csv").read_bytes())
    cfg = sub / "audit.toml"
    text = cfg.read_text()
    if where == "data":
        text = text.replace('path = "data.csv"', f'path = "{secret.as_posix()}"')
    elif where == "symlink":
        (sub / "link.csv").symlink_to(secret)
        text = text.replace('path = "data.csv"', 'path = "link.csv"')
    elif where == "encoding":
        text = text.replace('encoding = "encoding.json"', 'encoding = "../encoding.json"')
    else:
        text = text.replace('formats = ["html", "json"]', 'formats = ["json"]\nout = "../elsewhere"')
    cfg.write_text(text)
    text = _error_line(_run("run", cfg, "-q", "-m", "surrogate", "--untrusted-config"))
    assert "outside the config's folder" in text and "--untrusted-config" in text
    assert not (model_dir / "elsewhere").exists()
    # the same config is the user's own business without the flag
    args = ("--out", model_dir / "out") if where != "report" else ()
    assert _run("run", cfg, *args, "-q", "-m", "surrogate").exit_code == 0


def test_model_py_beside_the_config_runs_by_default_and_is_recorded_with_sha256(model_dir, encoding):
    marker = model_dir / "imported.txt"
    (model_dir / "model.py").write_text(_net_py(marker))
    cfg = _net_config(model_dir, "model:Net", len(encoding.columns))
    out = model_dir / "out"
    result = _run("run", cfg, "--out", out, "-q", "-m", "surrogate")
    assert result.exit_code == 0, result.output
    assert marker.read_text() == "imported"  # documented: importing model.py runs it
    prov = json.loads((out / "results.json").read_text())["provenance"]
    ran = prov["code_ran"]
    assert [(c["path"], c["sha256"]) for c in ran] == [(str(model_dir / "model.py"), _sha256(model_dir / "model.py"))]
    assert "top-level code ran" in ran[0]["what"]
    assert str(model_dir / "model.py") in (out / "report.html").read_text()


def test_sibling_files_that_model_py_imports_are_recorded_too(model_dir, encoding):
    (model_dir / "layers_for_audit_test.py").write_text("import torch.nn as nn\nWIDTH = 8\n")
    (model_dir / "model.py").write_text("from layers_for_audit_test import WIDTH\n" + _net_py())
    cfg = _net_config(model_dir, "model:Net", len(encoding.columns))
    out = model_dir / "out"
    result = _run("run", cfg, "--out", out, "-q", "-m", "surrogate")
    assert result.exit_code == 0, result.output
    ran = json.loads((out / "results.json").read_text())["provenance"]["code_ran"]
    assert {Path(c["path"]).name: c["sha256"] for c in ran} == {
        "model.py": _sha256(model_dir / "model.py"),
        "layers_for_audit_test.py": _sha256(model_dir / "layers_for_audit_test.py")}


def test_installed_package_class_loads_and_is_recorded(model_dir, encoding):
    import torch
    from safetensors.torch import save_file

    width = len(encoding.columns)
    save_file({"weight": torch.full((1, width), 0.3), "bias": torch.zeros(1)}, str(model_dir / "linear.safetensors"))
    cfg = _use_model(model_dir, 'path = "linear.safetensors"\narchitecture = "torch.nn:Linear"\n')
    cfg.write_text(cfg.read_text().replace(
        "[data]", f"[model.init_args]\nin_features = {width}\nout_features = 1\n\n[data]"))
    out = model_dir / "out"
    result = _run("run", cfg, "--out", out, "-q", "-m", "surrogate")
    assert result.exit_code == 0, result.output  # was UnboundLocalError before the fix
    ran = json.loads((out / "results.json").read_text())["provenance"]["code_ran"]
    # the module the config named is recorded (torch.nn), with the SHA-256 of its file
    assert len(ran) == 1 and ran[0]["path"].endswith(str(Path("torch", "nn", "__init__.py")))
    assert ran[0]["sha256"] == _sha256(Path(ran[0]["path"])) and "torch.nn" in ran[0]["what"]


def test_a_missing_module_is_a_one_line_error(model_dir):
    cfg = _use_model(model_dir, 'path = "model.safetensors"\narchitecture = "no_such_pkg_for_audit:Net"\n')
    text = _error_line(_run("run", cfg, "--out", model_dir / "out", "-q"))
    assert "Could not import" in text and "no_such_pkg_for_audit" in text
    cfg.write_text(cfg.read_text().replace("no_such_pkg_for_audit:Net", "model.py:Net"))
    text = _error_line(_run("run", cfg, "--out", model_dir / "out", "-q"))
    assert "without its suffix ('model:Net')" in text


@pytest.mark.parametrize("ref", ["../evil:Net", "a/../../evil:Net", "/tmp/evil:Net", "evil-x:Net", "evil:"])
def test_an_architecture_reference_cannot_name_a_file_path(model_dir, ref):
    marker = model_dir / "pwned.txt"
    sub = _config_folder_below(model_dir)
    (model_dir / "evil.py").write_text(f"open({str(marker)!r}, 'w')\nNet = 1\n")
    cfg = _use_model(sub, f'path = "model.safetensors"\narchitecture = "{ref}"\n')
    text = _error_line(_run("run", cfg, "--out", model_dir / "out", "-q"))
    assert "dotted identifiers only" in text
    assert not marker.exists()


def test_init_args_must_be_plain_data(model_dir, encoding):
    from audit import InvalidConfigError, load_model
    from audit.core.loading import ModelSpec

    marker = model_dir / "imported.txt"
    (model_dir / "model.py").write_text(_net_py(marker))
    spec = ModelSpec(path=str(model_dir / "model.safetensors"), architecture="model:Net",
                     init_args={"d_in": print}, base_dir=str(model_dir))
    with pytest.raises(InvalidConfigError, match=r"\[model.init_args\].d_in must be plain data"):
        load_model(spec, encoding=encoding)
    assert not marker.exists()  # refused before the import


# ---------------------------------------------------------------------------------------------
# ONNX reads nothing outside its folder
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("location", ["../secret.bin", "{abs}"])
def test_onnx_external_data_outside_the_model_folder_is_refused(tmp_path, location):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    from audit import ModelLoadError, load_model
    from audit.core.loading import ModelSpec

    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"SECRETSECRETSECR")
    folder = tmp_path / "model"
    folder.mkdir()
    w = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[4, 1])
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location.format(abs=secret)), ("offset", "0"), ("length", "16")):
        w.external_data.add(key=k, value=v)
    graph = helper.make_graph([helper.make_node("MatMul", ["X", "W"], ["Y"])], "g",
                              [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 1])],
                              initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.save(model, str(folder / "m.onnx"))
    with pytest.raises(ModelLoadError, match="outside the model's folder"):
        load_model(ModelSpec(path=str(folder / "m.onnx")), encoding=None)


# ---------------------------------------------------------------------------------------------
# Image folders: only the PNG and JPEG decoders
# ---------------------------------------------------------------------------------------------


def test_a_postscript_file_named_png_never_reaches_ghostscript(tmp_path, monkeypatch):
    """Pillow chooses a decoder by content; its EPS decoder runs Ghostscript on the file's
    PostScript (a program). The image reader allows only PNG and JPEG, so it is never called."""
    import pandas as pd
    from PIL import EpsImagePlugin, Image

    from audit.core.dataset import DatasetSpec
    from audit.core.modalities import ImageSpec, build_image_data
    from audit.errors import DataValidationError

    called = []
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "load", lambda self: called.append(self.filename))
    Image.new("L", (4, 4)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 4 4\nshowpage\n")
    with Image.open(tmp_path / "b.png") as probe:  # what Pillow would do left to itself
        assert probe.format == "EPS"
    pd.DataFrame({"file": ["a.png", "b.png"], "label": ["x", "y"]}).to_csv(tmp_path / "labels.csv", index=False)
    spec = ImageSpec(str(tmp_path), labels=str(tmp_path / "labels.csv"))
    with pytest.raises(DataValidationError, match=r"b\.png.*could not be read.*PNG/JPEG"):
        build_image_data(spec, DatasetSpec(target="label", task="binary", positive_label="y"))
    assert called == []


# ---------------------------------------------------------------------------------------------
# Stated where users look
# ---------------------------------------------------------------------------------------------


def test_help_and_methods_say_that_config_imports_run_code():
    help_text = " ".join(_run("run", "--help").output.split())
    assert "--trust-code" in help_text and "--untrusted-config" in help_text
    assert "runs its code" in help_text
    methods = " ".join(_run("methods").output.split())
    assert "imports that module, which runs its code" in methods and "--untrusted-config" in methods


def test_every_safety_claim_in_the_readme_names_a_test_that_exists():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    named = re.findall(r"test_security_code\.py::(\w+)", readme)
    assert len(named) >= 6, named
    here = {name for name in globals() if name.startswith("test_")}
    assert set(named) <= here, set(named) - here


def test_untrusted_config_cannot_write_through_a_link_at_its_lock_path(model_dir, tmp_path_factory):
    # The red team's repro: a config folder from elsewhere ships ".rep.lock" -> a file of the user's.
    victim = tmp_path_factory.mktemp("home") / "victim.txt"
    victim.write_bytes(b"the user's file")
    cfg = model_dir / "audit.toml"
    cfg.write_text(cfg.read_text().replace('formats = ["html", "json"]', 'formats = ["json"]\nout = "rep"'))
    (model_dir / ".rep.lock").symlink_to(victim)
    text = _error_line(_run("run", cfg, "-q", "-m", "fairness", "--untrusted-config"))
    assert f"{str(model_dir / '.rep.lock')!r} is a symbolic link" in text and "never writes through" in text
    assert victim.read_bytes() == b"the user's file"
    assert (model_dir / ".rep.lock").is_symlink() and not (model_dir / "rep").exists()


# ---------------------------------------------------------------------------------------------
# XGBoost / LightGBM model files are data
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["model.json", "model.ubj", "model.txt"])
def test_a_pickle_named_like_a_booster_file_is_never_unpickled(model_dir, name):
    pytest.importorskip("xgboost" if name != "model.txt" else "lightgbm")
    marker = model_dir / "pwned.txt"
    (model_dir / name).write_bytes(pickle.dumps(_Payload(str(marker))))
    cfg = _use_model(model_dir, f'path = "{name}"\n')
    for flags in ([], ["--trust-code"]):  # even the opt-in does not make a booster file a pickle
        text = _error_line(_run("run", cfg, "--out", model_dir / "out", "-q", "-m", "fairness", *flags))
        assert name in text and "not a readable" in text
    assert not marker.exists()


def test_booster_files_load_under_untrusted_config_and_record_that_no_code_ran(model_dir, frame, encoding):
    xgb = pytest.importorskip("xgboost")
    X, y = encoding.encode(frame), (frame.income == ">50K").astype(int)
    xgb.XGBClassifier(n_estimators=5, max_depth=2).fit(X, y).save_model(model_dir / "model.json")
    cfg = _use_model(model_dir, 'path = "model.json"\n')
    result = _run("run", cfg, "--out", model_dir / "out", "-q", "-m", "fairness", "--untrusted-config")
    assert result.exit_code == 0, result.output
    doc = json.loads((model_dir / "out" / "results.json").read_text())
    model = [f for f in doc["provenance"]["files"] if f["role"] == "model"]
    assert model and model[0]["code"] is None and model[0]["loader"].startswith("xgboost")
    assert model[0]["sha256"] == _sha256(model_dir / "model.json")
