"""One job through `run(cfg)`: what lands in MLflow, and the error for every kind of bad input."""

from __future__ import annotations

import math
import re

import pytest
from mlflow import MlflowClient

from flowork.errors import FloworkError
from flowork.run import run
from tests.conftest import ROOT
from user_code.models import ridge


def no_predict(X, y):
    return object()


def wrong_length(X, y):
    class M:
        def predict(self, X):
            return [0.0]

    return M()


def nan_model(X, y):
    class M:
        def predict(self, X):
            return [float("nan")] * len(X)

    return M()


def text_model(X, y):
    class M:
        def predict(self, X):
            return ["warm"] * len(X)

    return M()


def refuses_all_rows(X, y):
    """Fits the backtest's folds (fewer rows), fails on the final refit on every labelled row."""
    if len(X) > 350:
        raise RuntimeError(f"refuses {len(X)} rows")
    return ridge(X, y)


def locked_model(X, y):
    import threading

    model = ridge(X, y)
    model.lock = threading.Lock()  # cannot be pickled, so cannot be logged
    return model


def leaky(df, target):
    return df[[target]].assign(tomorrow=df[target].shift(-1)).dropna()


def failing_build(df, target):
    return df[target] / df["weather"]  # a str column: TypeError inside the user's function


def no_args_metric():
    return 0.0


def text_metric(y_true, y_pred):
    return "small"


BUILD_ONLY = [  # features.build with only its `target` argument
    f"~features.build.{k}"
    for k in ("lags", "exog", "exog_lags", "spreads", "windows", "categorical", "calendar", "horizon", "freq")
]


def test_run_logs_metrics_params_tags_artifacts(make_cfg, store):
    cfg = make_cfg("model=ridge", "tracking.log_model=true")
    result = run(cfg, root=str(ROOT))
    client = MlflowClient(store)
    r = client.get_run(result.run_id)
    assert r.info.status == "FINISHED"
    assert r.data.params["model.params.alpha"] == "10.0" and r.data.params["data.target.horizon"] == "1"
    folds = {f"cv_mae_fold{k}" for k in range(cfg.data.backtest.folds)}
    assert folds | {"cv_mae", "cv_mae_std", "holdout_mae"} <= set(r.data.metrics)
    assert r.data.metrics["cv_mae"] == pytest.approx(result.objective)
    assert 1.0 < result.holdout < 4.0  # °C, next-day max temperature
    assert r.data.tags["flowork.model"] == "ridge" and r.data.tags["flowork.data_digest"]
    assert "mlflow.source.git.commit" in r.data.tags or not (ROOT / ".git").exists()
    assert len(r.inputs.dataset_inputs) == 1
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"config.yaml", "predictions.csv"} <= artifacts
    models = client.search_logged_models([r.info.experiment_id])
    assert [m.source_run_id for m in models] == [result.run_id]


def test_overrides_reach_the_model(make_cfg, store):
    result = run(make_cfg("model=xgb", "model.params.max_depth=2", "data.target.horizon=7"), root=str(ROOT))
    params = MlflowClient(store).get_run(result.run_id).data.params
    assert params["model.params.max_depth"] == "2" and params["features.build.horizon"] == "7"


BUILDS: list[int] = []


def counted_build(df, target, lags=1):
    BUILDS.append(lags)
    return df[[target]].assign(lag=df[target].shift(lags)).dropna()


def test_features_are_built_once_per_data_and_feature_config(make_cfg):
    """A study's trials that sample only model params share the features; a changed feature argument rebuilds them."""
    BUILDS.clear()
    build = [*BUILD_ONLY, "features.build._target_=tests.test_run.counted_build", "+features.build.lags=1"]
    build += ["features.leakage_check=false"]  # it builds on cut data (uncached): not counted here
    results = [
        run(make_cfg("model=ridge", *build, *more), root=str(ROOT)).objective
        for more in ([], [], ["features.build.lags=2"])
    ]
    assert BUILDS == [1, 2]
    assert results[1] == results[0] and results[2] != results[0]


