"""Models trained outside audit-suite, audited through `audit run` exactly as the README's config
reference documents: a scikit-learn Pipeline on raw columns saved with skops (`raw_input`,
`trusted_types`), a RandomForest on the encoding's columns (`encoding`), a scaled MLP pipeline,
a custom torch module (`architecture = "model:Class"` + `[model.init_args]`), and decisions only
(`[model] predictions`). Each is trained here on a few hundred rows of the German credit data
(benchmarks/data/german_credit.csv), and results.json is checked against pandas / scikit-learn /
torch computed in the test, never against numbers the audit produced itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from audit.cli import app

ROOT = Path(__file__).resolve().parents[1]
GERMAN = ROOT / "benchmarks" / "data" / "german_credit.csv"
CATEGORICAL = ["sex", "housing", "saving_accounts", "checking_account", "purpose"]
NUMERIC = ["job", "credit_amount", "duration", "age"]
FEATURES = CATEGORICAL + NUMERIC
# The [data] table every case shares: the target as written in the CSV ("1" = good risk).
DATA = ('[data]\npath = "audited.csv"\ntarget = "risk"\npositive_label = "1"\nsensitive = ["sex"]\n'
        'features = ["sex", "housing", "saving_accounts", "checking_account", "purpose", "job", '
        '"credit_amount", "duration", "age"]\n')
FAST = ('[methods.fairness]\nn_bootstrap = 100\nwhat_if = false\n\n[methods.surrogate]\ndepths = [1, 2, 3]\n\n'
        '[methods.shap]\nn_rows = 12\nn_bootstrap = 100\nbackground_size = 30\ncheck_n_rows = 3\n\n'
        '[report]\nformats = ["html", "json"]\n')


@pytest.fixture(scope="module")
def german() -> tuple[pd.DataFrame, pd.DataFrame]:
    """500 training rows and 200 audited rows, read the way a user's training script would."""
    frame = pd.read_csv(GERMAN)
    return frame.iloc[:500].reset_index(drop=True), frame.iloc[500:700].reset_index(drop=True)


def _audit(folder: Path, config: str, methods: str) -> dict:
    """`audit run` on the folder's audit.toml; exit 0, a report, and results.json's contents."""
    (folder / "audit.toml").write_text(config, encoding="utf-8")
    out = folder / "report"
    result = CliRunner().invoke(app, ["run", str(folder / "audit.toml"), "--out", str(out), "-q",
                                      "-m", methods], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<!doctype html") and "Group fairness" in html
    return json.loads((out / "results.json").read_text(encoding="utf-8"))


def _group_metric(doc: dict, metric: str, attribute: str = "sex") -> dict[str, float]:
    groups = doc["methods"]["fairness"]["result"]["attributes"][attribute]["groups"]
    return {g["group"]: g["metrics"][metric]["value"] for g in groups}


def _counts(doc: dict, attribute: str = "sex") -> dict[str, int]:
    groups = doc["methods"]["fairness"]["result"]["attributes"][attribute]["groups"]
    return {g["group"]: g["count"] for g in groups}


def _check_rates(doc: dict, audited: pd.DataFrame, decision: np.ndarray) -> None:
    """Per-group count, base rate, selection rate and TPR equal pandas / scikit-learn's."""
    from sklearn.metrics import recall_score

    frame = audited.assign(decision=np.asarray(decision, dtype=int))
    by = frame.groupby("sex")
    assert _counts(doc) == by.size().to_dict()
    expected = by["decision"].mean().to_dict()
    got = _group_metric(doc, "selection_rate")
    assert got.keys() == expected.keys()
    for group, rate in expected.items():
        assert got[group] == pytest.approx(rate, abs=1e-12), group
    for group, rows in by:
        assert _group_metric(doc, "base_rate")[group] == pytest.approx(rows.risk.mean(), abs=1e-12)
        assert _group_metric(doc, "tpr")[group] == pytest.approx(
            recall_score(rows.risk, rows.decision), abs=1e-12)


# --------------------------------------------------------------------------------------------
# A Pipeline(ColumnTransformer(OneHotEncoder, StandardScaler), HistGradientBoosting) on raw columns
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pipeline_run(german, tmp_path_factory):
    import skops.io as sio
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    train, audited = german
    pipe = Pipeline([
        ("prep", ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
                                    ("num", StandardScaler(), NUMERIC)])),
        ("model", HistGradientBoostingClassifier(max_iter=30, random_state=0))])
    pipe.fit(train[FEATURES], train.risk)
    d = tmp_path_factory.mktemp("pipeline")
    sio.dump(pipe, d / "model.skops")
    audited.to_csv(d / "audited.csv", index=False)
    trusted = sio.get_untrusted_types(file=str(d / "model.skops"))  # what the user reviews and lists
    config = (f'name = "german_pipeline"\n\n[model]\npath = "model.skops"\nraw_input = true\n'
              f'trusted_types = {json.dumps(trusted)}\n\n{DATA}\n{FAST}')
    doc = _audit(d, config, "fairness,surrogate,shap")
    return pipe, audited, doc


