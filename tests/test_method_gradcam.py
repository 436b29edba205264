"""Grad-CAM: localises a planted blob, finds the bundled digits CNN's last conv layer, and the
agreement method reads it through Attributions (rankings, sanity check, faithfulness curves)
without knowing its name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audit.core.method import RunContext, Skipped
from audit.errors import InvalidConfigError
from audit.methods.gradcam import GradCam, GradCamConfig, gradcam_maps

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BLOB = "patch[2-3,4-5]"     # the planted 2x2 blob of class-1 images
FAST = GradCamConfig(n_rows=60, n_bootstrap=50)


@pytest.fixture(scope="module")
def planted_blobs(tmp_path_factory):
    """Dim noise images; class 1 has a bright 2x2 blob at BLOB. A CNN that detects bright 3x3
    regions anywhere (conv, ReLU, global max) and calls class 1 when one is found."""
    import torch
    from torch import nn

    from audit.core.adapter import as_adapter
    from audit.core.dataset import DatasetSpec
    from audit.core.modalities import ImageSpec, build_image_data

    rng = np.random.default_rng(0)
    X = rng.uniform(0, 2, size=(80, 8, 8)).round()
    y = np.arange(80) % 2
    X[y == 1, 2:4, 4:6] = 16.0
    path = tmp_path_factory.mktemp("blob") / "blobs.npz"
    np.savez(path, X=X, y=y)
    data = build_image_data(ImageSpec(str(path), scale=(16.0,), patch=2), DatasetSpec(target="y"))
    conv = nn.Conv2d(1, 1, 3, padding=1)
    head = nn.Linear(1, 2)
    with torch.no_grad():
        conv.weight.fill_(1 / 9)
        conv.bias.fill_(-0.2)
        head.weight.copy_(torch.tensor([[-6.0], [6.0]]))
        head.bias.copy_(torch.tensor([1.0, -1.0]))
    net = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten(), head).eval()
    model = as_adapter(net, task="binary")
    assert np.mean(model.predict(data.X) == data.y) == 1.0  # the planted rule holds
    return model, data


def test_grad_cam_localises_the_planted_blob(planted_blobs):
    model, data = planted_blobs
    r = GradCam().run(model, data, FAST, RunContext.default(0))
    assert r.layer == "0" and r.layer_chosen.startswith("the last Conv2d") and r.layer_size == (8, 8)
    patch = r.group_importance["patch"]
    assert max(patch, key=lambda g: patch[g].value) == BLOB
    assert patch[BLOB].lower > max(e.upper for g, e in patch.items() if g != BLOB)
    (a,) = r.attributions()
    positive = data.y[a.rows] == 1
    maps = a.values[positive].reshape(-1, 8, 8)
    on_blob = maps[:, 1:5, 3:7].sum(axis=(1, 2))  # the blob and the conv's 1-pixel reach
    assert np.all(on_blob >= 0.95 * maps.sum(axis=(1, 2)))
    assert a.explains == "predicted_class" and a.recompute is not None and a.how == "mean"


def test_maps_are_non_negative_and_have_the_input_size(planted_blobs):
    model, data = planted_blobs
    X = data.X[:6]
    maps, size = gradcam_maps(model, X, np.ones(6, int), layer="0", upsample="nearest")
    assert maps.shape == (6, 64) and size == (8, 8) and np.all(maps >= 0)


def test_a_named_layer_is_used_and_a_wrong_name_is_a_config_error(planted_blobs):
    model, data = planted_blobs
    ctx = RunContext.default(0)
    assert GradCam().run(model, data, GradCamConfig(layer="0", n_rows=10, n_bootstrap=0), ctx).layer_chosen == \
        "named in the config"
    with pytest.raises(InvalidConfigError, match=r"names '1'.*Conv2d layers: 0"):
        GradCam().plan(model, data, GradCamConfig(layer="1"), ctx)
    with pytest.raises(InvalidConfigError, match=r"'layer' option in \[methods.gradcam\] must be a layer's name"):
        GradCamConfig.from_dict({"layer": " "}, method="gradcam")


def test_an_mlp_is_skipped_with_the_reason():
    import torch

    from audit.core.adapter import as_adapter
    from tests.test_method_agreement import _planted_data

    data = _planted_data(50)
    mlp = as_adapter(torch.nn.Sequential(torch.nn.Linear(data.X.shape[1], 1)), task="binary")
    reason = GradCam().skip_reason(mlp, data, GradCamConfig())
    assert reason and "not available for tabular data" in reason


@pytest.fixture(scope="module")
def digits():
    """The bundled digits CNN (its adapter, and a small audit with saliency, Grad-CAM, agreement)."""
    from audit.config import AuditPlan
    from audit.runner import load_inputs, run_audit

    plan = AuditPlan.load(EXAMPLES / "digits_cnn" / "audit.toml").with_overrides(
        methods=("saliency", "gradcam", "agreement"),
        method_options={"saliency": {"n_rows": 60, "n_bootstrap": 0, "n_selected": 0},
                        "gradcam": {"n_rows": 100, "n_bootstrap": 50},
                        "agreement": {"n_rows": 60, "sanity_rows": 20, "sanity_repeats": 1,
                                      "faithfulness_rows": 20, "faithfulness_background": 3}})
    inputs = load_inputs(plan)
    return inputs.model, run_audit(plan, inputs=inputs)


def test_grad_cam_on_the_digits_cnn_is_the_hand_computed_map_of_its_last_conv_layer(digits):
    """alpha_k = mean over positions of d(logit of the predicted class)/dA_k; map = ReLU(sum_k alpha_k A_k)
    at the last Conv2d's output (8x8 here: the pooling comes after it), so no upsampling is needed."""
    import torch

    model, report = digits
    r = report.outcome("gradcam").result
    assert not isinstance(r, Skipped), r
    assert r.layer == "features.2" and r.layer_size == (8, 8) and r.input_size == (8, 8)
    (a,) = r.attributions()
    net = model.module
    x = torch.as_tensor(report.data.X[a.rows], dtype=torch.float32)
    acts = []
    handle = net.features[2].register_forward_hook(lambda m, i, o: acts.append(o))
    logits = net(x)
    handle.remove()
    cls = logits.argmax(1)
    (grad,) = torch.autograd.grad(logits[torch.arange(len(x)), cls].sum(), acts[0])
    cam = torch.relu((grad.mean(dim=(2, 3), keepdim=True) * acts[0]).sum(1)).detach().numpy()
    np.testing.assert_allclose(a.values, cam.reshape(len(x), 64), rtol=1e-4, atol=1e-6)


def test_agreement_picks_grad_cam_up_through_its_attributions(digits):
    ag = digits[1].outcome("agreement").result
    assert "gradcam" in {m.key for m in ag.rankings}
    assert ag.sanity is not None and "gradcam" in ag.sanity.methods
    assert ag.sanity.labels["gradcam"] == "Grad-CAM"
    assert {c.key for c in ag.deletion} >= {"gradcam"} and ag.short["gradcam"] == "GradCAM"


def test_the_report_says_what_grad_cam_is(digits):
    from audit.report.render import render_html

    html = render_html(digits[1])
    assert "coarse, class-discriminative map" in html and "features.2" in html
    assert "upsampled (bilinear)" in html
