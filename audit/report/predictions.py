"""Per-row predictions saved beside a report (``[report] save_predictions = true``).

``predictions.parquet`` holds, for every audited row in order: ``row`` (its position),
``y`` (the outcome, 0/1 for a binary task, class index for multiclass), ``decision`` (the
model's decision on the same scale), ``score`` (the positive class's probability; binary
models with scores only) and one text column ``sensitive:<name>`` per sensitive attribute.
results.json describes it under ``"predictions"`` with its SHA-256 and a SHA-256 of the rows
(outcome and sensitive columns, in order), so that ``audit compare`` can check that two saved
reports describe the same rows.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

import numpy as np

FILE = "predictions.parquet"
SENSITIVE_PREFIX = "sensitive:"


def predictions_frame(model: Any, data: Any) -> Any:
    """The per-row predictions of ``model`` on ``data`` as a data frame (see the module)."""
    import pandas as pd

    preds = model.predictions(data)
    out = {"row": np.arange(data.n_rows, dtype=np.int64), "y": np.asarray(data.y),
           "decision": np.asarray(preds.labels)}
    if data.task == "binary" and preds.scores is not None:
        out["score"] = np.asarray(preds.scores, dtype=float).reshape(-1)
    for c in data.spec.sensitive:
        out[SENSITIVE_PREFIX + c] = data.sensitive[c].astype(str).to_numpy()
    return pd.DataFrame(out)


def rows_sha256(frame: Any) -> str:
    """SHA-256 of the rows a predictions frame describes: their order, outcome and groups."""
    import pandas as pd

    h = hashlib.sha256(f"rows={len(frame)}".encode())
    for c in ["y", *(c for c in frame.columns if str(c).startswith(SENSITIVE_PREFIX))]:
        h.update(str(c).encode() + b"\0")
        h.update(pd.util.hash_pandas_object(frame[c].astype(str).reset_index(drop=True), index=False).to_numpy().tobytes())
    return h.hexdigest()


def parquet_bytes(frame: Any) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def predictions_record(frame: Any) -> dict[str, Any]:
    """What results.json says of the saved predictions."""
    return {"file": FILE, "rows": int(len(frame)), "columns": [str(c) for c in frame.columns],
            "rows_sha256": rows_sha256(frame), "sha256": hashlib.sha256(parquet_bytes(frame)).hexdigest()}


__all__ = ["FILE", "SENSITIVE_PREFIX", "parquet_bytes", "predictions_frame", "predictions_record", "rows_sha256"]
