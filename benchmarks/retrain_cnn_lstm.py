"""Cost of retraining the bundled CNN and LSTM B = 99 times (the response-permutation null).

Each null network starts from the example's theta_0 (``model_init.safetensors``), sees the
training labels permuted (one permutation per network) and follows the example's own schedule
(train.py: optimizer, learning rate, weight decay, batch order). Two ways are timed in the same
run, on the same threads:

- sequential: one ``nn.Module`` and one ``torch.optim.Adam`` after another (what a plain loop does);
- batched: all B networks' parameters stacked along a leading axis and trained at once by one
  Adam over the stacked tensors (Adam is elementwise, and the loss is the *sum* of per-network
  mean losses, so every network gets exactly its own update):
  * CNN: ``torch.func.vmap`` over ``torch.func.functional_call`` of the example's DigitsCNN;
  * LSTM: ``vmap`` has no batching rule for ``aten::lstm``, so the LSTM recurrence is written out
    with batched matrix products over the B networks (PyTorch's gate order and equations).

Measured here (2 shared cores, 1 thread): the batched CNN gains only ~1.3-1.8x and the batched
LSTM ~1.0-1.2x. Both are compute-bound on CPU: one DigitsCNN forward+backward on a batch of 64
costs ~2.3 ms, and the vmapped step for 99 networks ~0.22 s, i.e. the same work; what batching
saves is per-network Python, dispatch and optimizer overhead. (An explicit im2col + bmm CNN was
~4x slower than vmap, which already lowers the batched convolution to one grouped convolution.)

The batched result is checked against the sequential one (largest parameter difference after
training, which should be float round-off). The full schedules (CNN: 40 epochs of batch-64 Adam;
LSTM: 400 full-batch steps) take minutes sequentially on 2 cores, so by default a prefix of the
schedule is timed (--cnn-epochs, --lstm-steps; every epoch/step costs the same) and the full cost
is extrapolated linearly; pass --full to time the whole schedule.

Usage: python benchmarks/retrain_cnn_lstm.py [--B 99] [--threads 1] [--device cpu] [--full]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch.func import functional_call, vmap

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _import(example: str, cls: str):
    """The example's model class (model.py in its folder; both examples use that name)."""
    import importlib.util

    path = ROOT / "examples" / example / "model.py"
    spec = importlib.util.spec_from_file_location(f"_bench_{example}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, cls)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ------------------------------------------------------------------------------------------
# CNN
# ------------------------------------------------------------------------------------------

def cnn_case(B: int, epochs: int, device: str, check: int) -> dict:
    DigitsCNN = _import("digits_cnn", "DigitsCNN")
    ex = ROOT / "examples" / "digits_cnn"
    cfg = json.loads((ex / "training.json").read_text())
    with np.load(ex / "data" / "digits_train.npz") as z:
        X = torch.from_numpy(z["X"].astype(np.float32) / cfg["pixel_scale"]).to(device)
        y = torch.from_numpy(z["y"].astype(np.int64)).to(device)
    theta0 = {k: v.to(device) for k, v in load_file(str(ex / "model_init.safetensors")).items()}
    rng = np.random.default_rng(12345)
    Y = torch.stack([y[torch.from_numpy(rng.permutation(len(y))).to(device)] for _ in range(B)])
    bs = cfg["batch_size"]
    orders = [torch.randperm(len(y), generator=torch.Generator().manual_seed(cfg["seed"] + e)).to(device)
              for e in range(epochs)]

    def sequential(models: range) -> list[dict]:
        out = []
        for b in models:
            net = DigitsCNN().to(device)
            net.load_state_dict(theta0)
            opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
            for order in orders:
                for s in range(0, len(y), bs):
                    idx = order[s:s + bs]
                    opt.zero_grad()
                    torch.nn.functional.cross_entropy(net(X[idx]), Y[b, idx]).backward()
                    opt.step()
            out.append({k: v.detach().clone() for k, v in net.named_parameters()})
        return out

    def batched() -> dict:
        base = DigitsCNN().to(device)
        params = {k: theta0[k].unsqueeze(0).repeat(B, *[1] * theta0[k].ndim).clone().requires_grad_(True)
                  for k, _ in base.named_parameters()}
        opt = torch.optim.Adam(params.values(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])

        def loss_one(p, xb, yb):
            return torch.nn.functional.cross_entropy(functional_call(base, p, (xb,)), yb)

        batched_loss = vmap(loss_one, in_dims=(0, None, 0))
        for order in orders:
            for s in range(0, len(y), bs):
                idx = order[s:s + bs]
                opt.zero_grad()
                batched_loss(params, X[idx], Y[:, idx]).sum().backward()
                opt.step()
        return {k: v.detach() for k, v in params.items()}

    return _time_both(sequential, batched, B, check, device)


# ------------------------------------------------------------------------------------------
# LSTM
# ------------------------------------------------------------------------------------------

def _tanh(x: torch.Tensor) -> torch.Tensor:
    """tanh(x) = 2 sigmoid(2x) - 1: the same function, but CPU sigmoid is much faster than tanh
    here (NOTES.md measured ~9x), which matters once B networks' gates are one large tensor."""
    return 2 * torch.sigmoid(2 * x) - 1


def batched_lstm_forward(p: dict, x: torch.Tensor, center: torch.Tensor, scale: torch.Tensor,
                         target_index: int) -> torch.Tensor:
    """MacroLSTM's forward for B stacked networks: x (N, T, F) shared -> (B, N, 1).

    Gates as in torch.nn.LSTM: [i, f, g, o] = W_ih x + b_ih + W_hh h + b_hh;
    c = sigmoid(f) c + sigmoid(i) tanh(g); h = sigmoid(o) tanh(c).
    """
    W_ih, W_hh = p["lstm.weight_ih_l0"], p["lstm.weight_hh_l0"]      # (B, 4H, F), (B, 4H, H)
    bias = (p["lstm.bias_ih_l0"] + p["lstm.bias_hh_l0"])[:, None, :]  # (B, 1, 4H)
    B, H = W_hh.shape[0], W_hh.shape[2]
    N, T, _ = x.shape
    pre = torch.einsum("ntf,bgf->btng", x, W_ih) + bias[:, None]     # (B, T, N, 4H)
    h = x.new_zeros(B, N, H)
    c = x.new_zeros(B, N, H)
    W_hh_t = W_hh.transpose(1, 2)                                     # (B, H, 4H)
    for t in range(T):
        gates = pre[:, t] + torch.bmm(h, W_hh_t)
        i, f, g, o = gates.chunk(4, dim=2)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * _tanh(g)
        h = torch.sigmoid(o) * _tanh(c)
    head = torch.baddbmm(p["head.bias"][:, None, :], h, p["head.weight"].transpose(1, 2))  # (B, N, 1)
    last = x[:, -1, target_index] * scale + center
    return last[None, :, None] + scale * head


def lstm_case(B: int, steps: int, device: str, check: int) -> dict:
    MacroLSTM = _import("macro_lstm", "MacroLSTM")
    from audit.core.dataset import DatasetSpec, Encoding
    from audit.core.modalities import SequenceSpec, build_sequence_data

    ex = ROOT / "examples" / "macro_lstm"
    cfg = json.loads((ex / "training.json").read_text())
    enc = Encoding.load(ex / "encoding.json")
    data = build_sequence_data(
        SequenceSpec(path=str(ex / "data" / "macro_quarterly.csv"), window=cfg["window"],
                     horizon=cfg["horizon"], time_column="date",
                     time_range=("", cfg["train_end"])),
        DatasetSpec(target=cfg["target"], features=tuple(cfg["features"]), task="regression"),
        encoding=enc)
    X = torch.from_numpy(data.X).to(device)
    y = torch.from_numpy(data.y.astype(np.float32)).to(device)
    theta0 = {k: v.to(device) for k, v in load_file(str(ex / "model_init.safetensors")).items()}
    ti = cfg["features"].index(cfg["target"])
    center, scale = theta0["target_center"], theta0["target_scale"]
    rng = np.random.default_rng(12345)
    Y = torch.stack([y[torch.from_numpy(rng.permutation(len(y))).to(device)] for _ in range(B)])

    def sequential(models: range) -> list[dict]:
        out = []
        for b in models:
            net = MacroLSTM(n_features=len(cfg["features"]), target_index=ti).to(device)
            net.load_state_dict(theta0)
            opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
            for _ in range(steps):
                opt.zero_grad()
                torch.mean(((net(X)[:, 0] - Y[b]) / scale) ** 2).backward()
                opt.step()
            out.append({k: v.detach().clone() for k, v in net.named_parameters()})
        return out

    def batched() -> dict:
        names = [k for k, _ in MacroLSTM(n_features=len(cfg["features"])).named_parameters()]
        params = {k: theta0[k].unsqueeze(0).repeat(B, *[1] * theta0[k].ndim).clone().requires_grad_(True)
                  for k in names}
        opt = torch.optim.Adam(params.values(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
        for _ in range(steps):
            opt.zero_grad()
            pred = batched_lstm_forward(params, X, center, scale, ti)[:, :, 0]   # (B, N)
            (((pred - Y) / scale) ** 2).mean(dim=1).sum().backward()
            opt.step()
        return {k: v.detach() for k, v in params.items()}

    return _time_both(sequential, batched, B, check, device)


def _time_both(sequential, batched, B: int, check: int, device: str) -> dict:
    sequential(range(1))  # warm-up (first-call allocations and kernel setup) outside the timing
    # The sequential loop is timed in two halves around the batched run, so that a change in
    # machine load during the benchmark affects both sides alike.
    half = B // 2
    _sync(device)
    t0 = time.perf_counter()
    seq = sequential(range(half))
    _sync(device)
    t_seq = time.perf_counter() - t0
    t0 = time.perf_counter()
    stacked = batched()
    _sync(device)
    t_bat = time.perf_counter() - t0
    t0 = time.perf_counter()
    seq += sequential(range(half, B))
    _sync(device)
    t_seq += time.perf_counter() - t0
    diff = max(float((stacked[k][b] - seq[b][k]).abs().max()) for b in range(min(check, B)) for k in seq[b])
    return {"sequential_s": t_seq, "batched_s": t_bat, "max_param_diff": diff}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--B", type=int, default=99)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cnn-epochs", type=int, default=2)
    ap.add_argument("--lstm-steps", type=int, default=100)
    ap.add_argument("--check", type=int, default=5, help="networks compared batched vs sequential")
    ap.add_argument("--full", action="store_true", help="time the full schedules (slow)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    full_epochs = json.loads((ROOT / "examples/digits_cnn/training.json").read_text())["epochs"]
    full_steps = json.loads((ROOT / "examples/macro_lstm/training.json").read_text())["epochs"]
    cnn_epochs = full_epochs if args.full else args.cnn_epochs
    lstm_steps = full_steps if args.full else args.lstm_steps
    import os

    print(f"B = {args.B} null networks, device {args.device}, {args.threads} thread(s), torch "
          f"{torch.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} "
          "(timings are only comparable on an otherwise idle machine)")
    for name, fn, done, full, unit in (
            ("digits_cnn", cnn_case, cnn_epochs, full_epochs, "epochs"),
            ("macro_lstm", lstm_case, lstm_steps, full_steps, "steps")):
        r = fn(args.B, done, args.device, args.check)
        k = full / done
        print(f"{name}: {done} of {full} {unit} timed | sequential {r['sequential_s']:.1f} s, "
              f"batched {r['batched_s']:.1f} s, ratio {r['sequential_s'] / r['batched_s']:.2f}x | "
              f"full schedule est. sequential {k * r['sequential_s']:.0f} s, batched "
              f"{k * r['batched_s']:.0f} s | max |param diff| batched vs sequential "
              f"{r['max_param_diff']:.1e}")


if __name__ == "__main__":
    main()
