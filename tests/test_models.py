"""One contract suite for every model in conf/model/ (flowork.check.training_contract, also behind `flowork check`).

A model a user adds (a function + conf/model/NAME.yaml) is picked up here with no change to this file.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir

from flowork.check import training_contract
from flowork.data import set_time_index
from flowork.errors import FloworkError
from flowork.schema import validate
from tests.conftest import CONF, ROOT

MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))


def cfg_of(*overrides):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return validate(compose("config", overrides=list(overrides)))


@pytest.fixture(scope="module")
def raw(weather):
    return set_time_index(weather.head(360), "date")


@pytest.mark.parametrize("model", MODELS)
def test_training_function_contract(model, raw):
    assert "sample MAE" in training_contract(cfg_of(f"model={model}"), raw, str(ROOT))


@pytest.mark.parametrize("model", MODELS)
def test_training_function_contract_with_missing_values(model, raw):
    """A stretch of missing values (a sensor offline) leaves rows out of X: every model still trains."""
    gappy = raw.copy()
    gappy.iloc[200:210] = float("nan")
    assert "sample MAE" in training_contract(cfg_of(f"model={model}"), gappy, str(ROOT))


def unpicklable(X, y):
    class Local:
        def predict(self, X):
            return [0.0] * len(X)

    return Local()


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("tests.test_run.no_predict", "has no predict"),
        ("tests.test_run.nan_model", "not finite"),
        ("tests.test_models.unpicklable", "cannot be pickled"),
    ],
)
def test_contract_failures_are_named(raw, target, message):
    with pytest.raises(FloworkError, match=message):
        training_contract(
            cfg_of("model=ridge", "~model.params.alpha", f"model.train._target_={target}"), raw, str(ROOT)
        )


def test_prophet_logs_no_error_when_plotly_is_missing():
    """A fresh process, as a sweep's first prophet trial: prophet's import-time "Importing plotly failed" ERROR line
    (flowork's charts use matplotlib) must not reach the sweep's output."""
    code = (
        "import logging, pandas as pd, numpy as np\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "from user_code.models import prophet\n"
        "ds = pd.date_range('2020-01-01', periods=60, freq='D')\n"
        "prophet(pd.DataFrame({'ds': ds}, index=ds), pd.Series(np.arange(60.0), index=ds), yearly_seasonality=False)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "plotly" not in out.stderr + out.stdout


def test_nbeats_on_too_few_rows_names_the_window_length(raw):
    with pytest.raises(ValueError, match=r"windows of 60 values \(features.build.length\)"):
        training_contract(cfg_of("model=darts_nbeats", "features.build.length=60"), raw.head(100), str(ROOT))


@pytest.mark.parametrize("interpretable", [False, True])
def test_nbeats_predicts_all_windows_at_once_as_darts_does(raw, interpretable):
    """The fitted network on every window in one batch: darts' predict() builds a TimeSeries and a dataset per
    window (~20 ms a row: a permutation-importance chart of an hourly holdout took a minute). Same forecasts."""
    import numpy as np
    import pandas as pd
    from darts import TimeSeries

    from user_code.models import darts_nbeats

    values = raw["temp_max"].to_numpy()
    X = pd.DataFrame(np.lib.stride_tricks.sliding_window_view(values, 14), index=raw.index[13:])
    model = darts_nbeats(X.iloc[:250], None, horizon=2, epochs=1, interpretable=interpretable)
    windows = [
        TimeSeries.from_times_and_values(
            pd.date_range(end=t, periods=14, freq="D"), ((row - model.mean) / model.scale).astype(np.float32)
        )
        for t, row in zip(X.index[250:260], X.iloc[250:260].to_numpy(), strict=True)
    ]
    darts_forecasts = model.model.predict(n=2, series=windows, verbose=False, show_warnings=False)
    expected = np.array([f.values()[-1, 0] for f in darts_forecasts]) * model.scale + model.mean
    model.model.predict = None  # not called: one batch through the network
    assert np.allclose(model.predict(X.iloc[250:260]), expected, atol=1e-4)


def test_nbeats_pickled_right_after_fit_keeps_its_weights(raw):
    """darts writes a model's weights only while it holds a trainer (after its own predict): a forecaster pickled
    straight after fit lost them ('The model must be fit before calling predict()')."""
    import pickle

    import numpy as np
    import pandas as pd

    from user_code.models import darts_nbeats

    X = pd.DataFrame(np.lib.stride_tricks.sliding_window_view(raw["temp_max"].to_numpy(), 14), index=raw.index[13:])
    model = darts_nbeats(X.iloc[:250], None, epochs=1)
    again = pickle.loads(pickle.dumps(model))
    assert np.array_equal(again.predict(X.iloc[250:]), model.predict(X.iloc[250:]))
