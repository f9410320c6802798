"""Training functions: `train(X, y, **params) -> model` with `model.predict(X) -> one value per row of X`.

Everything fitted to data (scalers, encoders, the estimator) lives inside the returned model, so flowork fits it on
the training rows of each fold only. Heavy libraries are imported inside the function that needs them, so running
one model never pays for the others. Returned models must pickle (they are logged to MLflow); wrapper classes are
therefore defined at module level.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def ridge(X: pd.DataFrame, y: pd.Series, alpha: float = 1.0) -> Any:
    """Standardised features + ridge regression."""
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(X, y)


class ChangeForecaster:
    """A regressor fitted to the change of the target from one column of X (`relative_to`, e.g. today's value):
    predict(X) = X[column] + the predicted change.

    Why: a tree ensemble predicts averages of training targets, so it can never forecast a temperature above the
    hottest day it was trained on; the day-to-day change has a stable range, so trees stay accurate in a record
    heat wave. The fitted trees are exposed as a one-step `steps` list (scikit-learn's Pipeline convention), so
    flowork's SHAP chart explains the predicted change, and `components` splits the forecast for its charts.
    """

    def __init__(self, estimator: Any, column: str) -> None:
        self.estimator, self.column = estimator, column

    @property
    def steps(self) -> list[tuple[str, Any]]:
        return [("change", self.estimator)]

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.estimator.predict(X), dtype=float) + X[self.column].to_numpy(float)

    def components(self, X: pd.DataFrame) -> pd.DataFrame:
        change = np.asarray(self.estimator.predict(X), dtype=float)
        return pd.DataFrame({self.column: X[self.column].to_numpy(float), "predicted change": change}, index=X.index)


def change_target(X: pd.DataFrame, y: pd.Series, relative_to: str | None) -> pd.Series:
    """y itself, or its change from the column `relative_to` of X (checked to exist)."""
    if relative_to is None:
        return y
    if relative_to not in X.columns:
        from flowork.errors import FloworkError

        raise FloworkError(
            f"relative_to={relative_to!r} is not a feature column (have e.g. {list(X.columns[:5])})",
            where="conf/model/<option>.yaml, key `model.params.relative_to`",
            fix="name a column the features build (e.g. ${data.target.column}_lag0 = today's value), or null",
        )
    return y - X[relative_to].to_numpy(float)


def random_forest(
    X: pd.DataFrame,
    y: pd.Series,
    n_estimators: int = 100,
    max_depth: int | None = 10,
    min_samples_leaf: int = 3,
    max_features: float = 0.5,
    relative_to: str | None = None,
    seed: int = 0,
) -> Any:
    """scikit-learn random forest; with `relative_to` it forecasts the change from that column (ChangeForecaster)."""
    from sklearn.ensemble import RandomForestRegressor

    forest = RandomForestRegressor(
        n_estimators=n_estimators,
        max_depth=max_depth,
        min_samples_leaf=min_samples_leaf,
        max_features=max_features,
        random_state=seed,
        n_jobs=1,  # flowork runs trials in parallel; one core each
    ).fit(X, change_target(X, y, relative_to))
    return forest if relative_to is None else ChangeForecaster(forest, relative_to)


def xgb(
    X: pd.DataFrame,
    y: pd.Series,
    n_estimators: int = 300,
    max_depth: int = 3,
    learning_rate: float = 0.05,
    subsample: float = 0.8,
    colsample_bytree: float = 0.8,
    min_child_weight: float = 1.0,
    reg_lambda: float = 1.0,
    objective: str = "reg:absoluteerror",
    validation_share: float = 0.0,
    early_stopping_rounds: int | None = None,
    relative_to: str | None = None,
    seed: int = 0,
    reporter: Any = None,
) -> Any:
    """Gradient-boosted trees. With `validation_share` > 0 the newest share of the training rows is held out:
    boosting stops early on it, and its MAE is reported every 10 rounds so a sweep's pruner can stop a hopeless
    trial (flowork passes `reporter`; it does nothing outside a pruned sweep). With `relative_to` the trees
    forecast the change from that column (ChangeForecaster). `objective` is xgboost's loss: the default,
    `reg:absoluteerror`, fits the median change, the forecast the MAE metric rewards (`reg:squarederror`: the mean)."""
    from xgboost import XGBRegressor
    from xgboost.callback import TrainingCallback

    class Report(TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: dict) -> bool:
            if epoch % 10 == 9:
                reporter(evals_log["validation_0"]["mae"][-1], epoch)
            return False

    y = change_target(X, y, relative_to)
    fit_X, fit_y, eval_set = X, y, None
    if validation_share > 0:
        cut = int(len(X) * (1 - validation_share))
        fit_X, fit_y, eval_set = X.iloc[:cut], y.iloc[:cut], [(X.iloc[cut:], y.iloc[cut:])]
    model = XGBRegressor(
        n_estimators=n_estimators,
        max_depth=max_depth,
        learning_rate=learning_rate,
        subsample=subsample,
        colsample_bytree=colsample_bytree,
        min_child_weight=min_child_weight,
        reg_lambda=reg_lambda,
        objective=objective,
        random_state=seed,
        n_jobs=1,  # oversubscribed xgboost ran 20-40x slower with two parallel trials on two cores
        tree_method="hist",
        eval_metric="mae",
        early_stopping_rounds=early_stopping_rounds if eval_set else None,
        callbacks=[Report()] if eval_set and reporter else None,
    )
    model.fit(fit_X, fit_y, eval_set=eval_set, verbose=False)
    model.set_params(callbacks=None)  # the fitted model is pickled to MLflow: drop the reporter
    return model if relative_to is None else ChangeForecaster(model, relative_to)


class Blend:
    """A weighted average of fitted models' forecasts: predict(X) = sum of weight * member.predict(X).
    `components` splits the forecast into each member's weighted share (flowork's charts draw it)."""

    def __init__(self, members: dict[str, Any], weights: dict[str, float]) -> None:
        self.members, self.weights = members, weights

    def components(self, X: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(
            {name: self.weights[name] * np.asarray(m.predict(X), dtype=float) for name, m in self.members.items()},
            index=X.index,
        )

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.components(X).sum(axis=1).to_numpy()


def ensemble(
    X: pd.DataFrame,
    y: pd.Series,
    weights: dict[str, float] | None = None,
    **members: dict[str, Any],
) -> Blend:
    """Average of other training functions of this module fitted to the same rows: each keyword names one (`ridge`,
    `xgb`, `random_forest`, ...) and holds its params; `weights` (member -> weight, normalised to sum to 1; missing
    members weigh 1) mixes their forecasts. Their errors differ enough (a linear fit and trees) that the average
    beats each of them."""
    import inspect
    import sys

    from flowork.errors import FloworkError

    module = sys.modules[__name__]
    weights = {name: float((weights or {}).get(name, 1.0)) for name in members}
    # training functions only: the module's classes (Blend, ChangeForecaster, ...) are callable too
    unknown = [name for name in members if name == "ensemble" or not inspect.isfunction(getattr(module, name, None))]
    if not members or unknown or sum(weights.values()) <= 0:
        raise FloworkError(
            f"ensemble members must name training functions of user_code/models.py with positive total weight; "
            f"got members {list(members)} (not functions: {unknown}), weights {weights}",
            where="conf/model/ensemble.yaml, key `model.params`",
            fix="one key per member, e.g. `ridge: {alpha: 10}`, and `weights: {ridge: 1, xgb: 1}`",
        )
    total = sum(weights.values())
    fitted = {name: getattr(module, name)(X, y, **(params or {})) for name, params in members.items()}
    return Blend(fitted, {name: w / total for name, w in weights.items()})


class ProphetForecaster:
    """Prophet behind the `predict(X)` contract: X holds `ds` and the regressor columns."""

    def __init__(self, model: Any, regressors: list[str]) -> None:
        self.model, self.regressors = model, regressors

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.model.predict(X[["ds", *self.regressors]].reset_index(drop=True))["yhat"].to_numpy()


def prophet(
    X: pd.DataFrame,
    y: pd.Series,
    changepoint_prior_scale: float = 0.05,
    seasonality_prior_scale: float = 10.0,
    seasonality_mode: str = "additive",
    yearly_seasonality: int | bool = 10,
    weekly_seasonality: bool = False,
    growth: str = "linear",
) -> ProphetForecaster:
    """Prophet with the columns of X other than `ds` as extra regressors. `growth="flat"`: no trend, the level
    being the yearly cycle and the regressors (a linear trend fitted to a few years of weather, extrapolated
    over the months after the fit, drifts)."""
    import logging

    # prophet logs "Importing plotly failed" as an ERROR on import: plotly only serves its interactive plots
    logging.getLogger("prophet.plot").setLevel(logging.CRITICAL)
    from prophet import Prophet

    logging.getLogger("cmdstanpy").setLevel(logging.WARNING)
    model = Prophet(
        changepoint_prior_scale=changepoint_prior_scale,
        seasonality_prior_scale=seasonality_prior_scale,
        seasonality_mode=seasonality_mode,
        yearly_seasonality=yearly_seasonality,
        weekly_seasonality=weekly_seasonality,
        daily_seasonality=False,
        growth=growth,
        uncertainty_samples=0,  # point forecasts only: the intervals' 1000 samples made predict ~10x slower
    )
    regressors = [c for c in X.columns if c != "ds"]
    for c in regressors:
        model.add_regressor(c)
    frame = X[["ds", *regressors]].reset_index(drop=True).assign(y=y.to_numpy())
    return ProphetForecaster(model.fit(frame), regressors)


class NBeatsForecaster:
    """A darts N-BEATS model behind the `predict(X)` contract: each row of X is an input window (w0 .. wN)."""

    def __init__(self, model: Any, horizon: int, freq: str, mean: float, scale: float) -> None:
        self.model, self.horizon, self.freq = model, horizon, freq
        self.mean, self.scale = mean, scale  # standardisation of the training series (fitted on it only)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.sum(self.stack_forecasts(X), axis=0) * self.scale + self.mean

    def components(self, X: pd.DataFrame) -> pd.DataFrame | None:
        """Interpretable N-BEATS only (None for the generic form): the forecast split into its trend and seasonality
        stacks' outputs, which add up to predict(X). flowork's charts draw them."""
        if self.model.generic_architecture:
            return None
        trend, seasonality = (part * self.scale for part in self.stack_forecasts(X))
        return pd.DataFrame({"trend": trend + self.mean, "seasonality": seasonality}, index=X.index)

    def stack_forecasts(self, X: pd.DataFrame) -> list[np.ndarray]:
        """Each stack's standardised forecast `horizon` steps after each row's window; N-BEATS' forecast is their
        sum. The fitted network run on all windows at once: darts' predict() builds a TimeSeries and a dataset per
        window, ~20 ms a row (a permutation-importance chart on a holdout of 2,600 hourly rows took a minute)."""
        import torch

        x = torch.tensor((X.to_numpy(float) - self.mean) / self.scale, dtype=torch.float32)
        parts = []
        with torch.no_grad():
            for stack in self.model.model.stacks_list:  # each stack forecasts from what the previous left over
                x, forecast = stack(x)
                parts.append(forecast[:, self.horizon - 1, 0].numpy().astype(float))
        return parts

    # darts drops its torch module when pickled (it saves it beside the model file instead, and only while it holds a
    # trainer, which predict() here never sets up), so pickle the files `save` writes and the fitted network itself:
    # the forecaster then travels inside an MLflow model like any other.
    def __getstate__(self) -> dict[str, Any]:
        import os
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            self.model.save(os.path.join(d, "nbeats.pt"))
            files = {name: Path(d, name).read_bytes() for name in os.listdir(d) if not name.endswith(".ckpt")}
        return {**self.__dict__, "model": files, "network": self.model.model}

    def __setstate__(self, state: dict[str, Any]) -> None:
        import logging
        import os
        import tempfile

        from darts.models import NBEATSModel

        files, network = state.pop("model"), state.pop("network", None)  # no network: pickled with its checkpoint
        darts_log = logging.getLogger("darts.models.forecasting.torch_forecasting_model")
        level = darts_log.level
        darts_log.setLevel(logging.ERROR)  # "loaded without weights": they are `network`
        try:
            with tempfile.TemporaryDirectory() as d:
                for name, blob in files.items():
                    Path(d, name).write_bytes(blob)
                state["model"] = NBEATSModel.load(os.path.join(d, "nbeats.pt"), map_location="cpu")
        finally:
            darts_log.setLevel(level)
        if network is not None:
            state["model"].model = network
        self.__dict__.update(state)


def darts_nbeats(
    X: pd.DataFrame,
    y: pd.Series,
    horizon: int = 1,
    freq: str = "D",
    num_stacks: int = 4,
    num_blocks: int = 1,
    num_layers: int = 2,
    layer_widths: int = 64,
    epochs: int = 20,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    validation_share: float = 0.0,
    interpretable: bool = False,
    trend_polynomial_degree: int = 2,
    seed: int = 0,
    reporter: Any = None,
) -> NBeatsForecaster:
    """N-BEATS trained on the target series rebuilt from the windows: the newest value of each row.

    `interpretable`: N-BEATS' interpretable form (a polynomial trend stack of `trend_polynomial_degree`, then a
    Fourier seasonality stack; `num_stacks` is ignored), whose forecast the charts split into trend and seasonality.
    Otherwise the generic form of `num_stacks` stacks.

    With `validation_share` > 0 the newest share of the series is a validation series whose loss is reported
    after every epoch, so a sweep's pruner can stop a hopeless trial.
    """
    import logging
    import warnings

    import torch
    from darts import TimeSeries
    from darts.models import NBEATSModel

    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "darts"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for noise in (".*pin_memory", ".*LeafSpec", "Total length of", ".*does not have many workers"):
        warnings.filterwarnings("ignore", message=noise)
    torch.set_num_threads(1)
    # rows whose window had a missing value are not in X: their newest value is interpolated from the training rows
    # around it (darts needs a series without gaps)
    newest = X.iloc[:, -1].asfreq(freq).interpolate()
    values = newest.to_numpy(float)
    mean, scale = float(values.mean()), float(values.std()) or 1.0
    series = TimeSeries.from_times_and_values(newest.index, ((values - mean) / scale).astype(np.float32))
    callbacks, val_series = [], None
    if validation_share > 0:
        from pytorch_lightning.callbacks import Callback

        class Report(Callback):  # type: ignore[misc]
            def on_validation_epoch_end(self, trainer: Any, module: Any) -> None:
                if "val_loss" in trainer.callback_metrics and not trainer.sanity_checking:
                    reporter(float(trainer.callback_metrics["val_loss"]), trainer.current_epoch)

        cut = int(len(series) * (1 - validation_share))
        series, val_series = series[:cut], series[cut - X.shape[1] :]  # validation windows need their inputs
        callbacks = [Report()] if reporter else []
    if len(series) < X.shape[1] + horizon:  # darts' own error says only that the series is too short
        raise ValueError(
            f"N-BEATS trains on windows of {X.shape[1]} values (features.build.length) plus the horizon ({horizon}), "
            f"and this fit has {len(series)} values: shorten features.build.length, or give the first fold more "
            "rows (data.backtest.min_train)"
        )
    model = NBEATSModel(
        input_chunk_length=X.shape[1],
        output_chunk_length=horizon,
        generic_architecture=not interpretable,
        trend_polynomial_degree=trend_polynomial_degree,
        num_stacks=num_stacks,
        num_blocks=num_blocks,
        num_layers=num_layers,
        layer_widths=layer_widths,
        n_epochs=epochs,
        batch_size=batch_size,
        optimizer_kwargs={"lr": learning_rate},
        random_state=seed,
        pl_trainer_kwargs={
            "accelerator": "cpu",
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "logger": False,
            "enable_checkpointing": False,
            "callbacks": callbacks,
        },
    )
    model.fit(series, val_series=val_series, verbose=False)
    # the fitted model is pickled to MLflow: drop the reporter callback wherever darts keeps the trainer kwargs
    for kwargs in (model.trainer_params, model.model_params.get("pl_trainer_kwargs") or {}):
        kwargs["callbacks"] = []
    model.trainer = None
    return NBeatsForecaster(model, horizon, freq, mean, scale)
