"""Feature scripts: `build(df, **kw) -> X`, stateless and causal: the row for time t uses only rows at or before t.

`df` is the cleaned frame indexed by time; X keeps that index (rows may be dropped, e.g. the lag warm-up).
flowork builds the target itself (`data.target`) and checks every script for leakage on each run.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import pandas as pd

# pandas' DateOffset of a frequency alias: to_offset parses the alias again on each call (~25 us a request)
_offset = functools.cache(pd.tseries.frequencies.to_offset)


def _forecast_time(index: pd.DatetimeIndex, horizon: int, freq: str | None) -> pd.DatetimeIndex:
    """The time `horizon` steps after each row. With `data.freq: null` the step is the one pandas infers from the
    rows; on an irregular series, where there is none, each row's own time stands in for it."""
    freq = _spacing(index, freq)
    if freq is None:
        return index
    step = _offset(freq) * horizon
    if isinstance(step, pd.offsets.Tick) and index.tz is None:  # a fixed step (D, h): numpy adds it in ~10 us
        return pd.DatetimeIndex(index.to_numpy() + np.timedelta64(step.nanos, "ns"), name=index.name)
    # pandas' offset arithmetic (~40 us a request); index.shift(horizon, freq) regenerates a date range when the
    # index has that freq
    return index + step


def _spacing(index: pd.DatetimeIndex, freq: str | None) -> str | None:
    """`data.freq`, else the spacing pandas infers from the rows (None on an irregular series)."""
    if freq is None and len(index) >= 3:
        return pd.infer_freq(index)
    return freq


# The cycles calendar terms can describe, each with its length and where a time falls in it (a share of the cycle).
# Column prefixes: hod = hour of day, dow = day of week, doy = day of year (the example's own, unchanged).
CYCLES = {
    "day": (pd.DateOffset(days=1), "hod"),
    "week": (pd.DateOffset(weeks=1), "dow"),
    "year": (pd.DateOffset(years=1), "doy"),
}
# A seasonal lag longer than this many rows is left to the calendar terms: every served request would have to carry
# that many rows, and every series would lose them to the warm-up (a year of daily data, a week of 15-minute data).
SEASONAL_MAX_ROWS = 200


def _angle(time: pd.DatetimeIndex, cycle: str) -> np.ndarray:
    """Where each time falls in `cycle`, in radians (0 at its start: midnight, Monday 00:00, 1 January)."""
    # on numpy's datetimes: pandas' .dayofyear, .hour, .minute and .dayofweek cost ~30 us each on a request's rows
    stamps = time.to_numpy()
    days = stamps.astype("datetime64[D]")
    if cycle == "year":
        day_of_year = (days - days.astype("datetime64[Y]")).astype(np.int64) + 1  # 1 on 1 January, as pandas'
        return 2 * np.pi * day_of_year / 365.25
    of_day = (stamps - days) / np.timedelta64(1, "D")
    if cycle == "day":
        return 2 * np.pi * of_day
    day_of_week = (days.astype(np.int64) + 3) % 7  # 1 January 1970, day 0, was a Thursday (Monday = 0)
    return 2 * np.pi * (day_of_week + of_day) / 7


@functools.cache
def _rows_per(freq: str, cycle: str) -> int:
    """Rows of data spaced `freq` in one `cycle` (from a Monday, 1 January 2001): 24 hours a day, 12 months a year."""
    start = pd.Timestamp("2001-01-01")
    return len(pd.date_range(start, start + CYCLES[cycle][0], freq=freq, inclusive="left"))


def _cycles(index: pd.DatetimeIndex, freq: str | None, cycles: str | Sequence[str]) -> tuple[str, ...]:
    """The cycles named, or for `auto` the two shortest that span more than one row of the data: hour-of-day and
    day-of-week for sub-daily data (not the year: such series rarely span the years a yearly term needs, and over a
    few weeks of data it is a trend that the model extrapolates), day-of-week and day-of-year for daily data, the
    season alone for weekly, monthly or quarterly data."""
    if cycles != "auto":
        unknown = sorted(set(cycles) - set(CYCLES))
        if isinstance(cycles, str) or unknown:
            raise ValueError(f"cycles={cycles!r}: use auto or a list of {list(CYCLES)}")
        return tuple(cycles)
    freq = _spacing(index, freq) or _median_spacing(index)
    return tuple(c for c in CYCLES if _rows_per(freq, c) > 1)[:2]


