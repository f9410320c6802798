"""Explainability by model type, on the holdout rows of a model fitted on the development rows (`refit.py`):

- permutation importance for any model (a model a user adds gets it with no work); for N-BEATS in its generic form
  this is the importance of each step of its input window (w0 = oldest ... wN = the value at the origin);
- SHAP for tree ensembles and linear models, also inside a scikit-learn pipeline (found by what the estimator is,
  not by its name, so a user's own tree or linear model gets it too);
- Prophet's components (trend, seasonalities, regressors);
- a decomposition for any model with a `components(X)` method returning a frame whose columns add up to the
  forecast (N-BEATS in its interpretable form: trend and seasonality stacks).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flowork.charts.style import ACCENT, ACTUAL, FORECAST, PALETTE, figure, safely, save


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
    budget: float = 4.0,
) -> Path:
    """Increase in MAE when one feature's column is shuffled (model-agnostic, on the rows given).

    Every shuffled copy of one repeat goes to `predict` in one call: the contract is one value per row, so rows are
    independent, and one call per repeat instead of one per column cuts the per-call overhead. A model slow to
    predict (N-BEATS: ~0.5 ms per row) gets fewer repeats, so that the chart takes about `budget` seconds at most
    (never fewer than one repeat); the title says how many."""
    import time

    rng = np.random.default_rng(seed)
    truth = y.to_numpy(dtype=float)
    t0 = time.perf_counter()
    base = float(np.mean(np.abs(np.asarray(model.predict(X), dtype=float).reshape(-1) - truth)))
    columns = [c for c in X.columns if c != "ds"]  # Prophet's time column is its clock, not a feature to shuffle
    per_repeat = (time.perf_counter() - t0) * len(columns)
    repeats = max(1, min(repeats, int(budget / max(per_repeat, 1e-9))))
    deltas = np.zeros((repeats, len(columns)))
    for r in range(repeats):
        copies = []
        for col in columns:
            shuffled = X.copy()
            shuffled[col] = rng.permutation(shuffled[col].to_numpy())
            copies.append(shuffled)
        pred = np.asarray(model.predict(pd.concat(copies)), dtype=float).reshape(len(columns), len(X))
        deltas[r] = np.mean(np.abs(pred - truth), axis=1) - base
    scores = pd.Series(deltas.mean(axis=0), index=columns)
    title = f"{title}: permutation importance (holdout, MAE {base:.2f} {unit}, {repeats} shuffle(s) each)"
    return ranking(scores, top, out, title, f"MAE increase when shuffled ({unit})", zero_line=True)


def ranking(values: pd.Series, top: int, out: Path, title: str, xlabel: str, zero_line: bool = False) -> Path:
    """The `top` largest values as horizontal bars, largest on top."""
    ranked = values.sort_values().tail(top)
    fig, (ax,) = figure(title, xlabel, "feature", size=(9, 0.28 * len(ranked) + 1.6))
    ax.barh(ranked.index.astype(str), ranked.to_numpy(), color=FORECAST)
    if zero_line:
        ax.axvline(0, color=ACCENT, lw=1)
    return save(fig, out)


def split_pipeline(model: Any) -> tuple[Any, Any]:
    """(final estimator, transform of X into its inputs): a scikit-learn Pipeline's last step and the steps before."""
    if hasattr(model, "steps") and len(model.steps) > 0:
        head = model[:-1] if len(model.steps) > 1 else None
        return model.steps[-1][1], (head.transform if head is not None else None)
    return model, None


def shap_kind(estimator: Any) -> str | None:
    """'tree', 'linear' or None (no fast exact SHAP: permutation importance covers such models)."""
    name = type(estimator).__module__ + "." + type(estimator).__name__
    members = getattr(estimator, "estimators_", None)  # an ensemble's fitted members (list or array)
    first = np.ravel(np.asarray(members, dtype=object))[0] if members is not None and len(members) else None
    if hasattr(estimator, "get_booster") or hasattr(estimator, "tree_") or hasattr(first, "tree_"):
        return "tree"  # xgboost, a decision tree, random/extra forests, gradient boosting
    if name.startswith(("lightgbm.", "catboost.")):
        return "tree"
    coef = getattr(estimator, "coef_", None)
    if coef is not None and np.ndim(coef) == 1 and hasattr(estimator, "intercept_"):
        return "linear"  # ridge, lasso, elastic net, OLS ...
    return None