def test_raw_column_pipeline_from_skops_runs_and_its_selection_rates_match_sklearn(pipeline_run):
    pipe, audited, doc = pipeline_run
    assert doc["model"]["description"] == "scikit-learn Pipeline (model.skops)"
    assert {m: doc["methods"][m]["status"] for m in doc["methods"]} == {
        "fairness": "ok", "surrogate": "ok", "shap": "ok"}
    decision = pipe.predict_proba(audited[FEATURES])[:, 1] >= 0.5
    _check_rates(doc, audited, decision)
    shap = doc["methods"]["shap"]["result"]
    assert shap["additivity_ok"] is True
    # a boosted model is explained on its margin (log-odds), where Tree SHAP is exact
    p = pipe.predict_proba(audited[FEATURES].iloc[shap["rows"]])[:, 1]
    np.testing.assert_allclose(shap["outputs"], np.log(p / (1 - p)), atol=1e-6)


def test_raw_column_pipeline_of_trees_is_explained_by_tree_explainer(pipeline_run):
    _, _, doc = pipeline_run
    assert doc["methods"]["shap"]["result"]["explainer"] == "tree"


# --------------------------------------------------------------------------------------------
# A RandomForest on the encoding's columns (encoding.json written from the training data)
# --------------------------------------------------------------------------------------------


def test_random_forest_on_encoded_columns_runs_with_tree_shap_and_matches_sklearn(german, tmp_path):
    import skops.io as sio
    from sklearn.ensemble import RandomForestClassifier

    from audit import Encoding

    train, audited = german
    encoding = Encoding.fit(train[FEATURES])
    (tmp_path / "encoding.json").write_text(json.dumps(encoding.to_dict()), encoding="utf-8")
    forest = RandomForestClassifier(n_estimators=25, max_depth=5, random_state=0)
    forest.fit(encoding.encode(train), train.risk)
    sio.dump(forest, tmp_path / "model.skops")
    audited.to_csv(tmp_path / "audited.csv", index=False)
    trusted = sio.get_untrusted_types(file=str(tmp_path / "model.skops"))
    doc = _audit(tmp_path, f'name = "german_forest"\n\n[model]\npath = "model.skops"\n'
                           f'encoding = "encoding.json"\ntrusted_types = {json.dumps(trusted)}\n\n'
                           f'{DATA}\n{FAST}', "fairness,shap")
    X = encoding.encode(audited)
    proba = forest.predict_proba(X)[:, 1]
    _check_rates(doc, audited, proba >= 0.5)
    shap = doc["methods"]["shap"]["result"]
    assert shap["explainer"] == "tree" and shap["additivity_ok"] is True
    np.testing.assert_allclose(shap["outputs"], proba[shap["rows"]], atol=1e-6)