NO_PARAMS = ["~model.params.alpha"]
ERRORS = [
    # (overrides, message, where/fix fragment)
    (["data.target.column=temp"], "target column 'temp' is not in the data", "'temp_max'"),
    (["data.time_column=day"], "time column 'day' is not in the data", "'date'"),
    (["data.uri=nowhere/data.csv"], "data file not found", "data.uri"),
    (["model.train._target_=user_code.models.nope"], "cannot import `_target_: user_code.models.nope`", "model.train"),
    (
        ["model.train._target_=user_code.models.ridgee"],
        "user_code.models has no `ridgee` (did you mean `ridge`?)",
        "xgb",
    ),
    (["model.train._target_=user_code.modelz.ridge"], "no module named 'user_code.modelz'", "module path"),
    (["model.train._target_=tests.broken_module.f"], "importing it raised NameError: name 'pd' is not defined", "fix"),
    (["+model.params.depth=3"], "cannot be called with these arguments", "rename or remove"),
    (["+features.build.lagz=3"], "cannot be called with these arguments", "features.build"),
    ([*NO_PARAMS, "model.train._target_=tests.test_run.no_predict"], "has no predict", "predict(X)"),
    ([*NO_PARAMS, "model.train._target_=tests.test_run.wrong_length"], "returned 1 values", "one prediction per row"),
    (
        [*NO_PARAMS, "model.train._target_=tests.test_run.nan_model", "data.backtest.folds=5"],
        "NaN/inf value(s) of 31 in fold0",
        "model's predictions",
    ),
    (["metric.direction=maxi"], "invalid config value", "metric.direction"),
    (["threads=-1"], "threads must be >= 1", "key `threads`"),
    (["data.backtest.min_train=2.0"], "fold0 has 0 training", "data.backtest.min_train (a share below 1"),  # 2 rows
    (["sweep.workers=0"], "sweep.workers must be at least 1", "key `sweep.workers`"),
    (["sweep.max_failure_rate=2"], "between 0 and 1; got 2.0", "1.0 never stops it"),
    (["tracking.experiment=''"], "tracking.experiment is empty", "key `tracking.experiment`"),
    (["tracking.uri=file:///nonexistent/mlruns"], "is in maintenance mode", "MLFLOW_ALLOW_FILE_STORE=true"),
    (["model.params.alpha=abc"], "training function (`ridge`) raised InvalidParameterError", "user_code/models.py:"),
    ([*NO_PARAMS, "model.train._target_=tests.test_run.text_model"], "values that are not numbers", "one number"),
    (
        [*NO_PARAMS, "model.train._target_=tests.test_run.refuses_all_rows", "tracking.log_model=true"],
        "refit on all 370 labelled rows, raised RuntimeError: refuses 370 rows",
        "tests/test_run.py:",
    ),
    (
        [*NO_PARAMS, "model.train._target_=tests.test_run.locked_model", "tracking.log_model=true"],
        "model cannot be saved",
        "log_model=false",
    ),
    (
        ["features.build._target_=tests.test_run.failing_build", *BUILD_ONLY],
        "features.build (`failing_build`) raised TypeError",
        "tests/test_run.py:",
    ),
    (["metric._target_=tests.test_run.no_args_metric"], "`no_args_metric` cannot be called", "no_args_metric()"),
    (["metric._target_=tests.test_run.text_metric"], "returned 'small', not a number", "metric._target_"),
    (["data.target.horizon=0"], "horizon must be >= 1", "data.target.horizon"),
    (["data.target.horizon=400"], "data.target.horizon=400 is longer than the data (400 rows", "fewer steps ahead"),
    (["features.build.windows=[500]"], "features.build returned no rows from the 400 rows", "shorter windows"),
    (["features.build.lags=500"], "features.build returned no rows from the 400 rows", "fewer lags"),
    (["features.build.exog=[temp]"], "raised KeyError: 'temp'", "its frame has the columns ['precipitation', "),
    (["features.build.lags=-3"], "lags and calendar must be >= 0", "check its arguments there"),  # the example's check
    (["data.backtest.folds=200"], "too few rows", "fewer folds"),
    (["data.target.column=???"], "still marked ???", "data.target.column"),
    (
        ["features.build._target_=tests.test_run.leaky", *BUILD_ONLY],
        "leakage: feature column(s) ['tomorrow']",
        "conf/features",
    ),
]


@pytest.mark.parametrize(("overrides", "message", "hint"), ERRORS, ids=[e[1][:30] for e in ERRORS])
def test_errors_say_what_and_how_to_fix(make_cfg, overrides, message, hint):
    with pytest.raises(FloworkError) as e:
        run(make_cfg("model=ridge", *overrides), root=str(ROOT))
    assert message in e.value.render()
    assert hint in e.value.render()


@pytest.mark.parametrize(
    ("blank", "message"),
    [
        (slice(200, 220), None),  # a stretch of missing target values: those rows are simply unlabelled
        (slice(-100, None), None),  # none in the last 100 rows, more than the holdout: it ends at the last value
        (slice(None), "the target column 'temp_max' has no value to learn from (0 of 400 rows"),
    ],
)
def test_missing_target_values(tmp_path, make_cfg, weather, blank, message):
    df = weather.head(400).copy()
    df.loc[df.index[blank], "temp_max"] = float("nan")
    df.to_csv(tmp_path / "gaps.csv", index=False)
    cfg = make_cfg("model=ridge", f"data.uri={tmp_path / 'gaps.csv'}")
    if message is None:
        assert math.isfinite(run(cfg, root=str(ROOT)).objective)
    else:
        with pytest.raises(FloworkError, match=re.escape(message)):
            run(cfg, root=str(ROOT))


