"""The model-agnostic response-permutation test of permutation importance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from audit.core.adapter import SklearnAdapter, TorchAdapter
from audit.core.dataset import DatasetSpec, build_audit_data
from audit.core.method import RunContext
from audit.errors import InvalidConfigError
from audit.methods.permutation_significance import PermutationSignificance, PermutationSignificanceConfig


def _data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"strong": rng.normal(size=n), "noise": rng.normal(size=n),
                          "g": rng.choice(["a", "b", "c"], n)})
    frame["y"] = 2.0 * frame.strong + 1.0 * (frame.g == "a") + 0.5 * rng.normal(size=n)
    return build_audit_data(frame, DatasetSpec(target="y", task="regression"))


def test_planted_feature_is_significant_and_noise_is_not():
    from sklearn.linear_model import Ridge

    data = _data()
    est = Ridge(alpha=1.0).fit(data.X, data.y)
    model = SklearnAdapter(task="regression", estimator=est)
    method = PermutationSignificance()
    cfg = PermutationSignificanceConfig(n_permutations=39, n_repeats=3, n_jobs=1)
    assert method.skip_reason(model, data, cfg) is None
    r = method.run(model, data, cfg, RunContext(rng=np.random.default_rng(0)))
    by = {f.feature: f for f in r.features}
    assert by["strong"].p == pytest.approx(1 / 40) and by["strong"].significant
    assert by["g"].significant                      # one-hot group permuted jointly
    assert not by["noise"].significant
    assert r.scoring == "r2" and r.score_observed > 0.8 and r.n_null_used == 39
    assert set(method.figures(r, data)) == {"importance"}
    from audit.report.render import _environment, templates_dir

    html = _environment(str(templates_dir())).get_template("partials/permutation_significance.html.j2").render(
        r=r, cfg=cfg, figs={"importance": "data:image/png;base64,AAAA"}, report=None)
    assert "unrelated to every feature" in html


def test_torch_model_is_skipped_and_bad_config_refused():
    import torch

    data = _data(60)
    model = TorchAdapter(task="regression", module=torch.nn.Linear(5, 1), output_kind="identity")
    assert "sklearn" in PermutationSignificance().skip_reason(model, data, PermutationSignificanceConfig())
    with pytest.raises(InvalidConfigError):
        PermutationSignificanceConfig.from_dict({"n_permutations": 10}, method="permutation_significance")
    with pytest.raises(InvalidConfigError):
        PermutationSignificanceConfig.from_dict({"n_permutations": 50.5}, method="permutation_significance")


def _six_features(n=150, seed=1):
    """One real effect among six features (the case where B = 99 gave "0 features" after BH)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, 6)), columns=[f"x{i}" for i in range(6)])
    frame["y"] = 1.5 * frame.x0 + rng.normal(size=n)
    return build_audit_data(frame, DatasetSpec(target="y", task="regression"))


def _run_six(**options):
    from sklearn.linear_model import LinearRegression

    data = _six_features()
    model = SklearnAdapter(task="regression", estimator=LinearRegression().fit(data.X, data.y))
    cfg = PermutationSignificanceConfig(n_repeats=1, n_jobs=1, **options)
    method = PermutationSignificance()
    return method, method.run(model, data, cfg, RunContext(rng=np.random.default_rng(0))), cfg


def test_b99_with_six_features_cannot_pass_bh_alone_and_says_so_naming_119():
    method, r, cfg = _run_six(n_permutations=99)
    by = {f.feature: f for f in r.features}
    assert by["x0"].p == pytest.approx(1 / 100)
    assert by["x0"].p_bh == pytest.approx(6 / 100) and r.n_significant_bh == 0    # floor 6/(B+1) > 0.05
    assert by["x0"].p_maxt == pytest.approx(1 / 100) and r.n_significant_maxt == 1
    assert len(r.reachability) == 1 and "at least 119" in r.reachability[0] and "0.06" in r.reachability[0]
    texts = [f.text for f in method.findings(r, cfg)]
    assert "0 have importance above the null after Benjamini–Hochberg" in texts[0]
    assert "1 after Westfall–Young max-T (family-wise error) (x0)" in texts[0]
    assert r.reachability[0] in texts


def test_default_b_is_chosen_from_the_family_size_so_a_lone_effect_passes_bh():
    method, r, cfg = _run_six()
    assert r.n_permutations == 239 and "6 features" in r.n_permutations_chosen    # 6/240 = alpha/2
    by = {f.feature: f for f in r.features}
    assert by["x0"].p_bh == pytest.approx(6 / 240) and by["x0"].significant
    assert r.n_significant_bh == 1 and r.n_significant_maxt == 1 and r.reachability == ()
    from audit.report.render import _environment, templates_dir

    html = _environment(str(templates_dir())).get_template("partials/permutation_significance.html.j2").render(
        r=r, cfg=cfg, figs={}, report=None)
    assert "B = 239 times (chosen from the 6 features" in html and "after Westfall–Young" in html


def test_refits_that_do_not_converge_are_counted_not_printed(recwarn):
    """An MLP limited to 2 iterations never converges: every refit is counted, no warning leaks."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor

    data = _six_features()
    est = MLPRegressor(hidden_layer_sizes=(4,), max_iter=2, random_state=0).fit(data.X, data.y)
    model = SklearnAdapter(task="regression", estimator=est)
    cfg = PermutationSignificanceConfig(n_permutations=19, n_repeats=1, n_jobs=1)
    method = PermutationSignificance()
    recwarn.clear()
    r = method.run(model, data, cfg, RunContext(rng=np.random.default_rng(0)))
    assert r.unconverged_refits == 20
    assert not [w for w in recwarn if issubclass(w.category, ConvergenceWarning)]
    assert any("20 of 20 refits stopped" in f.text for f in method.findings(r, cfg))
