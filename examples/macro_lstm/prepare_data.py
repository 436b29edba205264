"""Derive the model's indicators from data/macrodata.csv into data/macro_quarterly.csv.

One row per quarter, 1959Q2-2009Q3 (1959Q1 is dropped: growth rates and ``infl`` need the
previous quarter; macrodata stores 0.00 there), in the long format the audit reads
(``[data] modality = "sequence"``, one series, ``time_column = "date"``):

- ``date``: first day of the quarter (ISO);
- ``unemp``: unemployment rate, % (BLS, seasonally adjusted) -- also the forecast target;
- ``gdp_growth``: real GDP growth, annualised % (400 * diff log realgdp);
- ``inv_growth``: real private investment growth, annualised % (400 * diff log realinv);
- ``infl``: CPI inflation, annualised % (as in macrodata: 400 * diff log cpi);
- ``tbilrate``: 3-month Treasury bill rate, %.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
FEATURES = ["unemp", "gdp_growth", "inv_growth", "infl", "tbilrate"]


def main() -> None:
    raw = pd.read_csv(HERE / "data" / "macrodata.csv")
    out = pd.DataFrame({
        "date": [f"{y}-{3 * (q - 1) + 1:02d}-01" for y, q in zip(raw.year, raw.quarter, strict=True)],
        "unemp": raw.unemp,
        "gdp_growth": 400 * np.log(raw.realgdp).diff(),
        "inv_growth": 400 * np.log(raw.realinv).diff(),
        "infl": raw.infl,
        "tbilrate": raw.tbilrate,
    }).iloc[1:].round(4)
    path = HERE / "data" / "macro_quarterly.csv"
    out.to_csv(path, index=False, lineterminator="\n")
    print(f"wrote {path.relative_to(HERE)}: {len(out)} quarters ({out.date.iloc[0]} .. {out.date.iloc[-1]})")


if __name__ == "__main__":
    main()