def _median_spacing(index: pd.DatetimeIndex) -> str:
    """The usual time between rows of an irregular series, as a pandas alias ('h')."""
    if len(index) < 2:
        raise ValueError("cycles=auto needs data.freq, or at least 2 rows to see the data's spacing")
    return pd.tseries.frequencies.to_offset(pd.Series(index).diff().median()).freqstr


def _seasonal_lags(index: pd.DatetimeIndex, freq: str | None, cycles: tuple[str, ...], horizon: int) -> list[int]:
    """For each cycle at most SEASONAL_MAX_ROWS rows long, the lag of the latest value at the same point of the cycle
    as the forecast time: the same hour yesterday and last week for hourly data (lags 23 and 167 one hour ahead), the
    same month last year for monthly data: what a seasonal naive forecast predicts."""
    freq = _spacing(index, freq) or _median_spacing(index)
    periods = [_rows_per(freq, c) for c in cycles]
    return [-horizon % period for period in periods if 1 < period <= SEASONAL_MAX_ROWS]


def _calendar(
    index: pd.DatetimeIndex, horizon: int, freq: str | None, harmonics: int = 1, cycles: Sequence[str] = ("year",)
) -> dict[str, np.ndarray]:
    """Each cycle's phase at the forecast time as `harmonics` sin/cos pairs (a Fourier series of the cycle): known in
    advance, so not a leak. The second harmonic lets a linear model fit the asymmetric seasons (a long dry summer,
    a short spring) that one sine cannot; more fit a daily profile with a morning and an evening peak."""
    forecast_time = _forecast_time(index, horizon, freq)
    cols = {}
    for cycle in cycles:
        angle, prefix = _angle(forecast_time, cycle), CYCLES[cycle][1]
        for k in range(1, int(harmonics) + 1):
            suffix = "" if k == 1 else str(k)
            cols[f"{prefix}_sin{suffix}"], cols[f"{prefix}_cos{suffix}"] = np.sin(k * angle), np.cos(k * angle)
    return cols


def _lag(s: pd.Series, k: int) -> pd.Series:
    """`s` k rows earlier. Lag 0 is `s` itself: shift(0) would only copy it (~30 us a column, on every request)."""
    return s.shift(k) if k else s


def _shifted(a: np.ndarray, k: int) -> np.ndarray:
    """`a` k rows later: row t holds a[t - k], the first k rows NaN."""
    if k == 0:
        return a
    out = np.full(len(a), np.nan)
    if k < len(a):  # else every row's lag is before the first one
        out[k:] = a[: len(a) - k]
    return out


