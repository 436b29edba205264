"""Model adapters: every loader gives the same predictions, and unsafe files are refused."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from audit.core.adapter import (
    CallableAdapter,
    PredictionsAdapter,
    SklearnAdapter,
    TorchAdapter,
    as_adapter,
    linear_chain,
)
from audit.core.dataset import DatasetSpec, build_audit_data
from audit.core.loading import ModelSpec, load_model, tensor_digest
from audit.errors import CapabilityError, InvalidConfigError, ModelLoadError
from tests.conftest import fit_torch_mlp


def _spec(d: Path, **kw) -> ModelSpec:
    return ModelSpec(**{"path": str(d / "model.safetensors"), "architecture": str(d / "architecture.json"),
                        "task": "binary", **kw})


def test_torch_mlp_loads_from_safetensors_and_json_architecture(model_dir, frame, encoding):
    model = load_model(_spec(model_dir), encoding=encoding)
    assert {"torch", "gradients", "weights", "proba"} <= model.capabilities
    p = model.predict_proba(encoding.encode(frame))
    assert p.shape == (len(frame), 2)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    acc = np.mean(model.predict(encoding.encode(frame)) == (frame.income == ">50K"))
    assert acc > 0.9  # the planted rule is learnable
    assert [r.loader for r in model.loaded] == ["json", "safetensors"]


def test_weights_only_torch_load_and_torchscript_give_identical_predictions(model_dir, frame, encoding):
    X = encoding.encode(frame)
    ref = load_model(_spec(model_dir), encoding=encoding)
    torch.save(ref.module.state_dict(), model_dir / "weights.pt")
    pt = load_model(_spec(model_dir, path=str(model_dir / "weights.pt")), encoding=encoding)
    torch.jit.save(torch.jit.script(ref.module), str(model_dir / "model.ts"))
    ts = load_model(ModelSpec(path=str(model_dir / "model.ts"), task="binary"), encoding=encoding,
                    trust_code=True)  # TorchScript is a program: only with the opt-in
    np.testing.assert_allclose(pt.predict_proba(X), ref.predict_proba(X), atol=1e-7)
    np.testing.assert_allclose(ts.predict_proba(X), ref.predict_proba(X), atol=1e-6)
    assert pt.loaded[-1].loader == "torch.load(weights_only=True)"


def test_tensor_digest_is_independent_of_the_container_file(model_dir, encoding):
    ref = load_model(_spec(model_dir), encoding=encoding)
    torch.save(ref.module.state_dict(), model_dir / "weights.pt")
    pt = load_model(_spec(model_dir, path=str(model_dir / "weights.pt")), encoding=encoding)
    assert pt.loaded[-1].tensor_sha256 == ref.loaded[-1].tensor_sha256
    assert pt.loaded[-1].sha256 != ref.loaded[-1].sha256


class _Payload:
    """Unpickling this writes a file: proof that code ran."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.write_text, (Path(self.target), "pwned"))


def test_pickle_is_refused_without_trust_and_its_payload_never_runs(tmp_path, encoding):
    marker = tmp_path / "marker.txt"
    for name in ("model.pkl", "model.joblib"):
        (tmp_path / name).write_bytes(pickle.dumps(_Payload(str(marker))))
        with pytest.raises(ModelLoadError, match="--trust-code"):
            load_model(ModelSpec(path=str(tmp_path / name)), encoding=encoding)
    torch.save({"w": _Payload(str(marker))}, tmp_path / "evil.pt")
    with pytest.raises(ModelLoadError, match="weights"):
        load_model(_spec(tmp_path, path=str(tmp_path / "evil.pt"),
                         architecture={"type": "mlp", "input_dim": 5, "hidden": [2], "output_dim": 1}),
                   encoding=encoding)
    assert not marker.exists()


def test_skops_sklearn_pipeline_loads_and_pickle_loads_only_when_trusted(tmp_path, frame, encoding):
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    X = encoding.encode(frame)
    est = LogisticRegression(max_iter=500).fit(X, frame.income == ">50K")
    sio.dump(est, tmp_path / "m.skops")
    model = load_model(ModelSpec(path=str(tmp_path / "m.skops")), encoding=encoding)
    np.testing.assert_allclose(model.predict_proba(X), est.predict_proba(X))
    (tmp_path / "m.pkl").write_bytes(pickle.dumps(est))
    trusted = load_model(ModelSpec(path=str(tmp_path / "m.pkl")), encoding=encoding, trust_code=True)
    assert trusted.loaded[0].trusted_pickle and "--trust-code" in trusted.loaded[0].loader
    assert trusted.loaded[0].code is not None and model.loaded[0].code is None