# --------------------------------------------------------------------------------------------
# make_pipeline(StandardScaler(), MLPClassifier) on raw numeric columns
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlp_run(german, tmp_path_factory):
    import skops.io as sio
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train, audited = german
    mlp = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(6,), max_iter=300, random_state=0))
    mlp.fit(train[NUMERIC], train.risk)
    d = tmp_path_factory.mktemp("mlp")
    sio.dump(mlp, d / "model.skops")
    audited.to_csv(d / "audited.csv", index=False)
    train.to_csv(d / "train.csv", index=False)
    trusted = sio.get_untrusted_types(file=str(d / "model.skops"))
    data = DATA.replace('features = ["sex", "housing", "saving_accounts", "checking_account", "purpose", ',
                        'train_path = "train.csv"\nfeatures = [')
    config = (f'name = "german_mlp"\n\n[model]\npath = "model.skops"\nraw_input = true\n'
              f'trusted_types = {json.dumps(trusted)}\n\n{data}\n{FAST}\n'
              '[methods.connection_weights]\nn_permutations = 39\nn_restarts = 1\nper_input = 0\n')
    doc = _audit(d, config, "fairness,connection_weights")
    return mlp, audited, doc


def test_scaled_mlp_pipeline_runs_and_its_selection_rates_match_sklearn(mlp_run):
    mlp, audited, doc = mlp_run
    assert doc["data"]["features"] == NUMERIC
    _check_rates(doc, audited, mlp.predict_proba(audited[NUMERIC])[:, 1] >= 0.5)
    # Never dropped silently: connection_weights ran, or the report says why it did not.
    cw = doc["methods"]["connection_weights"]
    assert cw["status"] == "ok" or cw["reason"]


def test_scaled_mlp_pipeline_gets_connection_weights(mlp_run):
    _, _, doc = mlp_run
    assert doc["methods"]["connection_weights"]["status"] == "ok"


# --------------------------------------------------------------------------------------------
# A custom torch module: model.py beside the config, weights in safetensors, encoding.json
# --------------------------------------------------------------------------------------------

MODEL_PY = '''
import torch


class CreditNet(torch.nn.Module):
    """An MLP with a direct (skip) path from the inputs to the logit."""

    def __init__(self, n_inputs, hidden=8):
        super().__init__()
        self.hidden = torch.nn.Sequential(torch.nn.Linear(n_inputs, hidden), torch.nn.Tanh(),
                                          torch.nn.Linear(hidden, 1))
        self.skip = torch.nn.Linear(n_inputs, 1, bias=False)

    def forward(self, x):
        return self.hidden(x) + self.skip(x)
'''


