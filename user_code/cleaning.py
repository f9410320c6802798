"""Cleaning scripts: `clean(df, **kw) -> df`, stateless and causal (a row may use only rows at or before it).

`df` is indexed by time (flowork parses and checks `data.time_column`); return a frame indexed the same way.
"""

from __future__ import annotations

import pandas as pd


def regular_grid(df: pd.DataFrame, freq: str | None = None, max_fill: int | None = 3) -> pd.DataFrame:
    """Put the rows on a regular `freq` grid and carry the last observation forward into gaps.

    Forward fill only: interpolation would use the value after a gap, i.e. the future.
    """
    if freq:
        df = df.asfreq(freq)
    return df.ffill(limit=max_fill)