def test_raw_input_pipeline_receives_decoded_data_frames(frame, encoding):
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder
    from sklearn.tree import DecisionTreeClassifier

    pipe = make_pipeline(ColumnTransformer([("cat", OneHotEncoder(), ["job"])], remainder="passthrough"),
                         DecisionTreeClassifier(random_state=0))
    pipe.fit(frame[["age", "hours", "job"]], frame.income)
    model = SklearnAdapter(task="binary", estimator=pipe, encoding=encoding, raw=True)
    np.testing.assert_array_equal(model.predict_proba(encoding.encode(frame)),
                                  pipe.predict_proba(frame[["age", "hours", "job"]]))


def test_callable_and_precomputed_predictions(frame, encoding):
    fn = CallableAdapter(task="binary", fn=lambda X: 1 / (1 + np.exp(-X[:, 0])))
    assert fn.predict(np.array([[3.0], [-3.0]], dtype=np.float32)).tolist() == [1, 0]
    scored = frame.assign(score=np.linspace(0, 1, len(frame)))
    data = build_audit_data(scored, DatasetSpec(target="income", positive_label=">50K",
                                                predictions="score", features=("age",)))
    pre = PredictionsAdapter(task="binary", column="score", threshold=0.5)
    preds = pre.predictions(data)
    np.testing.assert_array_equal(preds.labels, (scored.score >= 0.5).astype(int))
    assert "predict" not in pre.capabilities
    with pytest.raises(CapabilityError):
        pre.predict_proba(data.X)


def test_precomputed_label_predictions_use_the_target_classes(frame):
    labelled = frame.assign(decision=np.where(frame.age > 50, ">50K", "<=50K"))
    data = build_audit_data(labelled, DatasetSpec(target="income", positive_label=">50K",
                                                  predictions="decision", features=("age",)))
    preds = PredictionsAdapter(task="binary", column="decision").predictions(data)
    np.testing.assert_array_equal(preds.labels, (frame.age > 50).astype(int))
    assert preds.scores is None


def test_weights_that_do_not_fit_the_architecture_name_the_mismatch(model_dir, encoding):
    arch = json.loads((model_dir / "architecture.json").read_text())
    arch["hidden"] = [5]
    (model_dir / "architecture.json").write_text(json.dumps(arch))
    with pytest.raises(ModelLoadError, match="do not fit the architecture"):
        load_model(_spec(model_dir), encoding=encoding)


def test_truncated_or_foreign_weight_files_are_clear_errors(model_dir, encoding):
    blob = (model_dir / "model.safetensors").read_bytes()
    (model_dir / "model.safetensors").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ModelLoadError, match="not a readable safetensors"):
        load_model(_spec(model_dir), encoding=encoding)
    (model_dir / "notes.pt").write_text("hello")
    with pytest.raises(ModelLoadError):
        load_model(_spec(model_dir, path=str(model_dir / "notes.pt")), encoding=encoding)
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(_spec(model_dir, path=str(model_dir / "missing.safetensors")), encoding=encoding)


def test_bad_architecture_specs_are_config_errors(tmp_path):
    from audit.core.adapter import build_mlp

    with pytest.raises(InvalidConfigError, match="lacks the key 'hidden'"):
        build_mlp({"type": "mlp", "input_dim": 3, "output_dim": 1})
    with pytest.raises(InvalidConfigError, match="'activation'"):
        build_mlp({"input_dim": 3, "hidden": [2], "output_dim": 1, "activation": "swish2"})


def test_linear_chain_detects_mlps_and_rejects_other_modules(frame, encoding):
    net, _ = fit_torch_mlp(frame, encoding)
    assert [layer.out_features for layer in linear_chain(net)] == [8, 1]
    conv = torch.nn.Sequential(torch.nn.Conv1d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(2, 1))
    assert linear_chain(conv) is None
    assert "weights" not in TorchAdapter(task="binary", module=conv).capabilities


def test_as_adapter_wraps_modules_estimators_and_functions(frame, encoding):
    from sklearn.linear_model import LogisticRegression

    net, _ = fit_torch_mlp(frame, encoding)
    assert isinstance(as_adapter(net), TorchAdapter)
    est = LogisticRegression().fit(encoding.encode(frame), frame.income)
    assert isinstance(as_adapter(est), SklearnAdapter)
    assert isinstance(as_adapter(lambda X: X[:, 0]), CallableAdapter)
    with pytest.raises(InvalidConfigError):
        as_adapter(42)


