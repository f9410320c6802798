"""Explainability by model type: SHAP for tree and linear models, permutation importance for any model (a model a
user adds gets it with no work), Prophet's components. N-BEATS in its generic form gets permutation importance over
its input window (w0 = oldest ... wN = the value at the origin)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flowork.charts.style import ACCENT, FORECAST, figure, save


def permutation_importance(
    model: Any,
    X: pd.DataFrame,
    y: pd.Series,
    out: Path,
    title: str,
    unit: str,
    repeats: int = 3,
    top: int = 20,
    seed: int = 0,
) -> Path:
    """Increase in MAE when one feature's column is shuffled (model-agnostic, on the rows given)."""
    rng = np.random.default_rng(seed)
    base = float(np.mean(np.abs(np.asarray(model.predict(X), dtype=float) - y.to_numpy())))
    scores = {}
    for col in X.columns:
        if col == "ds":  # Prophet's time column is the model's clock, not a feature to shuffle
            continue
        deltas = []
        for _ in range(repeats):
            shuffled = X.copy()
            shuffled[col] = rng.permutation(shuffled[col].to_numpy())
            deltas.append(
                float(np.mean(np.abs(np.asarray(model.predict(shuffled), dtype=float) - y.to_numpy()))) - base
            )
        scores[col] = float(np.mean(deltas))
    title = f"{title}: permutation importance (holdout)"
    return ranking(pd.Series(scores), top, out, title, f"MAE increase when shuffled ({unit})", zero_line=True)


def ranking(values: pd.Series, top: int, out: Path, title: str, xlabel: str, zero_line: bool = False) -> Path:
    """The `top` largest values as horizontal bars, largest on top."""
    ranked = values.sort_values().tail(top)
    fig, (ax,) = figure(title, xlabel, "feature", size=(9, 0.28 * len(ranked) + 1.6))
    ax.barh(ranked.index.astype(str), ranked.to_numpy(), color=FORECAST)
    if zero_line:
        ax.axvline(0, color=ACCENT, lw=1)
    return save(fig, out)


def shap_summary(model: Any, X: pd.DataFrame, out: Path, title: str, unit: str, top: int = 20) -> Path:
    """Mean |SHAP value| per feature: TreeExplainer for tree ensembles, a model-agnostic explainer otherwise."""
    import shap

    estimator = model.steps[-1][1] if hasattr(model, "steps") else model
    sample = X.tail(200)
    if type(estimator).__name__ in {"XGBRegressor", "RandomForestRegressor"} and not hasattr(model, "steps"):
        values = shap.TreeExplainer(estimator).shap_values(sample)
    else:
        background = shap.maskers.Independent(X, max_samples=100)
        values = shap.Explainer(model.predict, background, seed=0)(sample).values
    mean_abs = pd.Series(np.abs(values).mean(axis=0), index=X.columns)
    return ranking(
        mean_abs, top, out, f"{title}: SHAP, mean |contribution| (last 200 rows)", f"mean |SHAP value| ({unit})"
    )


def prophet_components(model: Any, X: pd.DataFrame, out: Path, title: str) -> Path:
    """Prophet's own decomposition: trend, yearly seasonality and the regressors' effect."""
    prophet = model.model
    forecast = prophet.predict(X[["ds", *model.regressors]].reset_index(drop=True))
    fig = prophet.plot_components(forecast, figsize=(10, 7))
    fig.suptitle(f"{title}: Prophet components", fontsize=13, x=0.01, ha="left")
    return save(fig, out)


def explain(model: Any, X: pd.DataFrame, y: pd.Series, out_dir: Path, title: str, unit: str) -> list[Path]:
    """Every explanation that fits the model's type; each one that fails is a warning only."""
    from flowork.charts.style import safely

    kind = type(model.steps[-1][1] if hasattr(model, "steps") else model).__name__
    out = safely(
        "permutation_importance",
        lambda: permutation_importance(model, X, y, out_dir / "permutation_importance.png", title, unit),
    )
    if kind in {"XGBRegressor", "RandomForestRegressor", "Ridge", "LinearRegression", "Lasso", "ElasticNet"}:
        out += safely("shap", lambda: shap_summary(model, X, out_dir / "shap.png", title, unit))
    if kind == "ProphetForecaster":
        out += safely(
            "prophet_components", lambda: prophet_components(model, X, out_dir / "prophet_components.png", title)
        )
    return out
