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
    return set_time_index(weather.head(360), "date", "D")


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