def test_regression_and_multiclass_torch_outputs():
    torch.manual_seed(0)
    reg = TorchAdapter(task="regression", module=torch.nn.Linear(3, 1))
    assert reg.predict(np.ones((4, 3), np.float32)).shape == (4,)
    multi = TorchAdapter(task="multiclass", module=torch.nn.Linear(3, 4))
    p = multi.predict_proba(np.ones((4, 3), np.float32))
    assert p.shape == (4, 4) and np.allclose(p.sum(1), 1)
    assert digest_is_stable(reg.module)


def digest_is_stable(module: torch.nn.Module) -> bool:
    return tensor_digest(module.state_dict()) == tensor_digest(dict(module.state_dict()))


class _NotAChain(torch.nn.Module):
    """Linear layers only, but the forward is not their chain: logit = w * sum(x**2)."""

    def __init__(self) -> None:
        super().__init__()
        self.out = torch.nn.Linear(1, 1)

    def forward(self, x):
        return self.out((x ** 2).sum(dim=1, keepdim=True))


class _ReorderedChain(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.b = torch.nn.Linear(3, 3)
        self.a = torch.nn.Linear(3, 3)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def test_modules_whose_forward_is_not_their_layer_chain_expose_no_weights():
    assert linear_chain(_NotAChain()) is None
    assert linear_chain(_ReorderedChain()) is None
    adapter = TorchAdapter(task="binary", module=_NotAChain(), n_inputs=4)
    assert "weights" not in adapter.capabilities and adapter.n_inputs == 4


# ---- input width: encoded columns or raw columns ---------------------------------------------


def _raw_pipeline(frame):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    pipe = make_pipeline(ColumnTransformer([("cat", OneHotEncoder(), ["job"])], remainder="passthrough"),
                         LogisticRegression(max_iter=1000))
    return pipe.fit(frame[["age", "hours", "job"]], frame.income)


def _audit_data(frame, encoding):
    return build_audit_data(frame, DatasetSpec(target="income", positive_label=">50K",
                                               features=("age", "hours", "job")), encoding)


def test_width_error_says_raw_input_when_a_pipeline_takes_the_raw_columns(frame, encoding):
    from audit.core.adapter import check_width
    from audit.errors import DataValidationError

    from sklearn.linear_model import LogisticRegression

    # fitted on an array of 3 columns (no names): the width says it
    codes = np.column_stack([frame.age, frame.hours, frame.job.astype("category").cat.codes])
    model = SklearnAdapter(task="binary", estimator=LogisticRegression().fit(codes, frame.income),
                           encoding=encoding)
    with pytest.raises(DataValidationError,
                       match=r"expects 3 input columns, one per raw column \(age, hours, job\), but the "
                             r"encoding gives 5: this model takes the raw columns: set `\[model\] raw_input = true`"):
        check_width(model, _audit_data(frame, encoding))
    # fitted on the data frame: scikit-learn's feature_names_in_ say it
    model = SklearnAdapter(task="binary", estimator=_raw_pipeline(frame), encoding=encoding)
    with pytest.raises(DataValidationError, match=r"fitted on a data frame of the raw columns \(age, hours, "
                                                  r"job; .*this model takes the raw columns: set `\[model\] raw_input = true`"):
        check_width(model, _audit_data(frame, encoding))
    check_width(SklearnAdapter(task="binary", estimator=_raw_pipeline(frame), encoding=encoding, raw=True),
                _audit_data(frame, encoding))  # the fix works


def test_width_error_says_remove_raw_input_when_the_model_takes_encoded_columns(frame, encoding):
    from sklearn.linear_model import LogisticRegression

    from audit.core.adapter import check_width
    from audit.errors import DataValidationError

    est = LogisticRegression().fit(encoding.encode(frame), frame.income)
    model = SklearnAdapter(task="binary", estimator=est, encoding=encoding, raw=True)
    with pytest.raises(DataValidationError, match="this model takes the encoded columns: remove raw_input"):
        check_width(model, _audit_data(frame, encoding))


def test_width_error_with_raw_input_and_neither_width_names_the_features(frame, encoding):
    from sklearn.linear_model import LogisticRegression

    from audit.core.adapter import check_width
    from audit.errors import DataValidationError

    X = np.column_stack([encoding.encode(frame), np.ones((len(frame), 2))])
    model = SklearnAdapter(task="binary", estimator=LogisticRegression().fit(X, frame.income),
                           encoding=encoding, raw=True)
    with pytest.raises(DataValidationError, match=r"expects 7 input columns, but \[model\] raw_input = true "
                                                  r"hands it 3 raw columns .* would give 5. Check that \[data\] features"):
        check_width(model, _audit_data(frame, encoding))


def test_width_error_for_a_torch_model_of_raw_width_asks_for_its_encoding(frame, encoding):
    from audit.core.adapter import check_width
    from audit.errors import DataValidationError

    model = TorchAdapter(task="binary", module=torch.nn.Linear(3, 1))
    with pytest.raises(DataValidationError, match=r"one per raw column .* Use the encoding JSON the model was "
                                                  r"trained with .* raw_input applies only to scikit-learn"):
        check_width(model, _audit_data(frame, encoding))


def test_width_error_when_no_width_fits_names_both_and_the_encoding(frame, encoding):
    from audit.core.adapter import check_width
    from audit.errors import DataValidationError

    model = TorchAdapter(task="binary", module=torch.nn.Linear(7, 1))
    with pytest.raises(DataValidationError, match=r"expects 7 input columns but the encoded data has 5 "
                                                  r"\(3 raw features: age, hours, job\)\. Use the encoding JSON"):
        check_width(model, _audit_data(frame, encoding))


def test_scoring_a_matrix_of_the_wrong_width_names_both_widths(frame, encoding):
    model = TorchAdapter(task="binary", module=torch.nn.Linear(5, 1))
    with pytest.raises(ModelLoadError, match="expects 5 input columns but was given 4"):
        model.predict_proba(np.zeros((2, 4), np.float32))


def test_raw_input_is_refused_for_models_that_read_the_encoded_matrix(model_dir, encoding):
    with pytest.raises(InvalidConfigError, match="raw_input = true applies only to scikit-learn"):
        load_model(_spec(model_dir, raw_input=True), encoding=encoding)


def test_cli_says_raw_input_for_a_saved_raw_pipeline(tmp_path, frame, encoding):
    import skops.io as sio
    from typer.testing import CliRunner

    from audit.cli import app

    sio.dump(_raw_pipeline(frame), tmp_path / "model.skops")
    frame.to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "encoding.json").write_text(json.dumps(encoding.to_dict()))
    toml = ('[model]\npath = "model.skops"\nencoding = "encoding.json"\n\n[data]\npath = "data.csv"\n'
            'target = "income"\npositive_label = ">50K"\nfeatures = ["age", "hours", "job"]\n'
            'sensitive = ["sex"]\n\n[report]\nformats = ["json"]\n')
    (tmp_path / "audit.toml").write_text(toml)
    args = ["run", str(tmp_path / "audit.toml"), "--out", str(tmp_path / "out"), "-q", "--methods", "fairness"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 2 and "set `[model] raw_input = true`" in result.output
    (tmp_path / "audit.toml").write_text(toml.replace('encoding = "encoding.json"\n',
                                                      'encoding = "encoding.json"\nraw_input = true\n'))
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output


def test_model_fitted_on_raw_numeric_columns_of_the_same_width_is_refused_without_raw_input(frame):
    from sklearn.linear_model import LogisticRegression

    from audit.core.adapter import check_width
    from audit.core.dataset import Encoding
    from audit.errors import DataValidationError

    encoding = Encoding.fit(frame[["age", "hours"]])           # standardizes: encoded != raw values
    data = build_audit_data(frame, DatasetSpec(target="income", positive_label=">50K",
                                               features=("age", "hours")), encoding)
    est = LogisticRegression().fit(frame[["age", "hours"]], frame.income)   # a data frame: names kept
    with pytest.raises(DataValidationError, match=r"fitted on a data frame of the raw columns \(age, hours.*"
                                                  r"set `\[model\] raw_input = true`"):
        check_width(SklearnAdapter(task="binary", estimator=est, encoding=encoding), data)
    check_width(SklearnAdapter(task="binary", estimator=est, encoding=encoding, raw=True), data)
    plain = LogisticRegression().fit(encoding.encode(frame), frame.income)  # an array: no names
    check_width(SklearnAdapter(task="binary", estimator=plain, encoding=encoding), data)
