"""One contract suite for every model in conf/model/: what flowork relies on from a training function.

A model a user adds (a function + conf/model/NAME.yaml) is picked up here with no change to this file.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from flowork import instantiate
from flowork.data import set_time_index
from flowork.features import make_target
from flowork.run import pipeline_of
from tests.conftest import CONF, ROOT

MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))


@pytest.fixture(scope="module")
def raw(weather):
    return set_time_index(weather.head(360), "date", "D")


@pytest.mark.parametrize("model", MODELS)
def test_training_function_contract(model, raw):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"model={model}"])
    instantiate.ensure_importable(str(ROOT))
    pipeline = pipeline_of(cfg, f"conf/features/{model}")
    clean = pipeline.cleaned(raw)
    X = pipeline.features(clean)
    y, _ = make_target(clean, cfg.data.target.column, cfg.data.target.horizon)
    y = y.reindex(X.index)
    train_X, train_y, test_X = X.iloc[:-60], y.iloc[:-60], X.iloc[-60:]
    params = OmegaConf.to_container(cfg.model.params, resolve=True)
    fitted = instantiate.bind(cfg.model.train, where=model, call_args=2)(train_X, train_y, **params)

    pred = np.asarray(fitted.predict(test_X), dtype=float)
    assert pred.shape == (len(test_X),) and np.isfinite(pred).all()
    assert 0 < np.abs(pred - y.iloc[-60:].fillna(y.mean()).to_numpy()).mean() < 8  # °C: learned something
    again = pickle.loads(pickle.dumps(fitted))  # logged to MLflow and served from a pickle
    np.testing.assert_allclose(np.asarray(again.predict(test_X), dtype=float), pred, rtol=1e-5)
    assert np.asarray(fitted.predict(test_X.iloc[-1:])).shape == (1,)  # one origin: what serving asks
