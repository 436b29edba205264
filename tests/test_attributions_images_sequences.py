"""Attributions on images and sequences against planted answers.

A pixel (images) or a lag of one indicator (sequences) that alone decides the output must be where
saliency/Integrated Gradients, occlusion, SHAP and LIME put the attribution; the heatmaps carry a
colour bar; the randomization sanity check flags an attribution that ignores the weights; and the
cuDNN train-mode switch for RNN gradients does what it says (checked on CPU: no GPU was lent).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from audit.core.adapter import as_adapter
from audit.core.attribution import rnn_backward_mode
from audit.core.dataset import DatasetSpec
from audit.core.method import RunContext
from audit.core.modalities import SequenceSpec, build_sequence_data
from audit.methods.agreement import Agreement, AgreementConfig, sanity_check
from audit.methods.lime import Lime, LimeConfig
from audit.methods.saliency import Saliency, SaliencyConfig
from audit.methods.shap import Shap, ShapConfig

from tests.conftest import FEATURE, LAG, PIXEL, captum_explainers

PATCH = "patch[2-3,4-5]"   # the 2x2 patch holding the planted pixel


def _close(*figs):
    from audit.core.plots import pyplot

    for f in figs:
        pyplot().close(f)


def _argmax(d: dict[str, float]) -> str:
    return max(d, key=lambda k: d[k])


def test_saliency_on_images_concentrates_on_the_planted_pixel(planted_images):
    model, data = planted_images
    cfg = SaliencyConfig(n_rows=60, n_bootstrap=0, ig_steps=16, smoothgrad_samples=4,
                         gradient_shap_samples=8, n_background=20, baseline="zeros")
    r = Saliency().run(model, data, cfg, RunContext.default())
    for m in ("integrated_gradients", "gradient_shap", "occlusion", "saliency"):
        assert _argmax(r.group_importance[m]["patch"]) == PATCH, m
        others = [v for k, v in r.group_importance[m]["patch"].items() if k != PATCH]
        assert max(others) <= 1e-6 * r.group_importance[m]["patch"][PATCH], m
    assert _argmax(r.importance_values("integrated_gradients")) == f"px[{PIXEL[0]},{PIXEL[1]}]"
    assert r.occlusion_window == "patch" and r.modal is not None
    # the class-average and example maps peak at the planted pixel
    for hm in (*r.modal.average_maps, *r.modal.examples):
        grid = np.abs(np.asarray(hm.values))
        assert np.unravel_index(np.argmax(grid), grid.shape) == PIXEL
    figs = Saliency().figures(r, data)
    assert {"examples", "averages", "methods", "totals"} <= set(figs)
    for key in ("examples", "averages"):
        labels = [ax.get_ylabel() for ax in figs[key].axes]
        assert any("red: up, blue: down" in lab for lab in labels)  # the colour bar
    _close(*figs.values())


def test_saliency_on_sequences_totals_per_feature_and_lag(planted_sequences):
    model, data = planted_sequences
    cfg = SaliencyConfig(n_rows=80, n_bootstrap=0, ig_steps=16, smoothgrad_samples=4,
                         gradient_shap_samples=8, n_background=20)
    r = Saliency().run(model, data, cfg, RunContext.default())
    for m in ("integrated_gradients", "occlusion", "gradient_shap"):
        assert _argmax(r.group_importance[m]["lag"]) == f"t-{LAG}", m
        assert _argmax(r.group_importance[m]["feature"]) == FEATURE, m
    # IG per (lag, feature) of a linear read-out is exact: 3 * (x - baseline) at the planted cell
    assert r.modal.row_labels == ("f0", "f1") and r.modal.col_labels[0] == "t-6"
    assert r.baseline.startswith("a flat window")
    figs = Saliency().figures(r, data)
    assert "examples" in figs and "totals" in figs
    _close(*figs.values())


def test_occlusion_per_lag_window(planted_sequences):
    model, data = planted_sequences
    cfg = SaliencyConfig(methods=("occlusion",), n_rows=40, n_bootstrap=0, occlusion_window="lag")
    r = Saliency().run(model, data, cfg, RunContext.default())
    lag = r.group_importance["occlusion"]["lag"]
    assert _argmax(lag) == f"t-{LAG}" and sum(v for k, v in lag.items() if k != f"t-{LAG}") < 1e-9
    with pytest.raises(Exception, match="occlusion_window"):
        Saliency().run(model, data, SaliencyConfig(methods=("occlusion",), occlusion_window="patch"),
                       RunContext.default())


def test_shap_on_images_and_sequences(planted_images, planted_sequences):
    model, data = planted_images
    r = Shap().run(model, data, ShapConfig(gradient_n_rows=30, background_size=20, gradient_nsamples=50,
                                           n_bootstrap=0), RunContext.default())
    assert r.ranking[0] == f"px[{PIXEL[0]},{PIXEL[1]}]"
    assert _argmax(r.modal.group_importance["patch"]) == PATCH
    figs = Shap().figures(r, data)
    assert {"examples", "averages", "totals"} <= set(figs)
    _close(*figs.values())
    model, data = planted_sequences
    r = Shap().run(model, data, ShapConfig(gradient_n_rows=30, background_size=20, gradient_nsamples=50,
                                           n_bootstrap=0), RunContext.default())
    assert r.ranking[0] == f"{FEATURE}[t-{LAG}]"
    assert _argmax(r.modal.group_importance["lag"]) == f"t-{LAG}"


def test_lime_image_patches_and_sequence_lags(planted_images, planted_sequences):
    model, data = planted_images
    cfg = LimeConfig(num_samples=300, n_seeds=2, n_random=0, n_global_rows=5, n_bootstrap=0)
    r = Lime().run(model, data, cfg, RunContext.default())
    assert r.features[0].startswith("patch[") and len(r.features) == 16
    assert r.ranking[0] == PATCH
    figs = Lime().figures(r, data)
    assert "maps" in figs
    _close(*figs.values())
    model, data = planted_sequences
    r = Lime().run(model, data, LimeConfig(num_samples=500, n_seeds=2, n_random=0, n_global_rows=5,
                                           n_bootstrap=0), RunContext.default())
    assert r.ranking[0] == f"{FEATURE}[t-{LAG}]"


class _Square(nn.Module):
    """f = a * sum(x^2): every attribution's |ranking| is that of x^2, whatever a is."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.a * (x ** 2).flatten(1).sum(1, keepdim=True) - 1.0
        return torch.cat([-s, s], dim=1)


