"""Shared fixtures: small real models and data written to disk the way users provide them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audit.core.dataset import Encoding


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tests call methods directly, outside run_audit; on 2 cores one torch thread is much
    faster for these small models (measured 2.5-6x), and it keeps parallel workers apart."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_frame(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """Tabular data with a planted rule: y = ">50K" iff age > 40 and job != "clerk"."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "age": rng.integers(18, 80, n),
        "hours": rng.normal(40, 8, n).round(1),
        "job": rng.choice(["clerk", "exec", "tech"], n),
        "sex": rng.choice(["Female", "Male"], n),
    })
    frame["income"] = np.where((frame.age > 40) & (frame.job != "clerk"), ">50K", "<=50K")
    return frame


@pytest.fixture
def frame() -> pd.DataFrame:
    return make_frame()


@pytest.fixture
def encoding(frame: pd.DataFrame) -> Encoding:
    return Encoding.fit(frame[["age", "hours", "job"]])


def fit_torch_mlp(frame: pd.DataFrame, encoding: Encoding, hidden: int = 8, seed: int = 0):
    """A small torch MLP fitted to the planted rule (full-batch Adam, deterministic)."""
    import torch

    from audit.core.adapter import build_mlp

    torch.manual_seed(seed)
    spec = {"type": "mlp", "input_dim": len(encoding.columns), "hidden": [hidden],
            "activation": "relu", "output_dim": 1, "output": "logit"}
    net = build_mlp(spec)
    X = torch.from_numpy(encoding.encode(frame))
    y = torch.tensor((frame["income"] == ">50K").to_numpy(), dtype=torch.float32)[:, None]
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(X), y)
        loss.backward()
        opt.step()
    return net.eval(), spec


@pytest.fixture
def model_dir(tmp_path: Path, frame: pd.DataFrame, encoding: Encoding) -> Path:
    """A folder laid out like a user's: data CSV, weights, architecture, encoding, audit.toml."""
    return write_model_dir(
        tmp_path, frame, encoding,
        'name = "toy"\nseed = 0\n\n[model]\npath = "model.safetensors"\n'
        'architecture = "architecture.json"\nencoding = "encoding.json"\ntask = "binary"\n\n'
        '[data]\npath = "data.csv"\ntarget = "income"\npositive_label = ">50K"\n'
        'sensitive = ["sex"]\n\n[report]\nformats = ["html", "json"]\n')


def write_model_dir(folder: Path, frame: pd.DataFrame, encoding: Encoding, toml: str) -> Path:
    """Lay ``folder`` out like a user's: a torch MLP fitted to ``frame`` (model.safetensors,
    architecture.json), encoding.json, data.csv and the given audit.toml."""
    from safetensors.torch import save_file

    net, spec = fit_torch_mlp(frame, encoding)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "architecture.json").write_text(json.dumps(spec))
    (folder / "encoding.json").write_text(json.dumps(encoding.to_dict()))
    frame.to_csv(folder / "data.csv", index=False)
    (folder / "audit.toml").write_text(toml, encoding="utf-8")
    return folder


# Planted images and sequences: one input alone decides the outcome, so every attribution and
# counterfactual method must point at it (used by the image/sequence tests of several methods).
PIXEL = (3, 5)          # the planted pixel of the 8x8 images
LAG, FEATURE = 3, "f0"  # the planted lag (t-3) of the planted indicator


@pytest.fixture(scope="session")
def planted_images(tmp_path_factory):
    """Noise images whose label is 1 exactly when the planted pixel is bright, and a CNN (one
    8x8 convolution) that reads only that pixel."""
    import torch
    from torch import nn

    from audit.core.adapter import as_adapter
    from audit.core.dataset import DatasetSpec
    from audit.core.modalities import ImageSpec, build_image_data

    rng = np.random.default_rng(0)
    X = rng.uniform(0, 16, size=(120, 8, 8)).round()
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
    model = as_adapter(nn.Sequential(conv, nn.Flatten()).eval(), task="binary")
    return model, data


@pytest.fixture(scope="session")
def planted_sequences(tmp_path_factory):
    """Random windows (T = 6, two indicators) whose target is 3 x f0 at lag t-3, and a model
    reading only that value through an LSTM-free linear read-out."""
    import torch
    from torch import nn

    from audit.core.adapter import as_adapter
    from audit.core.dataset import DatasetSpec
    from audit.core.modalities import SequenceSpec, build_sequence_data

    rng = np.random.default_rng(1)
    X = rng.normal(size=(80, 6, 2))
    t = 6 - LAG
    y = 3.0 * X[:, t, 0]
    path = tmp_path_factory.mktemp("seq") / "planted.npz"
    np.savez(path, X=X, y=y)
    data = build_sequence_data(SequenceSpec(str(path)), DatasetSpec(target="y", features=("f0", "f1"),
                                                                      task="regression"))
    lin = nn.Linear(12, 1)
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.zero_()
        lin.weight[0, t * 2 + 0] = 3.0
    model = as_adapter(nn.Sequential(nn.Flatten(), lin).eval(), task="regression")
    return model, data


def captum_explainers(*keys: str, window: str = "auto") -> list:
    """The saliency method's captum explainers as recomputable Attributions without values:
    what the agreement method's sanity check re-runs on re-initialized copies of a model."""
    import functools

    from audit.core.results import Attributions
    from audit.methods import saliency

    return [Attributions(key=k, label=saliency.LABELS[k], short=saliency.SHORT[k], origin="test",
                         features=(), grouping="feature", explains="output", explained="", importance={},
                         recompute=functools.partial(saliency.recompute, method=k, window=window))
            for k in keys]


# Small configs of the methods that explain rows in shards (audit.execution.map chunks of a fixed
# number of rows): each spans several shards on the toy model_dir (with small_shards), so a
# shard's seed matters.
ROW_SHARDED = {
    "lime": "\n[methods.lime]\nnum_samples = 200\nn_seeds = 2\nn_global_rows = 70\nn_bootstrap = 50\n",
    "counterfactuals": "\n[methods.counterfactuals]\nmax_search_rows = 150\nn_counterfactuals = 2\nsteps = 50\n"
                       "n_bootstrap = 50\nn_permutations = 49\n",
    "shap": '\n[methods.shap]\nexplainer = "kernel"\nkernel_n_rows = 25\nkernel_nsamples = 64\nn_bootstrap = 50\n',
}


@pytest.fixture
def small_shards(monkeypatch):  # noqa: ANN001, ANN201
    """The counterfactual search's shards of 100 rows instead of 500, so ROW_SHARDED's 150
    searched rows span two of them."""
    from audit.methods import counterfactuals

    monkeypatch.setattr(counterfactuals, "_SHARD", 100)


def load_benchmark(name: str):
    """The module ``benchmarks/<name>.py`` (run as a script it finds its sibling ``_common``;
    here that folder is on the path while it loads)."""
    import importlib.util
    import sys

    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    spec = importlib.util.spec_from_file_location(name, bench / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(bench))
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(bench))
    return mod
