"""The example's own feature and model code (user_code/): spreads and calendar harmonics in the tabular features,
tree models that forecast the change from today's value, xgboost's median loss, the ensemble of the families."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from flowork.errors import FloworkError
from flowork.features import Pipeline, leakage_check
from user_code import cleaning, features, models

DAYS = pd.date_range("2020-01-01", periods=400, freq="D")
RNG = np.random.default_rng(0)
DF = pd.DataFrame(
    {"v": 10 + 5 * np.sin(np.arange(400) / 58.0) + RNG.normal(0, 1, 400), "w": RNG.normal(0, 1, 400)}, index=DAYS
)


def test_spreads_are_the_target_minus_the_column_lagged_like_exog():
    X = features.tabular(DF, target="v", lags=2, exog=["w"], exog_lags=2, spreads=["w"], windows=[])
    t = DAYS[100]
    assert X.loc[t, "v_minus_w_lag0"] == pytest.approx(DF.v[t] - DF.w[t])
    assert X.loc[t, "v_minus_w_lag1"] == pytest.approx(DF.v[DAYS[99]] - DF.w[DAYS[99]])
    assert "v_minus_w_lag2" not in X


@pytest.mark.parametrize(("calendar", "pairs"), [(False, 0), (True, 1), (1, 1), (3, 3)])
def test_calendar_is_a_number_of_harmonics_of_the_forecast_day(calendar, pairs):
    X = features.tabular(DF, target="v", lags=1, windows=[], calendar=calendar, horizon=2)
    sines = [c for c in X.columns if c.startswith("doy_sin")]
    assert len(sines) == pairs and len([c for c in X.columns if c.startswith("doy_cos")]) == pairs
    if pairs:  # harmonic k of the day `horizon` steps after the row
        k = pairs
        angle = 2 * np.pi * (DAYS[10] + pd.Timedelta(days=2)).dayofyear / 365.25
        assert X.loc[DAYS[10], "doy_sin" + ("" if k == 1 else str(k))] == pytest.approx(np.sin(k * angle))


def test_new_tabular_features_pass_the_leakage_check():
    def build(df):
        return features.tabular(df, target="v", lags=3, exog=["w"], exog_lags=2, spreads=["w"], windows=[7], calendar=3)

    p = Pipeline(None, build, "conf/features/tabular.yaml")
    leakage_check(DF, p, p(DF))


def series(freq: str, n: int = 200) -> pd.DataFrame:
    return pd.DataFrame({"v": RNG.normal(0, 1, n)}, index=pd.date_range("2024-01-01", periods=n, freq=freq))


@pytest.mark.parametrize(
    ("freq", "cycles", "terms", "seasonal"),
    [
        ("h", "auto", ["hod", "dow"], [23, 167]),  # the same hour yesterday and last week as the forecast hour
        ("15min", "auto", ["hod", "dow"], [95]),  # a week of 15-minute rows (672) is past SEASONAL_MAX_ROWS
        ("D", "auto", ["dow", "doy"], []),  # the same weekday last week is lag 6, among the last 12 values already
        ("W", "auto", ["doy"], [51]),
        ("MS", "auto", ["doy"], []),  # the same month last year is lag 11, among the last 12 values already
        ("YS", "auto", [], []),
        ("h", ["year"], ["doy"], []),  # the cycles named; a year of hourly rows is past SEASONAL_MAX_ROWS
        ("D", ["day", "week"], ["hod", "dow"], []),  # a day is one row: no seasonal lag of 0
    ],
)
def test_calendar_cycles_and_seasonal_lags_follow_the_datas_spacing(freq, cycles, terms, seasonal):
    X = features.tabular(series(freq), target="v", freq=freq, lags=12, windows=[], cycles=cycles, seasonal_lags=True)
    assert sorted({c.split("_")[0] for c in X.columns if "_sin" in c}) == sorted(terms)
    assert [int(c.split("lag")[1]) for c in X.columns if c.startswith("v_lag")] == sorted({*range(12), *seasonal})


def test_calendar_terms_and_seasonal_lags_are_of_the_forecast_time():
    """Hourly data, 5 hours ahead: the hour-of-day and day-of-week terms are those of the forecast hour, and the
    seasonal lags are the latest values at that hour of the day (19) and of the week."""
    df = series("h", 400)
    X = features.tabular(df, target="v", freq="h", horizon=5, lags=1, windows=[], cycles="auto", seasonal_lags=True)
    origin = pd.Timestamp("2024-01-10 14:00")  # a Wednesday; the forecast is for 19:00
    assert X.loc[origin, "hod_sin"] == pytest.approx(np.sin(2 * np.pi * 19 / 24))
    assert X.loc[origin, "dow_sin"] == pytest.approx(np.sin(2 * np.pi * (2 + 19 / 24) / 7))
    assert X.loc[origin, "v_lag19"] == df.v[pd.Timestamp("2024-01-09 19:00")]
    assert X.loc[origin, "v_lag163"] == df.v[pd.Timestamp("2024-01-03 19:00")]


def test_the_year_term_is_the_day_of_the_forecast_day_in_its_year():
    """1 January is day 1 (angle 2*pi/365.25) and 31 December of a leap year day 366, the forecast day's own."""
    X = features.tabular(series("D", 800), target="v", horizon=1, lags=1, windows=[], calendar=1)
    for origin, day in (("2024-12-31", 1), ("2024-12-30", 366), ("2025-02-28", 60), ("2025-12-30", 365)):
        assert X.loc[pd.Timestamp(origin), "doy_sin"] == pytest.approx(np.sin(2 * np.pi * day / 365.25))