@pytest.mark.parametrize("model", ["ridge", "prophet"])
def test_unchecked_frequency(make_cfg, model):
    """data.freq: null skips the grid check; the example's features infer the step instead."""
    assert math.isfinite(run(make_cfg(f"model={model}", "data.freq=null"), root=str(ROOT)).objective)


def test_failed_job_ends_its_run_failed_with_traceback(make_cfg, store):
    with pytest.raises(FloworkError):
        run(make_cfg("model=ridge", *NO_PARAMS, "model.train._target_=tests.test_run.nan_model"), root=str(ROOT))
    client = MlflowClient(store)
    (r,) = client.search_runs([client.get_experiment_by_name("temperature").experiment_id])
    assert r.info.status == "FAILED"
    assert "traceback.txt" in {a.path for a in client.list_artifacts(r.info.run_id)}
    assert r.data.params["model.name"] == "ridge"  # what was logged before the failure is kept
    assert "predict(X) returned" in r.data.tags["flowork.error"]


def test_ridge_on_the_full_example_is_near_the_references(make_cfg, store):
    """The reference figures (data/README.md): persistence 2.36 °C, untuned ridge 2.19 °C on the same holdout."""
    from tests.conftest import DATA

    result = run(make_cfg("model=ridge", f"data.uri={DATA}"), root=str(ROOT))
    assert 1.9 < result.holdout < 2.36
    assert 1.9 < result.objective < 2.3


def test_a_monthly_series_needs_only_a_data_config(make_cfg, store):
    """conf/data/nino_monthly.yaml + the generic features option: a second real series of another frequency."""
    cfg = make_cfg(
        "data=nino_monthly", "features=univariate", "model=ridge", f"data.uri={ROOT}/data/nino12_monthly.csv"
    )
    result = run(cfg, root=str(ROOT))
    params = MlflowClient(store).get_run(result.run_id).data.params
    assert params["data.freq"] == "MS" and params["data.target.column"] == "sst"
    assert 0.1 < result.holdout < 1.0  # °C, one month ahead


def test_a_model_without_data_freq_dates_its_forecasts_by_the_data_spacing(tmp_path, make_cfg, weather):
    """data.freq: null on hourly rows with a gap: the served forecast is `horizon` hours after the last row (it was
    dated in days, pandas inferring no frequency from rows with a gap)."""
    import mlflow
    import pandas as pd

    hourly = weather.head(300).assign(date=pd.date_range("2024-01-01", periods=300, freq="h")).drop(index=[100, 101])
    hourly.to_csv(tmp_path / "hourly.csv", index=False)
    cfg = make_cfg("model=ridge", f"data.uri={tmp_path / 'hourly.csv'}", "data.freq=null", "tracking.log_model=true")
    pyfunc = mlflow.pyfunc.load_model(run(cfg, root=str(ROOT)).model_uri)
    assert pyfunc.unwrap_python_model().spec.freq == "h"


def test_a_model_of_data_with_rows_after_the_targets_last_value_is_logged_and_serves(tmp_path, make_cfg, weather):
    """Rows of future values (exogenous columns known ahead, a target not recorded yet) are left out of the backtest;
    the model logged at the end took its example request from them, failed on their missing target and ended the run
    with a traceback. The example request now ends at the last observed target, and needs no more history."""
    import mlflow

    future = weather.head(400).copy()
    future.loc[future.index[-10:], "temp_max"] = None
    future.to_csv(tmp_path / "future.csv", index=False)
    cfg = make_cfg("model=ridge", f"data.uri={tmp_path / 'future.csv'}", "tracking.log_model=true")
    pyfunc = mlflow.pyfunc.load_model(run(cfg, root=str(ROOT)).model_uri)
    served = pyfunc.unwrap_python_model().spec
    complete = make_cfg("model=ridge", "tracking.log_model=true")  # the same rows, every target observed
    assert (
        served.history == mlflow.pyfunc.load_model(run(complete, root=str(ROOT)).model_uri).metadata.metadata["history"]
    )
    request = weather.iloc[390 - served.history : 390]  # rows up to the last observed target
    forecast = pyfunc.predict(request)
    assert len(forecast) == 1 and forecast.iloc[0].notna().all()