def shap_summary(model: Any, X: pd.DataFrame, out: Path, title: str, unit: str, top: int = 20, rows: int = 200) -> Path:
    """Mean |SHAP value| per feature over the last `rows` holdout rows: TreeExplainer for tree ensembles,
    LinearExplainer (holdout rows as background) for linear models; exact and fast for both."""
    import shap

    estimator, transform = split_pipeline(model)
    kind = shap_kind(estimator)
    Z = X if transform is None else pd.DataFrame(transform(X), index=X.index)
    Z.columns = X.columns if Z.shape[1] == X.shape[1] else [f"x{i}" for i in range(Z.shape[1])]
    sample = Z.tail(rows)
    if kind == "tree":
        values = shap.TreeExplainer(estimator).shap_values(sample)
    elif kind == "linear":
        values = shap.LinearExplainer(estimator, shap.maskers.Independent(Z, max_samples=100)).shap_values(sample)
    else:
        raise TypeError(f"no tree or linear SHAP explainer for {type(estimator).__name__}")
    mean_abs = pd.Series(np.abs(np.asarray(values)).mean(axis=0), index=Z.columns)
    return ranking(
        mean_abs,
        top,
        out,
        f"{title}: SHAP ({kind}), mean |contribution| over the last {len(sample)} holdout rows",
        f"mean |SHAP value| ({unit})",
    )


def prophet_of(model: Any) -> Any:
    """The fitted prophet.Prophet inside the model (itself or its `model` attribute), if prophet is loaded."""
    prophet = sys.modules.get("prophet")  # a model that uses Prophet has imported it; never import it here
    if prophet is None:
        return None
    for candidate in (model, getattr(model, "model", None)):
        if isinstance(candidate, prophet.Prophet):
            return candidate
    return None


def prophet_frame(prophet: Any, X: pd.DataFrame) -> pd.DataFrame:
    """Prophet's own components of each forecast, in the target's unit so that they add up to it: trend, each
    seasonality, the regressors' summed effect. A multiplicative component (a share of the trend in Prophet's
    output) is shown as what it adds: share x trend."""
    forecast = prophet.predict(X[["ds", *prophet.extra_regressors]].reset_index(drop=True))
    multiplicative = {n for n, s in prophet.seasonalities.items() if s["mode"] == "multiplicative"}
    multiplicative.add("extra_regressors_multiplicative")
    parts = ["trend", *prophet.seasonalities, "extra_regressors_additive", "extra_regressors_multiplicative"]
    frame = pd.DataFrame(index=X.index)
    for p in parts:
        if p in forecast and (p == "trend" or np.any(forecast[p] != 0)):
            values = forecast[p] * forecast["trend"] if p in multiplicative else forecast[p]
            frame[p.replace("extra_regressors_", "regressors, ")] = values.to_numpy()
    return frame


def decomposition(
    parts: pd.DataFrame, y: pd.Series, out: Path, title: str, unit: str, forecast: np.ndarray | None = None
) -> Path:
    """One panel per component over the holdout (forecast and actual on top), on the target's unit."""
    fig, axes = figure(title, "forecast origin", unit, rows=len(parts.columns) + 1, size=(10, 2.3))
    axes[0].plot(y.index, y.to_numpy(), color=ACTUAL, lw=1.0, label="actual")
    if forecast is not None:
        axes[0].plot(y.index, forecast, color=FORECAST, lw=1.0, label="forecast")
    axes[0].legend(loc="upper left", ncols=2)
    for ax in axes[:-1]:
        ax.set_xlabel("")  # the panels share the time axis: label it once, at the bottom
    for k, (ax, name) in enumerate(zip(axes[1:], parts.columns, strict=True)):
        ax.plot(parts.index, parts[name].to_numpy(), color=PALETTE[k % len(PALETTE)], lw=1.2)
        ax.set_title(str(name), loc="left", fontsize=10)
    return save(fig, out)


def explain(model: Any, X: pd.DataFrame, y: pd.Series, out_dir: Path, title: str, unit: str) -> list[Path]:
    """Every explanation that fits the model's type; each one that fails is a warning only."""
    out = safely(
        "permutation_importance",
        lambda: permutation_importance(model, X, y, out_dir / "permutation_importance.png", title, unit),
    )
    if shap_kind(split_pipeline(model)[0]) is not None:
        out += safely("shap", lambda: shap_summary(model, X, out_dir / "shap.png", title, unit))
    prophet = prophet_of(model)
    if prophet is not None:
        out += safely(
            "prophet_components",
            lambda: decomposition(
                prophet_frame(prophet, X),
                y,
                out_dir / "prophet_components.png",
                f"{title}: Prophet components (holdout)",
                unit,
                np.asarray(model.predict(X), dtype=float),
            ),
        )
    if callable(getattr(model, "components", None)):

        def own_components() -> Path | None:
            parts = model.components(X)
            if parts is None:  # the model has no interpretable form as configured (generic N-BEATS)
                return None
            return decomposition(
                parts,
                y,
                out_dir / "decomposition.png",
                f"{title}: decomposition of the forecast (holdout)",
                unit,
                np.asarray(model.predict(X), dtype=float),
            )

        out += safely("decomposition", own_components)
    return out
