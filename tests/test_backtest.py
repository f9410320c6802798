"""Target construction and the evaluation protocol: no overlap, the gap respected, the holdout untouched."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from flowork import backtest
from flowork.errors import FloworkError
from flowork.features import make_target

TIMES = pd.date_range("2020-01-01", periods=200, freq="D")


@pytest.mark.parametrize("horizon", [1, 3, 7])
def test_target_is_value_horizon_rows_later(horizon):
    df = pd.DataFrame({"v": np.arange(10.0)}, index=TIMES[:10])
    y, label_time = make_target(df, "v", horizon)
    assert y.iloc[0] == horizon and y.iloc[9 - horizon] == 9
    assert y.iloc[-horizon:].isna().all()
    assert label_time.iloc[0] == TIMES[horizon] and label_time.iloc[-horizon:].isna().all()


@pytest.mark.parametrize("horizon", [0, -1])
def test_horizon_below_one_is_an_error(horizon):
    df = pd.DataFrame({"v": np.arange(10.0)}, index=TIMES[:10])
    with pytest.raises(FloworkError, match="horizon must be >= 1"):
        make_target(df, "v", horizon)


@pytest.mark.parametrize(
    ("folds", "min_train", "holdout", "horizon", "drop"),
    [(5, 0.5, 0.2, 1, 0), (3, 0.3, 0.1, 7, 0), (4, 60, 0.25, 2, 30), (1, 0.5, 0.2, 1, 10)],
)
def test_folds_protocol(folds, min_train, holdout, horizon, drop):
    p = backtest.plan(TIMES, folds, min_train, holdout, horizon)
    df = pd.DataFrame({"v": np.arange(200.0)}, index=TIMES)
    _, label_time = make_target(df, "v", horizon)
    rows = TIMES[drop:]  # a feature script may drop warm-up rows; boundaries stay the same timestamps
    fold_list = backtest.folds(rows, label_time.reindex(rows), p)
    assert [f.name for f in fold_list] == [*(f"fold{k}" for k in range(folds)), "holdout"]
    lt = label_time.reindex(rows).to_numpy()
    tests = [f.test for f in fold_list[:-1]]
    for fold in fold_list:
        # training labels are observed before the first test origin (gap of `horizon` rows)
        assert lt[fold.train].max() < rows[fold.test].min()
        assert not (fold.train & fold.test).any()
    # validation windows are consecutive and do not overlap; none uses a label from the holdout
    assert sum(t.sum() for t in tests) == np.logical_or.reduce(tests).sum()
    for t in tests:
        assert (lt[t] < p.holdout_start).all()
    assert (rows[fold_list[-1].test] >= p.holdout_start).all()
    assert round(len(TIMES) * holdout) == (p.holdout_start <= TIMES).sum()
    # the final fit uses every row whose label is known before the holdout
    assert fold_list[-1].train.sum() == (lt < np.datetime64(p.holdout_start)).sum()


@pytest.mark.parametrize(
    ("n", "folds", "holdout", "horizon", "message"),
    [
        (12, 5, 0.2, 1, "too few rows"),
        (200, 0, 0.2, 1, "folds must be >= 1"),
        (200, 5, 1.2, 1, "holdout must be"),
        (200, 5, 0.001, 1, r"the holdout is 1 of 200 rows .* must be longer than the horizon"),
        (200, 2, 0.2, 40, r"(?s)holdout is 40 of 200 rows .*raise data.holdout to 0.21 or more"),
    ],
)
def test_plan_errors(n, folds, holdout, horizon, message):
    with pytest.raises(FloworkError) as e:
        backtest.plan(TIMES[:n], folds, 0.5, holdout, horizon)
    assert re.search(message, e.value.render())


@pytest.mark.parametrize(("folds", "min_train", "warned"), [(2, 0.5, False), (5, 0.9, True), (40, 0.5, True)])
def test_short_validation_windows_are_pointed_out_once(caplog, folds, min_train, warned):
    for _ in range(3):  # a sweep plans every trial
        backtest.plan(TIMES, folds, min_train, 0.2, 1)
    lines = [r for r in caplog.records if "validation windows has" in r.getMessage()]
    assert len(lines) == (1 if warned else 0)


def test_same_origins_for_every_model():
    """Two feature scripts dropping different warm-ups are scored on the same validation origins."""
    p = backtest.plan(TIMES, 5, 0.5, 0.2, 1)
    df = pd.DataFrame({"v": np.arange(200.0)}, index=TIMES)
    _, lt = make_target(df, "v", 1)
    a = backtest.folds(TIMES[5:], lt[5:], p)
    b = backtest.folds(TIMES[30:], lt[30:], p)
    for fa, fb in zip(a, b, strict=True):
        assert TIMES[5:][fa.test].equals(TIMES[30:][fb.test])


def test_a_missing_target_value_is_never_observed():
    """Its row has no label time, so no fold trains on or scores it (the charts' holdout refit fitted on NaN)."""
    df = pd.DataFrame({"v": [0.0, 1.0, np.nan, 3.0, 4.0]}, index=TIMES[:5])
    y, label_time = make_target(df, "v", 1)
    assert label_time.isna().tolist() == [False, True, False, False, True]


def test_the_charts_refit_leaves_out_rows_without_a_label(make_cfg, tmp_path, weather):
    from flowork.charts.refit import holdout_fit
    from tests.conftest import ROOT

    df = weather.head(400).copy()
    df.loc[df.index[100:110], "temp_max"] = np.nan
    df.to_csv(tmp_path / "gaps.csv", index=False)
    fit = holdout_fit(make_cfg("model=ridge", f"data.uri={tmp_path / 'gaps.csv'}"), str(ROOT))
    assert len(fit.X) > 0 and fit.y.notna().all()
