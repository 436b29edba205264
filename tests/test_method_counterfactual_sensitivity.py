"""Counterfactual sensitivity on images and sequences: a planted pixel / lag that alone decides
the outcome is the input the counterfactual changes, and the model confirms every result."""

from __future__ import annotations

import numpy as np
import pytest

from audit.core.adapter import as_adapter
from audit.core.dataset import DatasetSpec
from audit.core.method import RunContext
from audit.errors import InvalidConfigError
from audit.methods.counterfactual_sensitivity import CounterfactualSensitivity, SensitivityConfig

from tests.conftest import LAG, PIXEL


def test_planted_pixel_is_the_only_pixel_changed_and_the_class_flips(planted_images):
    model, data = planted_images
    result = CounterfactualSensitivity().run(model, data, SensitivityConfig(max_search_rows=30, n_examples=3),
                                             RunContext.default())
    assert result.validity == 1.0 and result.mean_changed == 1.0
    for ex in result.examples:
        diff = np.asarray(ex.difference)
        assert np.flatnonzero(diff.ravel()).tolist() == [PIXEL[0] * 8 + PIXEL[1]]
    fig = CounterfactualSensitivity().figures(result, data)["sensitivity"]
    assert any("red: higher" in ax.get_ylabel() for ax in fig.axes)


def test_planted_lag_moves_the_forecast_by_the_shift(planted_sequences):
    model, data = planted_sequences
    result = CounterfactualSensitivity().run(model, data, SensitivityConfig(max_search_rows=20, shift=0.6),
                                             RunContext.default())
    # Values stay inside the observed range, so a row whose planted input (forecast = 3 x it) is
    # within 0.2 of the observed maximum cannot rise by 0.6: every other row must succeed.
    planted = data.X[:, data.X.shape[1] - LAG, 0]
    infeasible = {int(r) for r in np.flatnonzero(planted.max() - planted < 0.2 - 1e-9)}
    assert set(result.rows_without) <= infeasible
    assert result.n_searched - len(result.rows_without) > 0 and result.mean_changed == 1.0
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


@pytest.mark.parametrize("options", [{"shift": -1.0}, {"max_search_rows": 0}, {"learning_rate": 0.0}])
def test_invalid_options_are_config_errors(options):
    with pytest.raises(InvalidConfigError):
        SensitivityConfig.from_dict(options, method="counterfactual_sensitivity")
