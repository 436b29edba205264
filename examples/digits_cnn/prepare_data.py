"""Write the bundled digits data: data/digits_train.npz and data/digits_test.npz.

Source: scikit-learn's copy of the UCI "Optical Recognition of Handwritten Digits" test set
(``sklearn.datasets.load_digits``: 1,797 images, 8x8 pixels, intensities 0..16), CC BY 4.0.
Split: stratified by digit, 30% held out, ``sklearn.model_selection.train_test_split`` with
``random_state=0``. Each archive holds ``X`` (uint8, N x 1 x 8 x 8, the raw 0..16 counts),
``y`` (int64 digit) and ``index`` (row of ``load_digits``), so the split can be checked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent


def main() -> None:
    digits = load_digits()
    X = digits.images.astype(np.uint8)[:, None]  # values are integers 0..16
    y = digits.target.astype(np.int64)
    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=0.3, stratify=y, random_state=0)
    for name, rows in (("train", np.sort(tr)), ("test", np.sort(te))):
        out = HERE / "data" / f"digits_{name}.npz"
        np.savez_compressed(out, X=X[rows], y=y[rows], index=rows)
        print(f"wrote {out.relative_to(HERE)}: {len(rows)} images")


if __name__ == "__main__":
    main()