@pytest.mark.parametrize(
    ("freq", "times", "values", "unchanged"),
    [
        ("D", pd.date_range("2024-01-01", periods=6, freq="D"), [1, 2, 3, 4, 5, 6], True),
        ("h", pd.date_range("2024-01-01", periods=6, freq="h"), [1, 2, 3, 4, 5, 6], True),
        ("D", pd.date_range("2024-01-01", periods=6, freq="D"), [1, 2, None, None, 5, 6], False),  # filled
        ("D", pd.DatetimeIndex(["2024-01-01", "2024-01-02", "2024-01-04", "2024-01-05"]), [1, 2, 4, 5], False),
        ("D", pd.date_range("2024-01-01 12:00", periods=3, freq="12h"), [1, 2, 3], False),  # off the daily grid
        ("MS", pd.date_range("2024-01-01", periods=4, freq="MS"), [1, 2, 3, 4], False),  # a month: no fixed step
        ("MS", pd.DatetimeIndex(["2024-01-01", "2024-03-01"]), [1, 3], False),
    ],
)
def test_regular_grid_returns_complete_rows_on_the_grid_as_they_are(freq, times, values, unchanged):
    """Rows one fixed step apart with no value missing, as most requests to a served model, are returned as they
    are (asfreq and ffill cost ~0.2 ms a request on them for nothing); any others are put on the grid and filled."""
    df = pd.DataFrame({"v": values}, index=times, dtype=float)
    out = cleaning.regular_grid(df, freq=freq)
    pd.testing.assert_frame_equal(out, df.asfreq(freq).ffill(limit=3), check_freq=False)
    assert (out is df) == unchanged


@pytest.mark.parametrize("cycles", ["daily", ["day", "month"]])
def test_unknown_cycles_are_named_with_the_ones_there_are(cycles):
    with pytest.raises(ValueError, match=r"use auto or a list of \['day', 'week', 'year'\]"):
        features.tabular(series("h"), target="v", freq="h", cycles=cycles)


@pytest.mark.parametrize("freq", ["h", None])  # data.freq: null: the spacing is read from the rows
def test_seasonal_features_pass_the_leakage_check(freq):
    def build(df):
        return features.tabular(df, target="v", freq=freq, lags=3, windows=[3], cycles="auto", seasonal_lags=True)

    p = Pipeline(None, build, "conf/features/seasonal.yaml")
    df = series("h", 600)
    X = p(df)
    assert "v_lag167" in X and "hod_sin" in X
    leakage_check(df, p, X)


# A warming series: the last 100 days are all warmer than any training day.
WARMING = pd.DataFrame({"v": np.arange(400) * 0.1 + RNG.normal(0, 0.3, 400)}, index=DAYS)


@pytest.mark.parametrize("train", [models.xgb, models.random_forest])
def test_trees_forecasting_the_change_follow_the_series_past_the_training_range(train):
    X = features.tabular(WARMING, target="v", lags=3, windows=[], calendar=False)
    y = WARMING.v.shift(-1).reindex(X.index).dropna()
    X = X.loc[y.index]
    fit, test = slice(0, 290), slice(290, None)
    level = train(X.iloc[fit], y.iloc[fit])
    change = train(X.iloc[fit], y.iloc[fit], relative_to="v_lag0")
    err_level = np.abs(level.predict(X.iloc[test]) - y.iloc[test]).mean()
    err_change = np.abs(change.predict(X.iloc[test]) - y.iloc[test]).mean()
    assert level.predict(X.iloc[test]).max() <= y.iloc[fit].max() + 1e-9  # trees cannot leave the training range
    assert err_change < 1.0 < err_level
    parts = change.components(X.iloc[test])  # today's value + predicted change = the forecast (charts draw it)
    assert np.allclose(parts.sum(axis=1), change.predict(X.iloc[test]))
    assert np.allclose(pickle.loads(pickle.dumps(change)).predict(X.iloc[test]), change.predict(X.iloc[test]))


def test_relative_to_a_missing_column_names_the_key():
    X = features.tabular(DF, target="v", lags=2, windows=[])
    y = DF.v.shift(-1).reindex(X.index).fillna(0.0)
    with pytest.raises(FloworkError, match="relative_to='temp_max_lag0' is not a feature column") as e:
        models.xgb(X, y, relative_to="temp_max_lag0")
    assert "model.params.relative_to" in e.value.render()


