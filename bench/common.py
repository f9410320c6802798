"""Shared by the benchmarks: the plain-Python baseline (same data, features, folds and fits; no Hydra, Optuna or
MLflow), and helpers to run flowork's real CLI and read back its trials."""

from __future__ import annotations

import functools
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # user_code, as `python -m flowork` sees it from the project root

DATA = ROOT / "data" / "seattle_weather_daily.csv"
TABULAR = dict(
    target="temp_max",
    horizon=1,
    lags=30,
    exog=["temp_min", "precipitation", "wind"],
    exog_lags=3,
    windows=[7, 30],
    categorical={"weather": ["sun", "rain", "drizzle", "snow", "fog"]},
    calendar=True,
)


@functools.lru_cache(maxsize=1)
def raw_frame() -> pd.DataFrame:
    df = pd.read_csv(DATA, parse_dates=["date"]).set_index("date")
    return df.asfreq("D")


def plain_trial(model: str, params: dict, horizon: int = 1) -> tuple[float, float]:
    """One trial by hand: build features, 5 expanding folds with a gap of `horizon`, a holdout fit; (mae, seconds)."""
    from flowork import backtest  # the protocol's boundaries only: pure pandas/numpy, no framework
    from user_code import features, models

    t0 = time.perf_counter()
    raw = raw_frame()
    X = features.tabular(raw.ffill(limit=3), **{**TABULAR, "horizon": horizon})
    y = raw["temp_max"].shift(-horizon).reindex(X.index)
    label_time = pd.Series(raw.index, index=raw.index).shift(-horizon).reindex(X.index)
    plan = backtest.plan(raw.index, 5, 0.5, 0.2, horizon)
    scores = []
    for fold in backtest.folds(X.index, label_time, plan):
        fitted = getattr(models, model)(X[fold.train], y[fold.train], **params)
        pred = np.asarray(fitted.predict(X[fold.test]))
        scores.append(float(np.mean(np.abs(y[fold.test].to_numpy() - pred))))
    return float(np.mean(scores[:-1])), time.perf_counter() - t0


def run_flowork(args: list[str], cwd: Path = ROOT) -> float:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "flowork", *args], cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return time.perf_counter() - t0