def test_sanity_check_flags_weight_insensitive_attributions_on_images(planted_images):
    _, data = planted_images
    cfg = AgreementConfig(sanity_methods=("input_x_gradient", "integrated_gradients"), sanity_repeats=2)
    base = np.zeros((1, 1, 8, 8), np.float32)
    bg = data.X[:10]
    rows = np.arange(20)
    flagged = sanity_check(as_adapter(_Square().eval(), task="binary"), data, rows, cfg,
                           attributions=captum_explainers(*cfg.sanity_methods), baseline=base,
                           background=bg, seed=0)
    assert set(flagged.flagged) == {"input_x_gradient", "integrated_gradients"}
    assert flagged.maps is not None and len(flagged.maps) == 6  # trained / randomized pairs


def test_agreement_on_images_compares_patches(planted_images):
    model, data = planted_images
    ctx = RunContext.default()
    sal = Saliency().run(model, data, SaliencyConfig(n_rows=40, n_bootstrap=0, ig_steps=16,
                                                      smoothgrad_samples=4, gradient_shap_samples=8,
                                                      n_background=20, baseline="zeros"), ctx)
    ctx = RunContext(rng=np.random.default_rng(1), earlier={"saliency": sal})
    r = Agreement().run(model, data, AgreementConfig(n_rows=40, n_repeats=2, sanity_rows=20,
                                                     sanity_repeats=1, faithfulness_rows=20,
                                                     faithfulness_background=5), ctx)
    assert r.grouping == "patch" and len(r.features) == 16
    assert r.consensus[0].feature == PATCH
    assert "integrated_gradients" not in r.sanity.flagged  # the planted CNN's maps change
    figs = Agreement().figures(r, data)
    assert "sanity_maps" in figs
    _close(*figs.values())


def test_rnn_backward_mode_switches_only_rnns_and_restores():
    net = nn.Sequential()
    lstm = nn.LSTM(3, 4, num_layers=2, dropout=0.5, batch_first=True)
    drop = nn.Dropout(0.3)
    net.add_module("lstm", lstm)
    net.add_module("drop", drop)
    net.eval()
    x = torch.randn(5, 6, 3)
    with torch.no_grad():
        expected = lstm(x)[0]
    with rnn_backward_mode(net) as switched:  # CPU: nothing to do
        assert switched == [] and not lstm.training
    with rnn_backward_mode(net, force=True) as switched:
        assert switched == [lstm] and lstm.training and lstm.dropout == 0.0
        assert not drop.training  # other modules keep eval mode
        out = lstm(x)[0]
        out.sum().backward()  # the path captum takes on CUDA
        assert torch.allclose(out, expected)  # train mode with dropout 0 == eval mode
    assert not lstm.training and lstm.dropout == 0.5
    with pytest.raises(RuntimeError), rnn_backward_mode(net, force=True):
        raise RuntimeError("restored even on error")
    assert not lstm.training and lstm.dropout == 0.5


def test_lstm_gradients_in_eval_mode_through_saliency(tmp_path):
    """An eval-mode LSTM through the saliency path (on CPU; on CUDA the switch above applies)."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(2, 4, batch_first=True)
            self.out = nn.Linear(4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.lstm(x)[0][:, -1])

    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 5, 2))
    np.savez(tmp_path / "s.npz", X=X, y=X[:, -1, 0])
    data = build_sequence_data(SequenceSpec(str(tmp_path / "s.npz")),
                               DatasetSpec(target="y", features=("a", "b"), task="regression"))
    torch.manual_seed(0)
    r = Saliency().run(as_adapter(Net().eval(), task="regression"), data,
                       SaliencyConfig(methods=("integrated_gradients",), n_rows=10, n_bootstrap=0),
                       RunContext.default())
    assert r.ig_delta is not None and r.ig_delta.within_tolerance