@pytest.mark.parametrize("model", ["ridge", "prophet", "ensemble"])
def test_example_fold_predictions_do_not_change_when_the_future_is_deleted(weather, model):
    """End to end on the example's own config (cleaning, features, model, folds): each CV fold, predicted from the
    data cut after its last origin (so not even its labels exist), equals the fold predicted from the whole file:
    nothing at or after a forecast's target day leaks in. (This is how the CV-vs-holdout gap of Prophet's old trend
    was ruled out as leakage.)"""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from flowork import backtest
    from flowork.data import set_time_index
    from flowork.features import make_target
    from flowork.run import pipeline_of
    from tests.conftest import CONF

    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"model={model}"])
    raw = set_time_index(weather, "date")
    pipeline = pipeline_of(cfg.features, "conf/features")
    params = OmegaConf.to_container(cfg.model.params, resolve=True)
    train = getattr(models, model)
    b, column, horizon = cfg.data.backtest, cfg.data.target.column, cfg.data.target.horizon
    plan = backtest.plan(raw.index, b.folds, b.min_train, cfg.data.holdout, horizon)

    def frames(data):
        X = pipeline(data)
        y, label_time = make_target(pipeline.cleaned(data), column, horizon)
        return X, y.reindex(X.index), label_time.reindex(X.index)

    X, y, label_time = frames(raw)
    for fold in backtest.folds(X.index, label_time, plan, final=False):
        train_rows, test_rows = X.index[fold.train], X.index[fold.test]
        X_cut, y_cut, _ = frames(raw[raw.index <= test_rows[-1]])
        assert test_rows.isin(X_cut.index).all(), f"{fold.name}: rows lost when the future is removed"
        whole = train(X.loc[train_rows], y.loc[train_rows], **params).predict(X.loc[test_rows])
        alone = train(X_cut.loc[train_rows], y_cut.loc[train_rows], **params).predict(X_cut.loc[test_rows])
        assert len(test_rows) > 100 and np.allclose(alone, whole, rtol=0, atol=1e-9), fold.name


def test_xgb_fits_the_median_by_default():
    """The default loss is reg:absoluteerror: with skewed noise the forecast sits near the median, not the mean."""
    X = pd.DataFrame({"x": np.zeros(2000)}, index=pd.date_range("2000-01-01", periods=2000, freq="D"))
    y = pd.Series(RNG.exponential(1.0, 2000), index=X.index)  # median ln 2 = 0.69, mean 1
    assert models.xgb(X, y).predict(X[:1])[0] == pytest.approx(np.median(y), abs=0.05)
    assert models.xgb(X, y, objective="reg:squarederror").predict(X[:1])[0] == pytest.approx(y.mean(), abs=0.05)


def test_ensemble_is_the_weighted_mean_of_its_members():
    X = features.tabular(DF, target="v", lags=3, exog=["w"], windows=[7])
    y = DF.v.shift(-1).reindex(X.index).dropna()
    X = X.loc[y.index]
    fit, test = slice(0, 300), slice(300, None)
    members = {"ridge": {"alpha": 3.0}, "xgb": {"n_estimators": 50, "relative_to": "v_lag0"}}
    blend = models.ensemble(X.iloc[fit], y.iloc[fit], weights={"ridge": 3.0}, **members)  # xgb: 1 by default
    alone = {
        name: getattr(models, name)(X.iloc[fit], y.iloc[fit], **p).predict(X.iloc[test]) for name, p in members.items()
    }
    expected = 0.75 * alone["ridge"] + 0.25 * alone["xgb"]
    assert np.allclose(blend.predict(X.iloc[test]), expected)
    parts = blend.components(X.iloc[test])  # each member's weighted share: they add up to the forecast (charts)
    assert list(parts.columns) == ["ridge", "xgb"] and np.allclose(parts.sum(axis=1), expected)
    assert np.allclose(pickle.loads(pickle.dumps(blend)).predict(X.iloc[test]), expected)


@pytest.mark.parametrize(
    ("members", "weights"),
    [
        ({"nope": {}}, None),
        ({"ensemble": {}}, None),
        ({"Blend": {}}, None),
        ({}, None),
        ({"ridge": {}}, {"ridge": 0.0}),
    ],
)
def test_ensemble_rejects_unknown_members_and_zero_weight(members, weights):
    X = features.tabular(DF, target="v", lags=2, windows=[])
    y = DF.v.reindex(X.index)
    with pytest.raises(FloworkError, match="ensemble members") as e:
        models.ensemble(X, y, weights=weights, **members)
    assert "model.params" in e.value.render()


def test_example_ensemble_config_trains_and_predicts(weather):
    """conf/model/ensemble.yaml composes, its params bind to the function, and its members are the named families."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from flowork.data import set_time_index
    from flowork.run import pipeline_of
    from tests.conftest import CONF

    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["model=ensemble"])
    params = OmegaConf.to_container(cfg.model.params, resolve=True)
    X = pipeline_of(cfg.features, "conf/features")(set_time_index(weather, "date")).iloc[:400]
    y = pd.Series(X["temp_max_lag0"].to_numpy(), index=X.index)  # persistence as the label: a quick sanity fit
    blend = models.ensemble(X, y, **params)
    assert set(blend.members) == {"ridge", "xgb", "random_forest"}
    assert sum(blend.weights.values()) == pytest.approx(1.0)
    assert np.abs(blend.predict(X) - y.to_numpy()).mean() < 1.0