def test_custom_torch_module_from_model_py_runs_and_its_selection_rates_match_torch(german, tmp_path):
    import importlib.util

    import torch
    from safetensors.torch import save_file

    from audit import Encoding

    train, audited = german
    encoding = Encoding.fit(train[FEATURES])
    (tmp_path / "encoding.json").write_text(json.dumps(encoding.to_dict()), encoding="utf-8")
    (tmp_path / "model.py").write_text(MODEL_PY, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("_outside_credit_net", tmp_path / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    net = module.CreditNet(len(encoding.columns), hidden=8)
    X = torch.from_numpy(encoding.encode(train))
    y = torch.tensor(train.risk.to_numpy(), dtype=torch.float32)[:, None]
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(net(X), y).backward()
        opt.step()
    save_file(net.state_dict(), tmp_path / "model.safetensors")
    audited.to_csv(tmp_path / "audited.csv", index=False)
    config = (f'name = "german_torch"\n\n[model]\npath = "model.safetensors"\n'
              f'architecture = "model:CreditNet"\nencoding = "encoding.json"\noutput = "logit"\n\n'
              f'[model.init_args]\nn_inputs = {len(encoding.columns)}\nhidden = 8\n\n{DATA}\n{FAST}'
              '\n[methods.saliency]\nn_rows = 20\nn_bootstrap = 50\nmethods = ["integrated_gradients"]\n')
    doc = _audit(tmp_path, config, "fairness,saliency")
    with torch.no_grad():
        p = torch.sigmoid(net.eval()(torch.from_numpy(encoding.encode(audited)))).numpy()[:, 0]
    _check_rates(doc, audited, p >= 0.5)
    assert doc["methods"]["saliency"]["status"] == "ok"
    import hashlib

    files = {f["role"]: f for f in doc["provenance"]["files"]}  # the code that ran, and its hash
    assert files["architecture"]["code"] and files["architecture"]["path"].endswith("model.py")
    assert files["architecture"]["sha256"] == hashlib.sha256((tmp_path / "model.py").read_bytes()).hexdigest()
    assert files["weights"]["loader"] == "safetensors"
    assert any(f["path"].endswith("model.py") for f in doc["provenance"]["files"])  # the code that ran


# --------------------------------------------------------------------------------------------
# Decisions only: no model, a column of decisions beside outcomes and groups
# --------------------------------------------------------------------------------------------


def test_decisions_only_run_matches_pandas_selection_rates_and_tpr(german, tmp_path):
    _, audited = german
    # decisions as a lender logged them, labels written like the target: "1" approve, "0" decline
    decision = ((audited.duration <= 24) & (audited.checking_account != "little")).astype(int)
    audited.assign(decision=decision)[["risk", "sex", "age", "decision"]].to_csv(
        tmp_path / "audited.csv", index=False)
    doc = _audit(tmp_path, 'name = "german_decisions"\n\n[model]\npredictions = "decision"\n\n'
                           '[data]\npath = "audited.csv"\ntarget = "risk"\npositive_label = "1"\n'
                           'sensitive = ["sex"]\n\n[methods.fairness]\nn_bootstrap = 100\n\n'
                           '[report]\nformats = ["html", "json"]\n', "fairness")
    assert doc["model"]["capabilities"] == ["predictions"]
    _check_rates(doc, audited, decision.to_numpy())


# --------------------------------------------------------------------------------------------
# A model fitted on raw columns but configured without raw_input
# --------------------------------------------------------------------------------------------


def test_model_fitted_on_raw_columns_without_raw_input_is_refused_not_mispredicted(german, tmp_path):
    import skops.io as sio
    from sklearn.ensemble import RandomForestClassifier

    train, audited = german
    forest = RandomForestClassifier(n_estimators=20, max_depth=4, random_state=0)
    forest.fit(train[NUMERIC], train.risk)  # a DataFrame of raw numbers: needs raw_input = true
    sio.dump(forest, tmp_path / "model.skops")
    audited.to_csv(tmp_path / "audited.csv", index=False)
    trusted = sio.get_untrusted_types(file=str(tmp_path / "model.skops"))
    (tmp_path / "audit.toml").write_text(
        f'[model]\npath = "model.skops"\ntrusted_types = {json.dumps(trusted)}\n\n'
        + DATA.replace('"sex", "housing", "saving_accounts", "checking_account", "purpose", ', "")
        + '\n[report]\nformats = ["json"]\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["run", str(tmp_path / "audit.toml"), "--out", str(tmp_path / "out"),
                                      "-q", "-m", "fairness"], catch_exceptions=False)
    if result.exit_code == 0:  # either the model gets its raw columns after all, or ...
        doc = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
        expected = forest.predict_proba(audited[NUMERIC])[:, 1] >= 0.5
        rates = _group_metric(doc, "selection_rate")
        truth = audited.assign(d=expected).groupby("sex")["d"].mean().to_dict()
        assert rates == pytest.approx(truth), "the audit reported selection rates the model does not have"
    else:  # ... the run stops with the fix
        assert result.exit_code == 2 and "raw_input" in result.output
