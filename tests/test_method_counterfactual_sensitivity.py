"""Counterfactual sensitivity on images and sequences: a planted pixel / lag that alone decides
the outcome is the input the counterfactual changes, and the model confirms every result."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from audit.core.adapter import as_adapter
from audit.core.dataset import DatasetSpec
from audit.core.method import RunContext
from audit.core.modalities import ImageSpec, SequenceSpec, build_image_data, build_sequence_data
from audit.errors import InvalidConfigError
from audit.methods.counterfactual_sensitivity import CounterfactualSensitivity, SensitivityConfig

PIXEL = (3, 5)
LAG = 3  # t-3 of indicator f0


@pytest.fixture(scope="module")
def planted_images(tmp_path_factory):
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 16, size=(80, 8, 8)).round()
    y = (X[:, PIXEL[0], PIXEL[1]] > 8).astype(int)
    path = tmp_path_factory.mktemp("img") / "planted.npz"
    np.savez(path, X=X, y=y)
    data = build_image_data(ImageSpec(str(path), scale=(16.0,), patch=2), DatasetSpec(target="y"))
    conv = nn.Conv2d(1, 2, kernel_size=8)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.copy_(torch.tensor([4.0, -4.0]))
        conv.weight[0, 0, PIXEL[0], PIXEL[1]] = -8.0
        conv.weight[1, 0, PIXEL[0], PIXEL[1]] = 8.0
    return as_adapter(nn.Sequential(conv, nn.Flatten()).eval(), task="binary"), data


@pytest.fixture(scope="module")
def planted_sequences(tmp_path_factory):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 6, 2))
    t = 6 - LAG
    path = tmp_path_factory.mktemp("seq") / "planted.npz"
    np.savez(path, X=X, y=3.0 * X[:, t, 0])
    data = build_sequence_data(SequenceSpec(str(path)), DatasetSpec(target="y", features=("f0", "f1"),
                                                                      task="regression"))
    lin = nn.Linear(12, 1)
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.zero_()
        lin.weight[0, t * 2 + 0] = 3.0
    return as_adapter(nn.Sequential(nn.Flatten(), lin).eval(), task="regression"), data


def test_planted_pixel_is_the_only_pixel_changed_and_the_class_flips(planted_images):
    model, data = planted_images
    result = CounterfactualSensitivity().run(model, data, SensitivityConfig(max_rows=30, n_examples=3),
                                             RunContext.default())
    assert result.validity == 1.0 and result.mean_changed == 1.0
    for ex in result.examples:
        diff = np.asarray(ex.difference)
        assert np.flatnonzero(diff.ravel()).tolist() == [PIXEL[0] * 8 + PIXEL[1]]
    fig = CounterfactualSensitivity().figures(result, data)["sensitivity"]
    assert any("red: higher" in ax.get_ylabel() for ax in fig.axes)


def test_planted_lag_moves_the_forecast_by_the_shift(planted_sequences):
    model, data = planted_sequences
    result = CounterfactualSensitivity().run(model, data, SensitivityConfig(max_rows=20, shift=0.6),
                                             RunContext.default())
    assert result.validity == 1.0 and result.mean_changed == 1.0
    for ex in result.examples:
        assert ex.after >= ex.before + 0.6 - 1e-6
        changed = np.argwhere(np.asarray(ex.difference) != 0)
        assert len(changed) == 1 and result.row_labels[changed[0][0]] == "f0"
        assert result.col_labels[changed[0][1]] == f"t-{LAG}"


def test_tabular_data_is_left_to_the_recourse_method(frame, encoding):
    from audit.core.dataset import build_audit_data
    from tests.conftest import fit_torch_mlp

    net, _ = fit_torch_mlp(frame, encoding)
    data = build_audit_data(frame, DatasetSpec(target="income", positive_label=">50K"), encoding)
    reason = CounterfactualSensitivity().skip_reason(as_adapter(net), data, SensitivityConfig())
    assert "tabular data gets actionable counterfactuals" in reason


@pytest.mark.parametrize("options", [{"shift": -1.0}, {"max_rows": 0}, {"learning_rate": 0.0}])
def test_invalid_options_are_config_errors(options):
    with pytest.raises(InvalidConfigError):
        SensitivityConfig.from_dict(options, method="counterfactual_sensitivity")
