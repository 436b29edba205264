"""Train the reference Adult MLP deterministically and evaluate it on the held-out test file.

Usage::

    python train.py            # writes model.safetensors, model_init.safetensors, metrics.json

Recipe (all values from training.json):

1. Read data/adult_train.csv.gz (``?`` = missing) and encode it with encoding.json through
   ``audit.core.dataset.Encoding.encode``; the target is 1 for ``>50K``.
2. Hold out ``validation_fraction`` of the training rows (a permutation drawn by
   ``numpy.random.default_rng(seed)``); the network is fitted on the rest.
3. For restart ``r = 0 .. n_restarts-1``: ``torch.manual_seed(seed + r)``, build the network with
   ``audit.core.adapter.build_mlp`` from architecture.json (PyTorch's default initialization),
   and train it for exactly ``epochs`` epochs of mini-batch Adam (``torch.optim.Adam``, whose
   ``weight_decay`` is an L2 penalty added to the gradient) on the mean binary cross-entropy of
   the logit, reshuffling every epoch with ``torch.Generator().manual_seed(seed + r)``.
   No early stopping: every restart gets the identical schedule.
4. Keep the restart with the lowest validation loss (Olden & Jackson 2002, step 1); its trained
   weights go to model.safetensors and its initial weights (theta_0, the starting point of the
   randomization test's null networks) to model_init.safetensors.
5. Score data/adult_test.csv.gz and write metrics.json (accuracy, ROC AUC, and accuracy,
   selection rate, true- and false-positive rate by sex and by race, at threshold 0.5).

Runs on one CPU thread with ``torch.use_deterministic_algorithms(True)``; rerunning on the same
machine and library versions gives byte-identical weight files.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
try:
    import audit  # noqa: F401
except ImportError:  # running from a source checkout without `pip install -e .`
    sys.path.insert(0, str(HERE.parents[1]))

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from audit.core.adapter import build_mlp  # noqa: E402
from audit.core.loading import tensor_digest  # noqa: E402
from audit.core.dataset import Encoding, read_table  # noqa: E402

NA_VALUES = ["?"]
TARGET = "income"
POSITIVE = ">50K"
THRESHOLD = 0.5
SENSITIVE = ("sex", "race")


def load_xy(path: Path, enc: Encoding) -> tuple[object, np.ndarray, np.ndarray]:
    frame = read_table(path, na_values=NA_VALUES)
    labels = frame[TARGET].astype(str).str.strip()
    unknown = sorted(set(labels) - set(enc.classes or ()))
    if unknown:
        raise SystemExit(f"{path.name}: unexpected labels {unknown}")
    X = enc.encode(frame)
    y = (labels == POSITIVE).to_numpy(dtype=np.float32)
    return frame, X, y


def train_one(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, recipe: dict,
              shuffle_seed: int) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=recipe["lr"],
                           betas=tuple(recipe.get("betas", (0.9, 0.999))),
                           weight_decay=recipe["weight_decay"])
    loss_fn = torch.nn.BCEWithLogitsLoss()
    gen = torch.Generator().manual_seed(shuffle_seed)
    n, bs = X.shape[0], recipe["batch_size"]
    model.train()
    for _ in range(recipe["epochs"]):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, bs):
            idx = order[start:start + bs]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(X[idx]).squeeze(1), y[idx])
            loss.backward()
            opt.step()


@torch.no_grad()
def logits(model: torch.nn.Module, X: torch.Tensor) -> torch.Tensor:
    model.eval()
    return model(X).squeeze(1)


def rates(y: np.ndarray, pred: np.ndarray) -> dict:
    y, pred = y.astype(np.float64), pred.astype(np.float64)
    pos = y == 1
    return {
        "n": int(y.size),
        "base_rate": float(y.mean()),
        "accuracy": float((pred == y).mean()),
        "selection_rate": float(pred.mean()),
        # undefined (null), not zero, for a group without positives
        "tpr": float(pred[pos].mean()) if pos.any() else None,
        "fpr": float(pred[~pos].mean()) if (~pos).any() else None,
        "n_positive": int(pos.sum()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the reference Adult MLP.")
    parser.add_argument("--recipe", type=Path, default=HERE / "training.json")
    parser.add_argument("--out", type=Path, default=HERE,
                        help="folder for model.safetensors, model_init.safetensors, metrics.json")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    recipe = json.loads(args.recipe.read_text(encoding="utf-8"))
    if recipe.get("loss") != "bce" or recipe.get("optimizer") != "adam":
        raise SystemExit("This script implements loss 'bce' with optimizer 'adam' only.")
    arch = json.loads((HERE / "architecture.json").read_text(encoding="utf-8"))
    enc = Encoding.load(HERE / "encoding.json")
    if len(enc.columns) != arch["input_dim"]:
        raise SystemExit(f"encoding.json has {len(enc.columns)} columns but architecture.json "
                         f"expects {arch['input_dim']}")

    _, X_all, y_all = load_xy(HERE / "data" / "adult_train.csv.gz", enc)
    seed = int(recipe["seed"])
    perm = np.random.default_rng(seed).permutation(len(y_all))
    n_val = int(round(recipe["validation_fraction"] * len(y_all)))
    val_idx, fit_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    X_fit, y_fit = torch.from_numpy(X_all[fit_idx]), torch.from_numpy(y_all[fit_idx])
    X_val, y_val = torch.from_numpy(X_all[val_idx]), torch.from_numpy(y_all[val_idx])

    best = None
    restarts = []
    for r in range(int(recipe["n_restarts"])):
        torch.manual_seed(seed + r)
        model = build_mlp(arch)
        init = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        train_one(model, X_fit, y_fit, recipe, shuffle_seed=seed + r)
        z = logits(model, X_val)
        val_loss = float(torch.nn.functional.binary_cross_entropy_with_logits(z, y_val))
        val_acc = float(((z > 0).float() == y_val).float().mean())
        restarts.append({"restart": r, "validation_loss": val_loss, "validation_accuracy": val_acc})
        print(f"restart {r}: validation loss {val_loss:.4f}, accuracy {val_acc:.4f}")
        if best is None or val_loss < best[0]:
            best = (val_loss, r, model, init)
    _, best_r, model, init = best

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    args.out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(args.out / "model.safetensors"))
    save_file(init, str(args.out / "model_init.safetensors"))

    test, X_test, y_test = load_xy(HERE / "data" / "adult_test.csv.gz", enc)
    z = logits(model, torch.from_numpy(X_test)).numpy().astype(np.float64)
    score = 1.0 / (1.0 + np.exp(-z))
    pred = (score >= THRESHOLD).astype(np.float32)
    overall = rates(y_test, pred)
    metrics = {
        "data": "data/adult_test.csv.gz",
        "threshold": THRESHOLD,
        "n_rows": overall["n"],
        "accuracy": overall["accuracy"],
        "roc_auc": float(roc_auc_score(y_test, score)),
        "base_rate": overall["base_rate"],
        "selection_rate": overall["selection_rate"],
        "tpr": overall["tpr"],
        "fpr": overall["fpr"],
        "by_group": {
            col: {str(g): rates(y_test[m], pred[m]) for g, m in
                  ((g, (test[col].astype(str) == g).to_numpy()) for g in sorted(test[col].astype(str).unique()))}
            for col in SENSITIVE
        },
        "training": {
            "rows_fitted": int(len(fit_idx)),
            "rows_validation": int(len(val_idx)),
            "selected_restart": best_r,
            "restarts": restarts,
            "tensor_sha256": tensor_digest(state),
            "init_tensor_sha256": tensor_digest(init),
            "torch": torch.__version__,
        },
    }
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    print(f"selected restart {best_r}; test accuracy {metrics['accuracy']:.4f}, "
          f"ROC AUC {metrics['roc_auc']:.4f} on {metrics['n_rows']} rows")
    for col in SENSITIVE:
        for g, m in metrics["by_group"][col].items():
            tpr = "n/a" if m["tpr"] is None else f"{m['tpr']:.3f}"
            print(f"  {col}={g:<20} n={m['n']:>6}  acc={m['accuracy']:.3f}  "
                  f"sel={m['selection_rate']:.3f}  tpr={tpr}")
    print(f"wall time {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
