"""Train the reference digits CNN deterministically and evaluate it on the held-out images.

Usage::

    python prepare_data.py     # (re)writes data/digits_{train,test}.npz from scikit-learn
    python train.py            # writes model.safetensors, model_init.safetensors, metrics.json

Recipe (values from training.json):

1. Read data/digits_train.npz; pixels are divided by ``pixel_scale`` (16: raw counts 0..16 -> [0, 1],
   the same scaling audit.toml declares). Hold out ``validation_fraction`` of the training images
   (a permutation from ``numpy.random.default_rng(seed)``).
2. For restart ``r``: ``torch.manual_seed(seed + r)``, build ``model.DigitsCNN()`` (PyTorch's
   default initialization), train exactly ``epochs`` epochs of mini-batch Adam on the mean
   cross-entropy, reshuffling each epoch with ``torch.Generator().manual_seed(seed + r)``.
3. Keep the restart with the lowest validation loss; its trained weights go to model.safetensors
   and its initial weights (theta_0, for retraining-based randomization tests) to
   model_init.safetensors.
4. Score data/digits_test.npz and write metrics.json: accuracy, per-digit recall, the confusion
   matrix, and the held-out accuracy of a baseline (multinomial logistic regression on the 64
   scaled pixels, scikit-learn defaults with max_iter=5000) for an honest comparison.

Runs on one CPU thread with ``torch.use_deterministic_algorithms(True)``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
try:
    import audit  # noqa: F401
except ImportError:  # running from a source checkout without `pip install -e .`
    sys.path.insert(0, str(HERE.parents[1]))

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from audit.core.loading import tensor_digest  # noqa: E402
from model import DigitsCNN  # noqa: E402


def load(name: str, scale: float) -> tuple[np.ndarray, np.ndarray]:
    with np.load(HERE / "data" / f"digits_{name}.npz") as z:
        return (z["X"].astype(np.float32) / scale), z["y"].astype(np.int64)


def train_one(Xtr: torch.Tensor, ytr: torch.Tensor, cfg: dict, seed: int) -> tuple[DigitsCNN, dict]:
    torch.manual_seed(seed)
    net = DigitsCNN()
    init = {k: v.detach().clone() for k, v in net.state_dict().items()}
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    gen = torch.Generator().manual_seed(seed)
    n = len(Xtr)
    for _ in range(cfg["epochs"]):
        net.train()
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, cfg["batch_size"]):
            idx = order[start:start + cfg["batch_size"]]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(Xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
    return net.eval(), init


def main() -> None:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    cfg = json.loads((HERE / "training.json").read_text())
    t0 = time.perf_counter()
    X, y = load("train", cfg["data"]["pixel_scale"])
    Xte, yte = load("test", cfg["data"]["pixel_scale"])
    perm = np.random.default_rng(cfg["seed"]).permutation(len(y))
    n_val = int(round(cfg["validation_fraction"] * len(y)))
    val, fit = perm[:n_val], perm[n_val:]
    Xf, yf = torch.from_numpy(X[fit]), torch.from_numpy(y[fit])
    Xv, yv = torch.from_numpy(X[val]), torch.from_numpy(y[val])
    best = None
    for r in range(cfg["n_restarts"]):
        net, init = train_one(Xf, yf, cfg, cfg["seed"] + r)
        with torch.no_grad():
            vloss = float(torch.nn.functional.cross_entropy(net(Xv), yv))
        print(f"restart {r}: validation loss {vloss:.4f}")
        if best is None or vloss < best[0]:
            best = (vloss, r, net, init)
    vloss, r, net, init = best
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(HERE / "model.safetensors"))
    save_file({k: v.contiguous() for k, v in init.items()}, str(HERE / "model_init.safetensors"))

    with torch.no_grad():
        pred = net(torch.from_numpy(Xte)).argmax(1).numpy()
    from sklearn.linear_model import LogisticRegression

    base = LogisticRegression(max_iter=5000).fit(X.reshape(len(X), -1), y)
    base_acc = float(np.mean(base.predict(Xte.reshape(len(Xte), -1)) == yte))
    confusion = np.zeros((10, 10), dtype=int)
    np.add.at(confusion, (yte, pred), 1)
    metrics = {
        "data": "data/digits_test.npz", "n_rows": int(len(yte)), "n_train": int(len(fit)),
        "n_validation": int(len(val)), "chosen_restart": r, "validation_loss": vloss,
        "accuracy": float(np.mean(pred == yte)),
        "baseline_logistic_regression_accuracy": base_acc,
        "recall_by_digit": {str(k): float(confusion[k, k] / confusion[k].sum()) for k in range(10)},
        "confusion": confusion.tolist(),
        "n_parameters": int(sum(p.numel() for p in net.parameters())),
        "tensor_sha256": tensor_digest(state), "train_seconds": round(time.perf_counter() - t0, 1),
    }
    (HERE / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"held-out accuracy {metrics['accuracy']:.4f} (logistic regression baseline {base_acc:.4f}); "
          f"{metrics['train_seconds']} s")


if __name__ == "__main__":
    main()
