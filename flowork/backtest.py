"""The evaluation protocol, identical for every model (DESIGN §4).

Rolling origin, expanding window. All boundaries are timestamps computed from the loaded data, so every model is
scored on the same origins whatever rows its feature script drops:

- the last `holdout` share of rows is the final test, never used for selection;
- the rows before it are split into `folds` consecutive validation windows after `min_train` rows;
- a model scored on a window is trained only on rows whose *label* is observed before the window starts
  (a gap of `horizon` rows), and a validation row counts only if its label is observed before the holdout.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from flowork.errors import FloworkError, call_user_code, function_name
from flowork.notices import warn_once

log = logging.getLogger("flowork.backtest")
FEW_ROWS = 20  # validation windows shorter than this get a warning


@dataclass(frozen=True)
class Plan:
    valid_starts: tuple[pd.Timestamp, ...]  # start of each validation window
    holdout_start: pd.Timestamp


@dataclass(frozen=True)
class Fold:
    name: str  # fold0 .. foldK, or holdout
    train: np.ndarray  # boolean masks over the model's rows
    test: np.ndarray


def observed_times(raw: pd.DataFrame, target: str) -> pd.DatetimeIndex:
    """The data's times up to its last target value, which the backtest is planned on: rows after it (exogenous
    values known ahead, a target not recorded yet) have no label to score, and the holdout would be empty."""
    last = raw[target].last_valid_index()
    times = raw.index if last is None else raw.index[raw.index <= last]
    if len(times) < len(raw):
        warn_once(  # every trial plans the same backtest: once a sweep
            log,
            "the last %d rows have no %r value: the backtest and the holdout end at %s, its last value",
            len(raw) - len(times),
            target,
            last,
        )
    return times


def plan(times: pd.DatetimeIndex, folds: int, min_train: float, holdout: float, horizon: int) -> Plan:
    """Fold and holdout boundaries for a series with these timestamps."""
    n = len(times)
    if not 0 < holdout < 1:
        raise FloworkError(
            f"data.holdout must be a share between 0 and 1, got {holdout}",
            where="conf/data/<option>.yaml, key `data.holdout`",
            fix="use e.g. data.holdout=0.2 (the last 20% of rows)",
        )
    if folds < 1:
        raise FloworkError(
            f"data.backtest.folds must be >= 1, got {folds}",
            where="conf/data/<option>.yaml, key `data.backtest.folds`",
            fix="use e.g. data.backtest.folds=5",
        )
    n_hold = max(1, round(n * holdout))
    if n_hold <= horizon:  # no holdout origin whose label is observed
        least = math.ceil(100 * (horizon + 1) / n) / 100
        raise FloworkError(
            f"the holdout is {n_hold} of {n} rows (data.holdout={holdout}): too short to score a forecast "
            f"{horizon} step(s) ahead, it must be longer than the horizon",
            where="conf/data/<option>.yaml, keys `data.holdout`, `data.target.horizon`",
            fix=f"raise data.holdout to {least:.2f} or more, shorten data.target.horizon, or use more data"
            if least < 0.5
            else "use more data, or a shorter data.target.horizon",
        )
    n_dev = n - n_hold - horizon  # rows whose label is observed before the holdout starts
    n_min = math.ceil(min_train * n_dev) if min_train < 1 else int(min_train)
    per_fold = (n_dev - n_min) // folds
    if n_min < 2 or per_fold < 1:
        raise FloworkError(
            f"too few rows ({n}) for {folds} folds, min_train={min_train}, holdout={holdout} and horizon={horizon}: "
            f"{n_dev} development rows leave {max(per_fold, 0)} per validation window",
            where="conf/data/<option>.yaml, keys `data.backtest.*`, `data.holdout`",
            fix="use more data, fewer folds (data.backtest.folds=2), a smaller min_train or holdout",
        )
    if per_fold < FEW_ROWS:
        warn_once(  # every trial plans the same backtest: once a sweep
            log,
            "each of the %d validation windows has %d rows: a CV score on so few is noisy and may pick a model by "
            "luck (fewer data.backtest.folds or a smaller data.backtest.min_train widen them)",
            folds,
            per_fold,
        )
    first = n_dev - folds * per_fold
    return Plan(tuple(times[first + k * per_fold] for k in range(folds)), times[n - n_hold])


def folds(origin: pd.DatetimeIndex, label_time: pd.Series, p: Plan, *, final: bool = True) -> list[Fold]:
    """Validation folds (and the holdout fold when `final`) as masks over a model's rows.

    `origin` is each row's time, `label_time` the time its target is observed (NaT when unknown).
    """
    labelled = label_time.notna().to_numpy()
    lt = label_time.to_numpy(dtype="datetime64[ns]")
    t = origin.to_numpy(dtype="datetime64[ns]")
    hs = np.datetime64(p.holdout_start, "ns")
    ends = [*p.valid_starts[1:], p.holdout_start]
    out = []
    for k, (start, end) in enumerate(zip(p.valid_starts, ends, strict=True)):
        s, e = np.datetime64(start, "ns"), np.datetime64(end, "ns")
        train = labelled & (lt < s)
        test = labelled & (t >= s) & (t < e) & (lt < hs)
        out.append(Fold(f"fold{k}", train, test))
    if final:
        out.append(Fold("holdout", labelled & (lt < hs), labelled & (t >= hs)))
    return out


@dataclass(frozen=True)
class FoldResult:
    name: str
    score: float
    predictions: pd.Series  # indexed by origin time
    seconds: float


FIT_FIX = "check the model's params (its conf/model file, or the command line) and the training code"


def fit_predict(train, X: pd.DataFrame, y: pd.Series, fold: Fold, where: str) -> tuple[object, pd.Series]:
    """Fit on the fold's training rows, predict its test rows; check the user's model against the contract."""
    what = f"the training function (`{function_name(train)}`)"
    model = call_user_code(what, train, X[fold.train], y[fold.train], where=where, fix=FIT_FIX)
    if not callable(getattr(model, "predict", None)):
        raise FloworkError(
            f"the training function returned {type(model).__name__}, which has no predict(X) method",
            where=where,
            fix="return a fitted model whose predict(X) gives one value per row of X",
        )
    X_test = X[fold.test]
    raw = call_user_code("the fitted model's predict(X)", model.predict, X_test, where=where, fix=FIT_FIX)
    try:
        pred = np.asarray(raw, dtype=float).reshape(-1)
    except (TypeError, ValueError) as e:
        raise FloworkError(
            f"predict(X) returned values that are not numbers ({type(raw).__name__}: {e})",
            where=where,
            fix="return one number per row of X (a fitted regressor's predictions)",
        ) from None
    if len(pred) != len(X_test):
        raise FloworkError(
            f"predict(X) returned {len(pred)} values for {len(X_test)} rows",
            where=where,
            fix="return exactly one prediction per row of X, in X's order",
        )
    bad = ~np.isfinite(pred)
    if bad.any():
        raise FloworkError(
            f"predict(X) returned {int(bad.sum())} NaN/inf value(s) of {len(pred)} in {fold.name}, first for "
            f"{X_test.index[bad.argmax()]}",
            where=where,
            fix="check the model's predictions: missing values in X, a diverging fit, or a bad parameter value",
        )
    return model, pd.Series(pred, index=X_test.index, name="prediction")


def run_folds(
    train, X: pd.DataFrame, y: pd.Series, fold_list: list[Fold], metric, where: str, on_fold=None
) -> list[FoldResult]:
    """Fit and score every fold in order; `on_fold(fold)` is called before each (the pruning reporter)."""
    import time

    results = []
    for fold in fold_list:
        if on_fold is not None:
            on_fold(fold)
        if not fold.train.any() or not fold.test.any():
            raise FloworkError(
                f"{fold.name} has {int(fold.train.sum())} training and {int(fold.test.sum())} test rows after "
                "feature building",
                where="conf/data/<option>.yaml, keys `data.backtest.*`",
                fix="a fold trains on the rows before its window, less those the feature script drops (lags, "
                "trailing windows): give the first window more rows with data.backtest.min_train (a share below 1, "
                "e.g. 0.5, or a row count of 1 or more), use fewer folds, or shorter lags and windows",
            )
        t0 = time.perf_counter()
        _, pred = fit_predict(train, X, y, fold, where)
        score = float(metric(y[fold.test].to_numpy(), pred.to_numpy()))
        results.append(FoldResult(fold.name, score, pred, time.perf_counter() - t0))
    return results