def _trailing(a: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (ddof=1, as pandas) of the `w` values ending at each row; NaN until `w` values
    are there, and wherever one of them is missing."""
    mean, std = np.full(len(a), np.nan), np.full(len(a), np.nan)
    if len(a) >= w:
        windows = np.lib.stride_tricks.sliding_window_view(a, w)
        mean[w - 1 :] = windows.mean(axis=1)
        if w > 1:
            std[w - 1 :] = windows.std(axis=1, ddof=1)
    return mean, std


def tabular(
    df: pd.DataFrame,
    target: str,
    horizon: int = 1,
    freq: str | None = "D",
    lags: int = 30,
    exog: tuple[str, ...] | list[str] = (),
    exog_lags: int = 3,
    spreads: tuple[str, ...] | list[str] = (),
    windows: tuple[int, ...] | list[int] = (7, 30),
    categorical: dict[str, list[str]] | None = None,
    calendar: bool | int = True,
    cycles: str | Sequence[str] = ("year",),
    seasonal_lags: bool = False,
) -> pd.DataFrame:
    """Lags, rolling statistics and calendar terms for tabular regressors (ridge, random forest, xgboost).

    `<col>_lag<k>` is the value k rows before t (lag0 = the value at t); `<target>_minus_<col>_lag<k>` (one per
    column in `spreads`, `exog_lags` lags) is the target minus that column, e.g. the day's temperature range, a
    cloudiness signal that trees cannot form from the two columns themselves; `<target>_mean<w>`/`_std<w>` are
    trailing windows ending at t; `categorical` columns become one-hot indicators of their value at t; `calendar`
    is the number of sin/cos pairs (True = 1, False = 0) of each of the `cycles` at the forecast time: `day`
    (hod_*), `week` (dow_*), `year` (doy_*), or `auto` for those that suit the data's spacing (`freq`: hour-of-day
    and day-of-week for hourly data, day-of-week and day-of-year for daily, the season for monthly).
    `seasonal_lags` adds, for each cycle of at most SEASONAL_MAX_ROWS rows, the target's latest value at the same
    point of the cycle as the forecast time (`<target>_lag23` and `_lag167` for hourly data one step ahead).

    Written on numpy arrays rather than pandas columns: a served model runs this on every request, and pandas'
    per-column overhead made it ~0.5 ms on the ~30 rows of one (~0.1 ms this way), the largest share of a request.
    """
    if min(lags, exog_lags, int(calendar)) < 0 or min(windows, default=1) < 1:
        raise ValueError(
            f"lags={lags}, exog_lags={exog_lags}, calendar={calendar}, windows={list(windows)}: "
            "lags and calendar must be >= 0, each window >= 1"
        )
    cycles = _cycles(df.index, freq, cycles)
    values = {c: df[c].to_numpy(dtype=float, na_value=np.nan) for c in {target, *exog, *spreads}}
    cols: dict[str, np.ndarray] = {}
    seasonal = _seasonal_lags(df.index, freq, cycles, horizon) if seasonal_lags else []
    for k in sorted({*range(lags), *seasonal}):  # a seasonal lag among the last `lags` is there already
        cols[f"{target}_lag{k}"] = _shifted(values[target], k)
    for c in exog:
        for k in range(exog_lags):
            cols[f"{c}_lag{k}"] = _shifted(values[c], k)
    for c in spreads:
        spread = values[target] - values[c]
        for k in range(exog_lags):
            cols[f"{target}_minus_{c}_lag{k}"] = _shifted(spread, k)
    for w in windows:
        cols[f"{target}_mean{w}"], cols[f"{target}_std{w}"] = _trailing(values[target], w)
    cols |= _calendar(df.index, horizon, freq, int(calendar), cycles)
    for c, categories in (categorical or {}).items():
        onehot = pd.get_dummies(pd.Categorical(df[c], categories=categories), prefix=c, dtype=float)
        cols |= {name: onehot[name].to_numpy() for name in onehot.columns}
    table = np.column_stack(list(cols.values())) if cols else np.empty((len(df), 0))
    known = ~np.isnan(table).any(axis=1)  # the rows where every feature is known: the lag/window warm-up is dropped
    return pd.DataFrame(table[known], index=df.index[known], columns=list(cols))


def prophet_frame(
    df: pd.DataFrame,
    target: str,
    horizon: int = 1,
    freq: str | None = "D",
    regressors: tuple[str, ...] | list[str] = (),
    regressor_lags: int = 2,
) -> pd.DataFrame:
    """A Prophet frame: `ds` = the forecast time (t + horizon), regressors = values known at t.

    Prophet models y(ds) as trend + seasonality + regressor effects; lagged observations as regressors let it use
    the latest weather, which is what makes it competitive for a one-day-ahead forecast.
    """
    cols: dict[str, pd.Series] = {"ds": pd.Series(_forecast_time(df.index, horizon, freq), index=df.index)}
    for c in [target, *regressors]:
        for k in range(regressor_lags):
            cols[f"{c}_lag{k}"] = _lag(df[c], k)
    return pd.DataFrame(cols, index=df.index).dropna()


def window(df: pd.DataFrame, target: str, length: int = 30) -> pd.DataFrame:
    """The last `length` values of the target up to t, oldest first (`w0` .. `w{length-1}` = the value at t)."""
    cols = {f"w{i}": df[target].shift(length - 1 - i) for i in range(length)}
    return pd.DataFrame(cols, index=df.index).dropna()
