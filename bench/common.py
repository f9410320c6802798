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


@functools.lru_cache(maxsize=1)
def raw_frame() -> pd.DataFrame:
    df = pd.read_csv(DATA, parse_dates=["date"]).set_index("date")
    return df.asfreq("D")


@functools.cache
def example_settings(model: str) -> dict:
    """What a flowork trial of `model` uses, composed from conf/ once, outside any timing: cleaning and feature
    arguments, default params, target and backtest protocol. The plain baseline gets exactly these, so both sides do
    the same work whatever the example's configs say today."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = OmegaConf.to_container(compose("config", overrides=[f"model={model}"]), resolve=True)
    return {
        "clean": cfg["features"]["clean"],
        "build": cfg["features"]["build"],
        "params": cfg["model"]["params"],
        "target": cfg["data"]["target"],
        "backtest": {**cfg["data"]["backtest"], "holdout": cfg["data"]["holdout"]},
    }


def prepare(trials: list[tuple[str, dict]]) -> list[tuple[str, dict, dict]]:
    """(model, sampled params) -> (model, the trial's full params, the example's settings), for plain_trial."""
    out = []
    for model, params in trials:
        settings = example_settings(model)
        out.append((model, {**settings["params"], **params}, settings))
    return out


def _function(target: str):
    import importlib

    module, name = target.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def plain_trial(model: str, params: dict, settings: dict) -> tuple[float, float]:
    """One trial by hand: clean, build features, the same expanding folds and gap as flowork, the holdout fit;
    (mean CV MAE, seconds). Plain pandas/numpy and the user's functions: no Hydra, Optuna or MLflow."""
    from flowork import backtest  # the protocol's boundaries only: pure pandas/numpy, no framework
    from flowork.features import make_target  # the label and when it is observed: pandas
    from user_code import models

    t0 = time.perf_counter()
    kw = {k: v for k, v in settings["clean"].items() if k != "_target_"}
    clean = _function(settings["clean"]["_target_"])(raw_frame(), **kw)
    kw = {k: v for k, v in settings["build"].items() if k != "_target_"}
    X = _function(settings["build"]["_target_"])(clean, **kw)
    column, horizon = settings["target"]["column"], settings["target"]["horizon"]
    y, label_time = make_target(clean, column, horizon)
    y, label_time = y.reindex(X.index), label_time.reindex(X.index)
    b = settings["backtest"]
    plan = backtest.plan(clean.index, b["folds"], b["min_train"], b["holdout"], horizon)
    scores = []
    for fold in backtest.folds(X.index, label_time, plan):
        fitted = getattr(models, model)(X[fold.train], y[fold.train], **params)
        pred = np.asarray(fitted.predict(X[fold.test]))
        scores.append(float(np.mean(np.abs(y[fold.test].to_numpy() - pred))))
    return float(np.mean(scores[:-1])), time.perf_counter() - t0


PLAIN_SCRIPT = """
import json, os, sys, time
from concurrent.futures import ProcessPoolExecutor
sys.path.insert(0, {bench!r})
from common import plain_trial

if __name__ == "__main__":
    trials, workers = json.load(open({trials!r})), {workers}
    if workers == 1:
        results = [plain_trial(*t) for t in trials]
    else:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(plain_trial, *zip(*trials)))
    json.dump(results, open({out!r}, "w"))
"""


def plain_script(trials: list[tuple[str, dict]], workers: int) -> tuple[float, float, list[float]]:
    """The baseline a user would write instead: one Python script that loads the data, builds the features and runs
    the same fits (in a ProcessPoolExecutor when workers > 1), timed as a whole command like flowork's, from
    interpreter start to exit. The trials' settings are composed from conf/ before the clock starts.
    (wall seconds, busy seconds, each trial's CV score in the trials' order)"""
    import json
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        Path(d, "trials.json").write_text(json.dumps(prepare(trials)))
        code = PLAIN_SCRIPT.format(
            bench=str(Path(__file__).parent), trials=f"{d}/trials.json", workers=workers, out=f"{d}/out.json"
        )
        Path(d, "plain.py").write_text(code)
        t0 = time.perf_counter()
        # one BLAS/OpenMP thread per process, as flowork's trials use
        subprocess.run(
            [sys.executable, f"{d}/plain.py"], cwd=ROOT, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}
        )
        wall = time.perf_counter() - t0
        results = json.loads(Path(d, "out.json").read_text())
    return wall, sum(seconds for _, seconds in results), [score for score, _ in results]


def run_flowork(args: list[str], cwd: Path = ROOT) -> float:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "flowork", *args], cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return time.perf_counter() - t0
