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
    from safetensors.torch import save_file

    net, spec = fit_torch_mlp(frame, encoding)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "architecture.json").write_text(json.dumps(spec))
    (tmp_path / "encoding.json").write_text(json.dumps(encoding.to_dict()))
    frame.to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "audit.toml").write_text(
        'name = "toy"\nseed = 0\n\n[model]\npath = "model.safetensors"\n'
        'architecture = "architecture.json"\nencoding = "encoding.json"\ntask = "binary"\n\n'
        '[data]\npath = "data.csv"\ntarget = "income"\npositive_label = ">50K"\n'
        'sensitive = ["sex"]\n\n[report]\nformats = ["html", "json"]\n')
    return tmp_path
