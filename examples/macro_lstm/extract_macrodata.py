"""Extract statsmodels' US macroeconomic data to data/macrodata.csv (run once; needs statsmodels).

The committed CSV is what the example uses, so neither training nor the audit needs statsmodels.
``pip install statsmodels`` then ``python extract_macrodata.py`` reproduces it byte for byte
(statsmodels 0.14; the series itself has not changed since it was compiled in 2009).

Source (from ``statsmodels.datasets.macrodata``): compiled by Skipper Seabold; all series from
FRED, Federal Reserve Bank of St. Louis (accessed 2009-12-15), except the unemployment rate, from
the Bureau of Labor Statistics, U.S. Department of Labor (accessed 2009-12-15). Public domain.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    from statsmodels.datasets import macrodata

    frame = macrodata.load_pandas().data
    frame["year"] = frame["year"].astype(int)
    frame["quarter"] = frame["quarter"].astype(int)
    out = HERE / "data" / "macrodata.csv"
    frame.to_csv(out, index=False, lineterminator="\n")
    print(f"wrote {out.relative_to(HERE)}: {len(frame)} quarters, {frame.shape[1]} columns")


if __name__ == "__main__":
    main()
