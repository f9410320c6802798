"""The model to explain: a trial's config fitted once on the development rows, with the holdout rows it is explained
on. Sweeps log no models (only the champion's, refit on *all* rows for serving), so the charts of each study's best
trial refit it here: the same fit the trial scored on the holdout (DESIGN §4), so its explanations are measured on
rows it never saw."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf


@dataclass
class HoldoutFit:
    model: Any  # what the user's training function returned, fitted on the development rows
    X: pd.DataFrame  # holdout rows (features)
    y: pd.Series  # their labels
    seconds: float  # time of the fit


def holdout_fit(cfg: DictConfig, root: str) -> HoldoutFit:
    """Fit `cfg`'s model on the development rows of its own data and features; return it with the holdout rows."""
    import time

    from flowork import backtest, data, instantiate
    from flowork.features import make_target
    from flowork.run import Reporter, pipeline_of
    from flowork.schema import validate

    cfg = validate(cfg)
    instantiate.ensure_importable(root)
    where = f"conf/model/{cfg.model.name}.yaml, key `model.train`"
    pipeline = pipeline_of(cfg.features, f"conf/features (model {cfg.model.name})")
    params: dict[str, Any] = OmegaConf.to_container(cfg.model.params, resolve=True)  # type: ignore[assignment]
    train_fn = instantiate.bind(cfg.model.train, where=where, call_args=2)
    if "reporter" in inspect.signature(train_fn).parameters:
        params["reporter"] = Reporter(None)  # no sweep to report to: a no-op

    raw = data.load(cfg.data, root)
    clean = pipeline.cleaned(raw)
    X = pipeline.features(clean)
    y, label_time = make_target(clean, cfg.data.target.column, cfg.data.target.horizon)
    y, label_time = y.reindex(X.index), label_time.reindex(X.index)
    p = backtest.plan(
        backtest.observed_times(raw, cfg.data.target.column),
        cfg.data.backtest.folds,
        cfg.data.backtest.min_train,
        cfg.data.holdout,
        cfg.data.target.horizon,
    )
    final = backtest.folds(X.index, label_time, p)[-1]  # the holdout fold: trained on every development row
    t0 = time.perf_counter()
    model, _ = backtest.fit_predict(lambda X_, y_: train_fn(X_, y_, **params), X, y, final, where)
    return HoldoutFit(model, X[final.test], y[final.test], time.perf_counter() - t0)
