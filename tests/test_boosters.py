"""XGBoost and LightGBM models in their own file formats: trained here, saved with save_model,
loaded without running code, matched to the data's classes, audited through the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from audit.cli import app
from audit.core.loading import ModelSpec, load_model
from audit.core.dataset import DatasetSpec, Encoding, build_audit_data
from audit.errors import DataValidationError, InvalidConfigError, MissingDependencyError, ModelLoadError
from audit.runner import check_compatible
from tests.conftest import make_frame

xgb = pytest.importorskip("xgboost")
lgb = pytest.importorskip("lightgbm")

FEATURES = ["age", "hours", "job"]


@pytest.fixture(scope="module")
def setup():
    frame = make_frame(600)
    enc = Encoding.fit(frame[FEATURES])
    return frame, enc, enc.encode(frame)


def _data(frame, enc, **kw):
    spec = {"target": "income", "positive_label": ">50K", "features": tuple(FEATURES), **kw}
    return build_audit_data(frame, DatasetSpec(**spec), enc)


def _load(path, data, **kw):
    model = load_model(ModelSpec(path=str(path), **kw), encoding=data.encoding)
    check_compatible(model, data)
    return model


def _save_xgb(est, path: Path) -> Path:
    est.save_model(path)
    return path


def _save_lgb(est, path: Path) -> Path:
    est.booster_.save_model(str(path))
    return path


def test_xgboost_json_and_ubjson_and_lightgbm_text_give_the_libraries_probabilities(setup, tmp_path):
    frame, enc, X = setup
    y = (frame.income == ">50K").astype(int)
    xc = xgb.XGBClassifier(n_estimators=15, max_depth=3).fit(X, y)
    lc = lgb.LGBMClassifier(n_estimators=15, verbose=-1).fit(X, y)
    data = _data(frame, enc)
    for path, ref in ((_save_xgb(xc, tmp_path / "m.json"), xc), (_save_xgb(xc, tmp_path / "m.ubj"), xc),
                      (_save_lgb(lc, tmp_path / "m.txt"), lc)):
        model = _load(path, data)
        np.testing.assert_allclose(model.predict_proba(X), ref.predict_proba(X), atol=1e-6)
        assert "trees" in model.capabilities and "sklearn" not in model.capabilities
        assert model.estimator is not None and type(model.estimator).__name__ == "Booster"
        rec = model.loaded[0]
        assert rec.code is None and not rec.trusted_pickle and "no code" in rec.loader


def test_booster_files_load_under_untrusted_config_without_trust_code(setup, tmp_path):
    frame, enc, X = setup
    xc = xgb.XGBClassifier(n_estimators=5).fit(X, (frame.income == ">50K").astype(int))
    path = _save_xgb(xc, tmp_path / "m.json")
    model = load_model(ModelSpec(path=str(path)), encoding=enc, untrusted_config=True)
    assert model.loaded[0].code is None


def test_format_key_reads_any_file_name_and_rejects_unknown_formats(setup, tmp_path):
    frame, enc, X = setup
    lc = lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(X, (frame.income == ">50K").astype(int))
    path = _save_lgb(lc, tmp_path / "booster.model")
    model = _load(path, _data(frame, enc), format="lightgbm")
    np.testing.assert_allclose(model.predict_proba(X), lc.predict_proba(X), atol=1e-9)
    with pytest.raises(InvalidConfigError, match="'format' must be one of"):
        load_model(ModelSpec(path=str(path), format="catboost"), encoding=enc)
    with pytest.raises(ModelLoadError, match="not a readable XGBoost model file"):
        load_model(ModelSpec(path=str(path), format="xgboost"), encoding=enc)


def test_positive_label_that_sorts_first_takes_the_boosters_class_zero(setup, tmp_path):
    # LabelEncoder order: "<=50K" is class 0; the audit's positive label is "<=50K" here.
    frame, enc, X = setup
    y = (frame.income == ">50K").astype(int)
    xc = xgb.XGBClassifier(n_estimators=10).fit(X, y)
    path = _save_xgb(xc, tmp_path / "m.json")
    model = _load(path, _data(frame, enc, positive_label="<=50K"))
    np.testing.assert_allclose(model.predict_proba(X)[:, 1], xc.predict_proba(X)[:, 0], atol=1e-6)
    assert model.class_order == (1, 0)
    # [model] classes overrides the sorted order: here it says output 1 is "<=50K"
    model = _load(path, _data(frame, enc), classes=("<=50K", ">50K"))
    np.testing.assert_allclose(model.predict_proba(X)[:, 1], xc.predict_proba(X)[:, 1], atol=1e-6)
    flipped = _load(path, _data(frame, enc), classes=(">50K", "<=50K"))
    np.testing.assert_allclose(flipped.predict_proba(X)[:, 1], xc.predict_proba(X)[:, 0], atol=1e-6)


def test_multiclass_numeric_labels_sort_numerically_like_labelencoder(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=400), "b": rng.normal(size=400)})
    codes = np.digitize(frame.a + 0.3 * frame.b, [-0.7, 0.0, 0.7])
    labels = np.array([2, 9, 10, 30])       # as text "10" < "2" < "30" < "9"
    frame["y"] = labels[codes]
    enc = Encoding.fit(frame[["a", "b"]])
    X = enc.encode(frame)
    for est, name in ((xgb.XGBClassifier(n_estimators=10), "m.json"),
                      (lgb.LGBMClassifier(n_estimators=10, verbose=-1), "m.txt")):
        est.fit(X, codes)
        path = _save_xgb(est, tmp_path / name) if name.endswith("json") else _save_lgb(est, tmp_path / name)
        data = build_audit_data(frame, DatasetSpec(target="y", task="multiclass", features=("a", "b")), enc)
        model = _load(path, data, task="multiclass")
        order = [list(labels.astype(str)).index(c) for c in data.classes]
        np.testing.assert_allclose(model.predict_proba(X), est.predict_proba(X)[:, order], atol=1e-6)
        assert np.mean(model.predictions(data).labels == data.y) > 0.9


def test_classes_that_do_not_match_the_target_are_a_clear_error(setup, tmp_path):
    frame, enc, X = setup
    xc = xgb.XGBClassifier(n_estimators=5).fit(X, (frame.income == ">50K").astype(int))
    path = _save_xgb(xc, tmp_path / "m.json")
    with pytest.raises(DataValidationError, match=r"\[model\] classes"):
        _load(path, _data(frame, enc), classes=("no", "yes"))
    with pytest.raises(InvalidConfigError, match="lists 3 labels"):
        load_model(ModelSpec(path=str(path), classes=("a", "b", "c")), encoding=enc)


def test_regression_boosters_predict_values(tmp_path):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)})
    frame["y"] = 2 * frame.a - frame.b + rng.normal(scale=0.1, size=300)
    enc = Encoding.fit(frame[["a", "b"]])
    X = enc.encode(frame)
    data = build_audit_data(frame, DatasetSpec(target="y", task="regression", features=("a", "b")), enc)
    xr = xgb.XGBRegressor(n_estimators=20).fit(X, frame.y)
    lr = lgb.LGBMRegressor(n_estimators=20, verbose=-1).fit(X, frame.y)
    for path, ref in ((_save_xgb(xr, tmp_path / "r.json"), xr), (_save_lgb(lr, tmp_path / "r.txt"), lr)):
        model = _load(path, data, task="regression")
        np.testing.assert_allclose(model.predict(X), ref.predict(X), rtol=1e-5, atol=1e-5)


def test_objective_that_does_not_fit_the_task_names_both(setup, tmp_path):
    frame, enc, X = setup
    xr = xgb.XGBRegressor(n_estimators=5).fit(X, frame.age)
    path = _save_xgb(xr, tmp_path / "r.json")
    with pytest.raises(ModelLoadError, match=r"reg:squarederror.*task = \"regression\""):
        load_model(ModelSpec(path=str(path), task="binary"), encoding=enc)


def test_raw_input_is_refused_for_boosters(setup, tmp_path):
    frame, enc, X = setup
    xc = xgb.XGBClassifier(n_estimators=5).fit(X, (frame.income == ">50K").astype(int))
    path = _save_xgb(xc, tmp_path / "m.json")
    with pytest.raises(InvalidConfigError, match="raw_input"):
        load_model(ModelSpec(path=str(path), raw_input=True), encoding=enc)


def test_feature_names_saved_in_the_booster_must_match_the_encoded_columns(setup, tmp_path):
    frame, enc, X = setup
    cols = list(enc.columns)
    renamed = pd.DataFrame(X, columns=cols[::-1])   # same width, other order
    xc = xgb.XGBClassifier(n_estimators=5).fit(renamed, (frame.income == ">50K").astype(int))
    path = _save_xgb(xc, tmp_path / "m.json")
    with pytest.raises(DataValidationError, match="first difference at column 0"):
        _load(path, _data(frame, enc))


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_missing_library_says_pip_install_and_exits_2(setup, tmp_path, monkeypatch, library):
    frame, enc, X = setup
    path = tmp_path / ("m.json" if library == "xgboost" else "m.txt")
    path.write_text("{}" if library == "xgboost" else "tree\n")
    monkeypatch.setitem(sys.modules, library, None)   # import now raises ImportError
    with pytest.raises(MissingDependencyError, match=f"pip install {library}") as info:
        load_model(ModelSpec(path=str(path)), encoding=enc)
    assert info.value.exit_code == 2


def _cli_dir(tmp_path: Path, frame: pd.DataFrame, enc: Encoding, model_name: str, extra: str = "") -> Path:
    frame.to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "encoding.json").write_text(json.dumps(enc.to_dict()))
    (tmp_path / "audit.toml").write_text(
        f'name = "boost"\nseed = 0\n\n[model]\npath = "{model_name}"\nencoding = "encoding.json"\n'
        f'task = "binary"\n{extra}\n[data]\npath = "data.csv"\ntarget = "income"\npositive_label = ">50K"\n'
        'features = ["age", "hours", "job"]\nsensitive = ["sex"]\n\n[methods.shap]\nn_rows = 40\n'
        'background_size = 20\n\n[report]\nformats = ["json"]\n')
    return tmp_path / "audit.toml"


@pytest.mark.parametrize("name", ["model.json", "model.ubj", "model.txt"])
def test_cli_audits_a_saved_booster_with_fairness_and_shap(tmp_path, name):
    frame = make_frame(300)
    enc = Encoding.fit(frame[FEATURES])
    X, y = enc.encode(frame), (frame.income == ">50K").astype(int)
    if name == "model.txt":
        _save_lgb(lgb.LGBMClassifier(n_estimators=10, verbose=-1).fit(X, y), tmp_path / name)
    else:
        _save_xgb(xgb.XGBClassifier(n_estimators=10, max_depth=3).fit(X, y), tmp_path / name)
    config = _cli_dir(tmp_path, frame, enc, name)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(config), "--out", str(out), "-q", "--methods", "fairness,shap"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "results.json").read_text())
    for method in ("fairness", "shap"):
        assert doc["methods"][method]["status"] == "ok", doc["methods"][method]
    assert doc["methods"]["shap"]["result"]["explainer"] in ("exact", "kernel", "tree")
    assert ("LightGBM" if name.endswith(".txt") else "XGBoost") in json.dumps(doc["model"])
    model_files = [f for f in doc["provenance"]["files"] if f["role"] == "model"]
    assert model_files and model_files[0]["code"] is None and "no code" in model_files[0]["loader"]


def test_cli_corrupted_booster_exits_2_with_one_line(tmp_path):
    frame = make_frame(100)
    enc = Encoding.fit(frame[FEATURES])
    X, y = enc.encode(frame), (frame.income == ">50K").astype(int)
    _save_lgb(lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(X, y), tmp_path / "model.txt")
    blob = (tmp_path / "model.txt").read_bytes()
    (tmp_path / "model.txt").write_bytes(blob[: len(blob) // 2])
    config = _cli_dir(tmp_path, frame, enc, "model.txt")
    result = CliRunner().invoke(app, ["run", str(config), "--out", str(tmp_path / "out"), "-q",
                                      "--methods", "fairness"], catch_exceptions=False)
    assert result.exit_code == 2
    assert "Traceback" not in result.output and "not a readable LightGBM model file" in result.output


@pytest.mark.parametrize("classes", [["a"], ["a", "a"], "ab", [True, False], [1.5, 2]])
def test_config_classes_must_be_distinct_labels(tmp_path, classes):
    from audit.config import AuditPlan

    doc = {"model": {"path": "m.json", "classes": classes}, "data": {"path": "d.csv", "target": "y"}}
    with pytest.raises(InvalidConfigError, match=r"\[model\] 'classes' must be a list of at least two distinct"):
        AuditPlan.from_dict(doc, base_dir=tmp_path)
    doc["model"]["classes"] = ["no", 1]
    assert AuditPlan.from_dict(doc, base_dir=tmp_path).model.classes == ("no", "1")


def test_xgboost_saved_after_early_stopping_scores_best_iteration_like_xgbclassifier(setup, tmp_path):
    frame, enc, X = setup
    y = (frame.income == ">50K").astype(int).to_numpy()
    est = xgb.XGBClassifier(n_estimators=300, learning_rate=0.8, max_depth=5, early_stopping_rounds=3)
    est.fit(X[:400], y[:400], eval_set=[(X[400:], y[400:])], verbose=False)
    path = _save_xgb(est, tmp_path / "es.json")
    deployed = xgb.XGBClassifier()
    deployed.load_model(path)
    full = xgb.Booster()
    full.load_model(path)
    assert full.num_boosted_rounds() > est.best_iteration + 1   # the file holds trees past the best
    model = _load(path, _data(frame, enc))
    np.testing.assert_allclose(model.predict_proba(X)[:, 1], deployed.predict_proba(X)[:, 1], atol=1e-6)
    assert f"{est.best_iteration + 1} of {full.num_boosted_rounds()} boosting rounds" in model.description
    assert "best_iteration" in model.loaded[0].loader
    assert model.estimator.num_boosted_rounds() == est.best_iteration + 1   # shap explains the same trees


def test_lightgbm_saved_with_all_trees_scores_every_tree_like_its_booster(setup, tmp_path):
    frame, enc, X = setup
    y = (frame.income == ">50K").astype(int).to_numpy()
    est = lgb.LGBMClassifier(n_estimators=200, learning_rate=0.8, verbose=-1)
    est.fit(X[:400], y[:400], eval_set=[(X[400:], y[400:])], callbacks=[lgb.early_stopping(3, verbose=False)])
    path = tmp_path / "es.txt"
    est.booster_.save_model(str(path), num_iteration=-1)
    deployed = lgb.Booster(model_file=str(path))
    model = _load(path, _data(frame, enc))
    np.testing.assert_allclose(model.predict_proba(X)[:, 1], deployed.predict(X), atol=1e-9)
    assert f"all {deployed.current_iteration()} boosting rounds saved" in model.description


@pytest.fixture(scope="module")
def lgb_text(setup, tmp_path_factory):
    frame, enc, X = setup
    y = (frame.income == ">50K").astype(int)
    path = tmp_path_factory.mktemp("lgb") / "model.txt"
    _save_lgb(lgb.LGBMClassifier(n_estimators=4, num_leaves=4, verbose=-1).fit(X, y), path)
    return path.read_text()


def _tree0(text: str, key: str) -> str:
    block = text.split("Tree=0\n", 1)[1]
    return next(ln for ln in block.splitlines() if ln.startswith(key + "="))


@pytest.mark.parametrize("key, edit, says", [
    ("left_child", lambda v: v[:-1] + [str(-(len(v) + 2))], "out of range"),       # leaf num_leaves: one past
    ("right_child", lambda v: v[:-1] + ["0"], "reached twice"),                      # a cycle back to the root
    ("split_feature", lambda v: ["999"] + v[1:], "split_feature 999"),
    ("leaf_value", lambda v: v[:-1], "'leaf_value' has"),
    ("num_leaves", lambda v: ["0"], "num_leaves must be one number >= 1"),
    ("left_child", lambda v: ["1_0"] + v[1:], "integers separated by single spaces"),
])
def test_lightgbm_tree_that_would_read_outside_its_arrays_is_refused_naming_tree_and_field(
        setup, tmp_path, lgb_text, key, edit, says):
    frame, enc, _ = setup
    line = _tree0(lgb_text, key)
    bad = f"{key}=" + " ".join(edit(line.split("=", 1)[1].split(" ")))
    path = tmp_path / "model.txt"
    path.write_text(lgb_text.replace(line, bad, 1))
    with pytest.raises(ModelLoadError, match="not a readable LightGBM model file: tree 0") as err:
        _load(path, _data(frame, enc))
    assert says in str(err.value) and key.split("_")[0] in str(err.value)


def test_lightgbm_tree_sizes_that_disagree_with_the_trees_are_refused(setup, tmp_path, lgb_text):
    frame, enc, _ = setup
    sizes = next(ln for ln in lgb_text.splitlines() if ln.startswith("tree_sizes="))
    path = tmp_path / "model.txt"
    path.write_text(lgb_text.replace(sizes, sizes + "0", 1))
    with pytest.raises(ModelLoadError, match="tree_sizes"):
        _load(path, _data(frame, enc))


def test_booster_file_over_the_memory_budget_is_refused_before_it_is_read(setup, tmp_path, lgb_text):
    from audit.core.limits import memory_limit

    frame, enc, _ = setup
    path = tmp_path / "model.txt"
    path.write_text(lgb_text + " " * 2 * 1024**2)
    with memory_limit(1024**2), pytest.raises(ModelLoadError, match=r"model file .* is 2(\.\d+)? MiB, more than "
                                                                     r"the memory budget of 1 MiB"):
        _load(path, _data(frame, enc))


def test_bound_booster_scores_every_audited_row_in_the_child_process_first(setup, tmp_path, lgb_text, monkeypatch):
    import audit.core.boosters as boosters

    frame, enc, _ = setup
    path = tmp_path / "model.txt"
    path.write_text(lgb_text)
    data = _data(frame, enc)
    seen = []
    real = boosters._probe
    monkeypatch.setattr(boosters, "_probe", lambda fmt, blob, p, X=None: (seen.append(X), real(fmt, blob, p, X)))
    _load(path, data)
    assert seen[0] is None and seen[-1] is data.X


def test_probe_reports_a_crash_while_scoring_the_audited_rows(tmp_path, monkeypatch, lgb_text):
    import audit.core.boosters as boosters

    # a child that dies on the real rows only: stands in for a tree path no synthetic row takes
    monkeypatch.setattr(boosters, "_PROBE", boosters._PROBE.replace(
        'X = np.load(sys.argv[3], mmap_mode="r")', 'import os, signal; os.kill(os.getpid(), signal.SIGSEGV)'))
    with pytest.raises(ModelLoadError, match="crashed scoring the audited rows with it .SIGSEGV"):
        boosters._probe("lightgbm", lgb_text.encode(), tmp_path / "m.txt", np.zeros((3, 2)))


def test_xgboost_tree_whose_children_loop_back_is_refused_before_it_is_scored(setup, tmp_path):
    frame, enc, X = setup
    y = (frame.income == ">50K").astype(int)
    path = _save_xgb(xgb.XGBClassifier(n_estimators=2, max_depth=3).fit(X, y), tmp_path / "m.json")
    doc = json.loads(path.read_text())
    tree = doc["learner"]["gradient_booster"]["model"]["trees"][0]
    node = next(i for i in range(1, len(tree["left_children"])) if tree["left_children"][i] != -1)
    tree["left_children"][node] = tree["parents"][node]      # a cycle: the traversal would never end
    path.write_text(json.dumps(doc))
    with pytest.raises(ModelLoadError, match=rf"tree 0: left_children\[{node}\] = {tree['parents'][node]} is not "
                                             "a child node"):
        _load(path, _data(frame, enc))
