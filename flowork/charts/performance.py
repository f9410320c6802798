"""Forecast vs actual, residuals over time and their distribution, error per fold: from a run's predictions
(`predictions.csv`: origin time, fold, y_true, y_pred)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from flowork.charts.style import ACCENT, ACTUAL, FORECAST, MUTED, figure, save


def forecast_vs_actual(pred: pd.DataFrame, out: Path, title: str, unit: str, only: str | None = None) -> Path:
    data = pred if only is None else pred[pred["fold"] == only]
    fig, (ax,) = figure(
        f"{title}: forecast vs actual" + (f" ({only})" if only else " over the backtest and holdout"),
        "forecast origin",
        unit,
    )
    ax.plot(data.index, data["y_true"], color=ACTUAL, lw=1.0, label="actual")
    ax.plot(data.index, data["y_pred"], color=FORECAST, lw=1.0, alpha=0.85, label="forecast")
    if only is None and (data["fold"] == "holdout").any():
        start = data.index[data["fold"] == "holdout"][0]
        ax.axvspan(start, data.index[-1], color=MUTED, alpha=0.15, label="holdout")
    ax.legend(loc="upper left", ncols=3)
    return save(fig, out)


def residuals(pred: pd.DataFrame, out: Path, title: str, unit: str) -> Path:
    r = pred["y_true"] - pred["y_pred"]
    fig, (ax_t, ax_h) = figure(f"{title}: residuals (actual - forecast)", "forecast origin", unit, rows=2)
    ax_t.axhline(0, color=MUTED, lw=1)
    ax_t.plot(r.index, r, color=FORECAST, lw=0.8)
    ax_h.hist(r, bins=40, color=FORECAST, alpha=0.8)
    ax_h.set_xlabel(f"residual ({unit})")
    ax_h.set_ylabel("count")
    ax_h.axvline(0, color=ACCENT, lw=1)
    return save(fig, out)


def error_by_fold(pred: pd.DataFrame, out: Path, title: str, unit: str) -> Path:
    mae = (pred["y_true"] - pred["y_pred"]).abs().groupby(pred["fold"], sort=False).mean()
    fig, (ax,) = figure(f"{title}: mean absolute error per fold", "fold", f"MAE ({unit})", size=(8, 3.6))
    colors = [ACCENT if f == "holdout" else FORECAST for f in mae.index]
    ax.bar(mae.index, mae.to_numpy(), color=colors)
    for x, v in enumerate(mae.to_numpy()):
        ax.text(x, v, f"{v:.2f}", ha="center", va="bottom", fontsize=9)
    ax.set_ylim(0, float(np.nanmax(mae.to_numpy())) * 1.15)
    return save(fig, out)


def all_performance(pred: pd.DataFrame, out_dir: Path, title: str, unit: str) -> list[Path]:
    from flowork.charts.style import safely

    out = []
    out += safely(
        "forecast_vs_actual", lambda: forecast_vs_actual(pred, out_dir / "forecast_vs_actual.png", title, unit)
    )
    out += safely(
        "holdout", lambda: forecast_vs_actual(pred, out_dir / "holdout_forecast.png", title, unit, only="holdout")
    )
    out += safely("residuals", lambda: residuals(pred, out_dir / "residuals.png", title, unit))
    out += safely("error_by_fold", lambda: error_by_fold(pred, out_dir / "error_by_fold.png", title, unit))
    return out
