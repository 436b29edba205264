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
