"""Train the reference macro LSTM deterministically and compare it with two baselines.

Usage::

    python extract_macrodata.py   # (needs statsmodels) rewrites data/macrodata.csv
    python prepare_data.py        # rewrites data/macro_quarterly.csv from it
    python train.py               # writes encoding.json, model*.safetensors, metrics.json

Recipe (values from training.json). Periods are by the quarter being forecast (target time):
training <= ``train_end`` (1961Q2-1994Q4), validation up to ``validation_end`` (1995-1999),
test up to ``test_end`` (2000Q1-2009Q3, including the 2008-09 recession), never used for fitting
or for choosing anything.

1. Scaling: mean and standard deviation of every indicator over the quarters up to
   ``train_end`` -> encoding.json (the audit reads the same file).
2. Windows: ``audit.core.modalities.build_sequence_data`` cuts data/macro_quarterly.csv into
   8-quarter windows and scales them, exactly as ``audit run`` does.
3. For restart ``r``: ``torch.manual_seed(seed + r)``, ``model.MacroLSTM`` with PyTorch's default
   initialization, ``epochs`` full-batch Adam steps on the mean squared error of the
   standardized change in unemployment; keep the restart with the lowest validation MSE.
   Trained weights -> model.safetensors, initial weights (theta_0) -> model_init.safetensors.
4. Baselines, fitted on the training windows only: the naive forecast (next quarter = this
   quarter), an AR(p) on unemployment alone (OLS, p in 1..8 chosen by BIC on the training
   windows), and a ridge regression on all 40 lagged values (the same inputs as the LSTM; penalty
   chosen on the validation windows). metrics.json: RMSE and MAE on validation and test.
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

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from audit.core.loading import tensor_digest  # noqa: E402
from audit.core.dataset import DatasetSpec, Encoding, NumericFeature  # noqa: E402
from audit.core.modalities import SequenceSpec, build_sequence_data  # noqa: E402
from model import MacroLSTM  # noqa: E402

DATA = HERE / "data" / "macro_quarterly.csv"


def errors(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    return {"rmse": float(np.sqrt(np.mean((pred - y) ** 2))), "mae": float(np.mean(np.abs(pred - y)))}


def main() -> None:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    cfg = json.loads((HERE / "training.json").read_text())
    data_cfg = cfg["data"]  # what the model was trained on; the rest is the optimizer's recipe
    t0 = time.perf_counter()
    feats, target = data_cfg["features"], data_cfg["target"]
    raw = pd.read_csv(DATA)
    fit_rows = raw[pd.to_datetime(raw.date) <= pd.Timestamp(data_cfg["train_end"])]
    enc = Encoding(tuple(NumericFeature(f, float(fit_rows[f].mean()), float(fit_rows[f].std(ddof=0)))
                         for f in feats))
    (HERE / "encoding.json").write_text(json.dumps(enc.to_dict(), indent=2) + "\n")

    spec = SequenceSpec(path=str(DATA), window=data_cfg["window"], horizon=data_cfg["horizon"],
                        time_column="date")
    data = build_sequence_data(spec, DatasetSpec(target=target, features=tuple(feats),
                                                 task="regression"), encoding=enc)
    when = pd.to_datetime(data.frame["target_time"])
    part = np.where(when <= pd.Timestamp(data_cfg["train_end"]), 0,
                    np.where(when <= pd.Timestamp(data_cfg["validation_end"]), 1, 2))
    X, y = data.X, data.y.astype(np.float32)
    ti = feats.index(target)
    last = X[:, -1, ti] * enc.features[ti].scale + enc.features[ti].center  # raw last value
    sets = {name: part == k for k, name in enumerate(("train", "validation", "test"))}

    Xt = {k: torch.from_numpy(X[m]) for k, m in sets.items()}
    yt = {k: torch.from_numpy(y[m])[:, None] for k, m in sets.items()}
    scale = enc.features[ti].scale
    best = None
    for r in range(cfg["n_restarts"]):
        torch.manual_seed(cfg["seed"] + r)
        net = MacroLSTM(n_features=len(feats), target_index=ti)
        net.target_center.fill_(enc.features[ti].center)
        net.target_scale.fill_(scale)
        init = {k: v.detach().clone() for k, v in net.state_dict().items()}
        opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
        for _ in range(cfg["epochs"]):
            opt.zero_grad()
            loss = torch.mean(((net(Xt["train"]) - yt["train"]) / scale) ** 2)
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            vmse = float(torch.mean((net(Xt["validation"]) - yt["validation"]) ** 2))
        print(f"restart {r}: validation MSE {vmse:.4f}")
        if best is None or vmse < best[0]:
            best = (vmse, r, net, init)
    vmse, r, net, init = best
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(HERE / "model.safetensors"))
    save_file({k: v.contiguous() for k, v in init.items()}, str(HERE / "model_init.safetensors"))
    with torch.no_grad():
        lstm_pred = net(torch.from_numpy(X)).numpy()[:, 0]

    # AR(p) on unemployment alone: OLS with intercept, p by BIC on the training windows.
    u = X[:, :, ti] * scale + enc.features[ti].center  # raw unemployment lags, oldest first
    tr = sets["train"]
    best_ar = None
    for p in range(1, data_cfg["window"] + 1):
        A = np.column_stack([np.ones(len(u)), u[:, -p:]])
        coef, *_ = np.linalg.lstsq(A[tr], y[tr], rcond=None)
        rss = float(np.sum((A[tr] @ coef - y[tr]) ** 2))
        bic = tr.sum() * np.log(rss / tr.sum()) + (p + 1) * np.log(tr.sum())
        if best_ar is None or bic < best_ar[0]:
            best_ar = (bic, p, A @ coef)
    _, ar_p, ar_pred = best_ar

    # Ridge on all 40 standardized lags (same inputs as the LSTM), penalty chosen on validation.
    from sklearn.linear_model import Ridge

    flat = X.reshape(len(X), -1)
    best_ridge = None
    for alpha in (0.01, 0.1, 1.0, 10.0, 100.0):
        m = Ridge(alpha=alpha).fit(flat[tr], y[tr])
        v = float(np.mean((m.predict(flat[sets["validation"]]) - y[sets["validation"]]) ** 2))
        if best_ridge is None or v < best_ridge[0]:
            best_ridge = (v, alpha, m.predict(flat))
    _, ridge_alpha, ridge_pred = best_ridge

    models = {"lstm": lstm_pred, "naive_last_value": last, f"ar_{ar_p}_unemp_only": ar_pred,
              "ridge_all_lags": ridge_pred}
    table = {name: {k: {**errors(pred[m], y[m]), "n": int(m.sum())} for k, m in sets.items()}
             for name, pred in models.items()}
    periods = {k: [str(data.frame["target_time"][m].iloc[0]), str(data.frame["target_time"][m].iloc[-1])]
               for k, m in sets.items()}
    metrics = {
        "data": "data/macro_quarterly.csv", "periods_by_target_quarter": periods,
        "chosen_restart": r, "validation_mse": vmse, "ar_order": ar_p, "ridge_alpha": ridge_alpha,
        "errors": table, "n_parameters": int(sum(p.numel() for p in net.parameters())),
        "tensor_sha256": tensor_digest(state), "train_seconds": round(time.perf_counter() - t0, 1),
    }
    (HERE / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    for name in models:
        t, v = table[name]["test"], table[name]["validation"]
        print(f"{name:>24}: validation RMSE {v['rmse']:.3f}  test RMSE {t['rmse']:.3f}  test MAE {t['mae']:.3f}")
    print(f"{metrics['train_seconds']} s")


if __name__ == "__main__":
    main()
