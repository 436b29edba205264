"""ONNX models (optional extra): loaded by suffix through load_model, predictions equal the original."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from audit.cli import app
from audit.core.loading import ModelSpec, load_model
from audit.errors import ModelLoadError

ort = pytest.importorskip("onnxruntime", reason="the optional 'onnx' extra is not installed")
skl2onnx = pytest.importorskip("skl2onnx", reason="skl2onnx (dev extra) converts the test models")


def _sklearn_onnx(est, X: np.ndarray, path: Path, *, zipmap: bool = False) -> None:
    from skl2onnx import to_onnx

    options = None if zipmap or not hasattr(est, "predict_proba") else {id(est): {"zipmap": False}}
    path.write_bytes(to_onnx(est, X[:1].astype(np.float32), options=options,
                             target_opset=17).SerializeToString())


@pytest.fixture(scope="module")
def toy():
    from tests.conftest import make_frame
    from audit.core.dataset import Encoding

    frame = make_frame(300)
    enc = Encoding.fit(frame[["age", "hours", "job"]])
    X = enc.encode(frame).astype(np.float32)
    return frame, enc, X


@pytest.mark.parametrize("zipmap", [False, True])
def test_sklearn_classifier_via_onnx_matches_the_original(tmp_path, toy, zipmap):
    from sklearn.ensemble import RandomForestClassifier

    frame, enc, X = toy
    est = RandomForestClassifier(n_estimators=20, max_depth=4, random_state=0).fit(X, frame.income)
    _sklearn_onnx(est, X, tmp_path / "m.onnx", zipmap=zipmap)
    adapter = load_model(ModelSpec(path=str(tmp_path / "m.onnx"), task="binary"), encoding=enc)
    assert adapter.n_inputs == X.shape[1]
    assert {"predict", "proba", "predictions"} <= adapter.capabilities
    assert "gradients" not in adapter.capabilities
    np.testing.assert_allclose(adapter.predict_proba(X), est.predict_proba(X), atol=1e-5)
    np.testing.assert_array_equal(adapter.predict(X), (est.predict_proba(X)[:, 1] >= 0.5).astype(int))
    rec = adapter.loaded[0]
    assert rec.loader.startswith("onnxruntime") and len(rec.sha256) == 64


def test_multiclass_and_regression(tmp_path):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LinearRegression, LogisticRegression

    X, y = load_iris(return_X_y=True)
    X = X.astype(np.float32)
    clf = LogisticRegression(max_iter=500).fit(X, y)
    _sklearn_onnx(clf, X, tmp_path / "c.onnx", zipmap=True)
    m = load_model(ModelSpec(path=str(tmp_path / "c.onnx"), task="multiclass"), encoding=None)
    assert m.n_classes == 3
    np.testing.assert_allclose(m.predict_proba(X), clf.predict_proba(X), atol=1e-5)
    np.testing.assert_array_equal(m.predict(X), clf.predict(X))

    reg = LinearRegression().fit(X[:, :3], X[:, 3])
    _sklearn_onnx(reg, X[:, :3], tmp_path / "r.onnx")
    r = load_model(ModelSpec(path=str(tmp_path / "r.onnx"), task="regression"), encoding=None)
    np.testing.assert_allclose(r.predict(X[:, :3]), reg.predict(X[:, :3]), rtol=1e-5, atol=1e-5)
    assert "proba" not in r.capabilities


def test_torch_export_with_one_logit(tmp_path, toy):
    import torch

    from audit.core.adapter import build_mlp

    frame, enc, X = toy
    torch.manual_seed(0)  # untrained weights: the test is about equal outputs, not accuracy
    net = build_mlp({"type": "mlp", "input_dim": X.shape[1], "hidden": [4], "activation": "relu",
                     "output_dim": 1, "output": "logit"}).eval()
    buf = io.BytesIO()
    torch.onnx.export(net, (torch.zeros(1, X.shape[1]),), buf, input_names=["x"],
                      output_names=["logit"], dynamic_axes={"x": {0: "n"}}, dynamo=False)
    (tmp_path / "t.onnx").write_bytes(buf.getvalue())
    m = load_model(ModelSpec(path=str(tmp_path / "t.onnx"), task="binary", output="logit"), encoding=enc)
    with torch.no_grad():
        expected = torch.sigmoid(net(torch.from_numpy(X))).numpy()[:, 0]
    np.testing.assert_allclose(m.predict_proba(X)[:, 1], expected, atol=1e-5)


def test_truncated_or_fake_onnx_is_a_clear_error(tmp_path, toy):
    from sklearn.linear_model import LogisticRegression

    frame, enc, X = toy
    _sklearn_onnx(LogisticRegression().fit(X, frame.income), X, tmp_path / "m.onnx")
    blob = (tmp_path / "m.onnx").read_bytes()
    (tmp_path / "m.onnx").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ModelLoadError, match="not a loadable ONNX model"):
        load_model(ModelSpec(path=str(tmp_path / "m.onnx")), encoding=enc)
    (tmp_path / "n.onnx").write_text("hello")
    with pytest.raises(ModelLoadError, match="not a loadable ONNX model"):
        load_model(ModelSpec(path=str(tmp_path / "n.onnx")), encoding=enc)


def test_cli_audit_of_an_onnx_model(tmp_path, toy):
    from sklearn.linear_model import LogisticRegression

    frame, enc, X = toy
    _sklearn_onnx(LogisticRegression().fit(X, frame.income), X, tmp_path / "model.onnx")
    (tmp_path / "encoding.json").write_text(json.dumps(enc.to_dict()))
    frame.to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "audit.toml").write_text(
        'name = "onnx"\n[model]\npath = "model.onnx"\nencoding = "encoding.json"\n'
        '[data]\npath = "data.csv"\ntarget = "income"\npositive_label = ">50K"\nsensitive = ["sex"]\n'
        '[report]\nformats = ["json"]\n')
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["run", str(tmp_path / "audit.toml"), "--out", str(out), "-q",
                                   "--methods", "fairness,surrogate"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "results.json").read_text())
    assert doc["methods"]["fairness"]["status"] == "ok"
    assert doc["methods"]["surrogate"]["status"] == "ok"
    assert any(f["loader"].startswith("onnxruntime") for f in doc["provenance"]["files"])
