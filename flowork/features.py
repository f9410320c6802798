"""Run the user's clean/build scripts, build the target, and check that features do not use the future.

Contract (DESIGN §3): `clean(df, **kw) -> df` and `build(df, **kw) -> X` are stateless and causal. Both receive and
return frames indexed by time; `build` may drop rows (e.g. lag warm-up) but not invent timestamps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from flowork.errors import FloworkError, call_user_code, function_name

Step = Callable[[pd.DataFrame], pd.DataFrame]


@dataclass(frozen=True)
class Pipeline:
    """The user's feature scripts of one model, bound to their config arguments."""

    clean: Step | None
    build: Step
    where: str  # config file of the features option, for messages

    def cleaned(self, raw: pd.DataFrame) -> pd.DataFrame:
        if self.clean is None:
            return raw
        out = self.call("clean", self.clean, raw)
        check_frame(out, "clean", self.where, raw.index)
        return out

    def features(self, clean_df: pd.DataFrame, copy: bool = True) -> pd.DataFrame:
        index = clean_df.index  # kept: a build given clean_df itself may set another index on it
        X = self.call("build", self.build, clean_df, copy)
        check_frame(X, "build", self.where, index)
        return X

    def call(self, step: str, fn: Step, df: pd.DataFrame, copy: bool = True) -> pd.DataFrame:
        """`fn(df)`; on a copy of `df` unless told it is this pipeline's own: user code may change its input."""
        return call_user_code(
            f"features.{step} (`{function_name(fn)}`)",
            fn,
            df.copy() if copy else df,
            where=f"{self.where}, key `features.{step}`",
            fix=f"check its arguments there, the {step} function, and the data it got (types, missing values)",
        )

    def __call__(self, raw: pd.DataFrame) -> pd.DataFrame:
        clean_df = self.cleaned(raw)
        # what clean() returned is this call's own (clean got a copy of raw): build may change it, no second copy
        return self.features(clean_df, copy=clean_df is raw)


def check_frame(out: object, step: str, where: str, index: pd.Index) -> None:
    if not isinstance(out, pd.DataFrame):
        raise FloworkError(
            f"features.{step} returned {type(out).__name__}, expected a pandas DataFrame",
            where=where,
            fix=f"make the {step} function return a DataFrame indexed by time",
        )
    if step == "build" and not out.index.isin(index).all():
        raise FloworkError(
            "features.build returned rows whose timestamps are not in its input",
            where=where,
            fix="keep the input's time index on X (drop rows if needed, but do not reset or shift the index)",
        )
    if not isinstance(out.index, pd.DatetimeIndex) or not out.index.is_monotonic_increasing:
        raise FloworkError(
            f"features.{step} must return a frame with a sorted DatetimeIndex (got {type(out.index).__name__})",
            where=where,
            fix="keep the time index of the input frame; do not reset_index()",
        )


def make_target(clean_df: pd.DataFrame, column: str, horizon: int) -> tuple[pd.Series, pd.Series]:
    """y[t] = column at `horizon` rows after t, and the time that value is observed (NaT past the end, or where the
    value is missing)."""
    if horizon < 1:
        raise FloworkError(
            f"target horizon must be >= 1, got {horizon}",
            where="conf/data/<option>.yaml, key `data.target.horizon`",
            fix="set data.target.horizon to the number of steps ahead to forecast (1 = next row)",
        )
    if column not in clean_df.columns:
        raise FloworkError(
            f"target column {column!r} is missing after features.clean",
            fix="keep the target column in the frame clean() returns",
        )
    y = clean_df[column].shift(-horizon).rename(f"{column}_t+{horizon}")
    # a missing target value is never observed: its row is neither trained on nor scored, as past the series' end
    label_time = pd.Series(clean_df.index, index=clean_df.index).shift(-horizon).where(y.notna())
    return y, label_time


def leakage_check(raw: pd.DataFrame, pipeline: Pipeline, X_full: pd.DataFrame, cuts=(0.5, 0.8)) -> None:
    """Features for rows <= t must not change when rows after t are removed or altered (DESIGN §3).

    At each cut t the features are rebuilt twice: on the data truncated after t, and on the data with every row
    after t altered. A column that differs at a row <= t uses the future; a row <= t that disappears when the
    future is removed does too. Costs two extra clean+build per cut.
    """
    for share in cuts:
        cut = int(len(raw) * share)
        if cut < 2:
            continue
        t = raw.index[cut - 1]
        past = X_full.index[X_full.index <= t]
        truncated = pipeline(raw.iloc[:cut])
        changed = set(X_full.columns) ^ set(truncated.columns)
        if changed:
            raise FloworkError(
                f"features depend on the data length: columns {sorted(map(str, changed))} appear only with more "
                "or fewer rows",
                where=pipeline.where,
                fix="build the same columns whatever the number of rows",
            )
        leaky = differing(X_full, truncated, past.intersection(truncated.index))
        leaky += [c for c in differing(X_full, pipeline(alter_after(raw, cut)), past) if c not in leaky]
        lost = past.difference(truncated.index)
        if leaky or len(lost):
            what = f"feature column(s) {leaky}" if leaky else f"rows {list(lost[:3].astype(str))}"
            raise FloworkError(
                f"leakage: {what} change for rows up to {t} when later rows are removed or altered, "
                "so they use the future",
                where=pipeline.where,
                fix="compute features from past rows only (shift(k) with k >= 0, rolling windows that end at the "
                "row, no centred windows, no bfill/interpolate, no statistics over the whole series)",
            )


def alter_after(raw: pd.DataFrame, cut: int) -> pd.DataFrame:
    """The same frame with every value after row `cut` changed (numbers shifted, other values reversed)."""
    out = raw.copy()
    for c in out.columns:
        future = out[c].iloc[cut:]
        if pd.api.types.is_numeric_dtype(future) and not pd.api.types.is_bool_dtype(future):
            out.iloc[cut:, out.columns.get_loc(c)] = future * 1.5 + 7.0
        else:
            out.iloc[cut:, out.columns.get_loc(c)] = future.to_numpy()[::-1]
    return out


def differing(a: pd.DataFrame, b: pd.DataFrame, rows: pd.Index) -> list[str]:
    """Columns whose values differ between `a` and `b` on `rows` (NaN equals NaN; floats to 1e-9 relative)."""
    rows = rows.intersection(b.index)
    cols = [c for c in a.columns if c in b.columns]
    left, right = a.loc[rows, cols], b.loc[rows, cols]
    numeric = [c for c in cols if left[c].dtype.kind in "biufc" and right[c].dtype.kind in "biufc"]
    out = set()
    if numeric:  # one vectorised comparison for all numeric columns: this runs on every job
        x, y = left[numeric].to_numpy(float), right[numeric].to_numpy(float)
        equal = np.isclose(x, y, rtol=1e-9, atol=1e-12, equal_nan=True).all(axis=0)
        out = {c for c, ok in zip(numeric, equal, strict=True) if not ok}
    out |= {c for c in cols if c not in numeric and not left[c].equals(right[c])}
    return [str(c) for c in cols if c in out]


def same(a: pd.Series, b: pd.Series) -> bool:
    if a.dtype.kind in "fc" or b.dtype.kind in "fc":
        try:
            return bool(np.allclose(a.to_numpy(float), b.to_numpy(float), rtol=1e-9, atol=1e-12, equal_nan=True))
        except (TypeError, ValueError):
            pass
    return bool(a.equals(b))
