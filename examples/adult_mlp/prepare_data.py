"""Build data/adult_train.csv.gz and data/adult_test.csv.gz from the original UCI Adult files.

Usage::

    python prepare_data.py /path/to/folder/with/adult.data/and/adult.test

The original files (Becker & Kohavi 1996, UCI Machine Learning Repository,
https://doi.org/10.24432/C5XW20, CC BY 4.0) are comma-separated without a header, with a space
after each comma. This script

* checks the sha256 of ``adult.data`` and ``adult.test`` against the published copies (pass
  ``--no-verify`` to skip),
* skips the first line of ``adult.test`` (``|1x3 Cross validator``) and blank lines,
* strips surrounding spaces from every value,
* strips the trailing ``.`` from the labels of ``adult.test`` (``<=50K.`` -> ``<=50K``),
* keeps missing values as the literal ``?``, keeps every row and column (``fnlwgt`` included),
* writes CSV with a header row of the original column names, gzip-compressed with mtime 0 and no
  embedded file name, so that rebuilding gives byte-identical files.

Only the Python standard library is used.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import sys
from pathlib import Path

COLUMNS = ["age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
           "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
           "hours-per-week", "native-country", "income"]

SHA256 = {
    "adult.data": "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d",
    "adult.test": "a2a9044bc167a35b2361efbabec64e89d69ce82d9790d2980119aac5fd7e9c05",
}
EXPECTED_ROWS = {"adult.data": 32561, "adult.test": 16281}
LABELS = {"<=50K", ">50K"}
OUTPUTS = {"adult.data": "adult_train.csv.gz", "adult.test": "adult_test.csv.gz"}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_rows(path: Path, *, is_test: bool) -> list[list[str]]:
    text = path.read_text(encoding="ascii")
    lines = text.splitlines()
    if is_test:
        if not lines or not lines[0].startswith("|"):
            raise SystemExit(f"{path}: expected a first comment line starting with '|'.")
        lines = lines[1:]
    rows = []
    for lineno, line in enumerate(lines, start=2 if is_test else 1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != len(COLUMNS):
            raise SystemExit(f"{path}:{lineno}: {len(fields)} fields, expected {len(COLUMNS)}.")
        if is_test and fields[-1].endswith("."):
            fields[-1] = fields[-1][:-1]
        if fields[-1] not in LABELS:
            raise SystemExit(f"{path}:{lineno}: unexpected label {fields[-1]!r}.")
        rows.append(fields)
    return rows


def write_csv_gz(rows: list[list[str]], out: Path) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    raw = buf.getvalue().encode("ascii")
    with out.open("wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0,
                                             compresslevel=9) as gz:
        gz.write(raw)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="folder holding adult.data and adult.test")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "data",
                        help="output folder (default: data/ beside this script)")
    parser.add_argument("--no-verify", action="store_true",
                        help="do not check the sha256 of the original files")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, out_name in OUTPUTS.items():
        src = args.source / name
        if not src.is_file():
            raise SystemExit(f"{src} does not exist.")
        digest = sha256(src)
        if not args.no_verify and digest != SHA256[name]:
            raise SystemExit(f"{src}: sha256 {digest} differs from the published {SHA256[name]}; "
                             "pass --no-verify to use it anyway.")
        rows = read_rows(src, is_test=name == "adult.test")
        if not args.no_verify and len(rows) != EXPECTED_ROWS[name]:
            raise SystemExit(f"{src}: {len(rows)} rows, expected {EXPECTED_ROWS[name]}.")
        out = args.out / out_name
        write_csv_gz(rows, out)
        n_missing = sum("?" in r for r in rows)
        print(f"{name} (sha256 {digest}) -> {out}: {len(rows)} rows, "
              f"{n_missing} with a missing value, sha256 {sha256(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
