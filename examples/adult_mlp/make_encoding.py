"""Write encoding.json: how the raw Adult columns become the model's 107 input columns.

Built from the TRAINING data only (data/adult_train.csv.gz, ``?`` read as missing):

* numeric, standardized with the training mean and (population, ddof=0) standard deviation,
  all integer-valued: age, education-num, hours-per-week; capital-gain and capital-loss after
  ``log1p`` (mean and sd taken of the transformed values);
* categorical, one-hot, levels sorted from the training data: workclass, education,
  marital-status, occupation, relationship, race, sex, native-country; the columns with missing
  values (workclass, occupation, native-country) get an extra last level ``"missing"``;
* left out: fnlwgt (a census sampling weight, not a property of the person) and income (the
  target, classes ``<=50K`` / ``>50K``).

The script then checks that both the training and the test file encode without error and that
no test level is unknown to the encoding.

Usage: python make_encoding.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
try:
    import audit  # noqa: F401
except ImportError:  # running from a source checkout without `pip install -e .`
    sys.path.insert(0, str(HERE.parents[1]))

from audit.core.dataset import CategoricalFeature, Encoding, NumericFeature, read_table  # noqa: E402

NA_VALUES = ["?"]
TARGET = "income"
CLASSES = ("<=50K", ">50K")
EXCLUDED = ("fnlwgt", TARGET)
NUMERIC = {"age": None, "education-num": None, "capital-gain": "log1p", "capital-loss": "log1p",
           "hours-per-week": None}
CATEGORICAL = ("workclass", "education", "marital-status", "occupation", "relationship", "race",
               "sex", "native-country")
MISSING_LEVEL = "missing"


def build_encoding(train) -> Encoding:
    feats = []
    for name in train.columns:  # keep the original column order
        if name in EXCLUDED:
            continue
        col = train[name]
        if name in NUMERIC:
            x = col.to_numpy(dtype=float)
            if np.isnan(x).any():
                raise SystemExit(f"{name} has missing values in the training data.")
            if NUMERIC[name] == "log1p":
                x = np.log1p(x)
            feats.append(NumericFeature(name, float(np.mean(x)), float(np.std(x)),
                                        transform=NUMERIC[name], integer=True))
        elif name in CATEGORICAL:
            levels = sorted(set(col.dropna().astype(str).str.strip()))
            has_missing = bool(col.isna().any())
            if has_missing:
                assert MISSING_LEVEL not in levels
                levels.append(MISSING_LEVEL)
            feats.append(CategoricalFeature(name, tuple(levels),
                                            missing=MISSING_LEVEL if has_missing else None))
        else:
            raise SystemExit(f"Unexpected column {name!r}.")
    return Encoding(tuple(feats), classes=CLASSES)


def check(enc: Encoding, frame, label: str) -> None:
    X = enc.encode(frame)  # raises on unknown levels or unhandled missing values
    assert X.shape == (len(frame), len(enc.columns)) and np.isfinite(X).all()
    for f in enc.features:
        if isinstance(f, CategoricalFeature):
            present = set(frame[f.name].dropna().astype(str))
            unused = [lvl for lvl in f.levels if lvl != MISSING_LEVEL and lvl not in present]
            if unused:
                print(f"  {label}: {f.name} levels absent from this file: {unused}")
    print(f"{label}: {X.shape[0]} rows encode to {X.shape[1]} columns")


def main() -> int:
    train = read_table(HERE / "data" / "adult_train.csv.gz", na_values=NA_VALUES)
    test = read_table(HERE / "data" / "adult_test.csv.gz", na_values=NA_VALUES)
    enc = build_encoding(train)
    doc = enc.to_dict()
    assert Encoding.from_dict(doc) == enc
    (HERE / "encoding.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(f"wrote encoding.json: {len(enc.features)} features, {len(enc.columns)} columns")
    check(enc, train, "train")
    check(enc, test, "test")
    return 0


if __name__ == "__main__":
    sys.exit(main())
