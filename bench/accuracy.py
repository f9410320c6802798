"""Issue #9 accuracy: the example sweep's champion next to honest baselines on the same holdout and protocol
(origins in the last 20% of days, labels `horizon` days ahead, nothing fitted on the holdout), h = 1 and 7.

    python bench/accuracy.py [--horizons 1,7] [--out bench/results_accuracy.json]

The champion is what `make run` (the example sweep, unchanged but for the horizon) selects by CV, run here into a
throwaway store; its holdout score is the figure compared.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from common import ROOT, raw_frame, run_flowork


def baselines(horizon: int) -> dict[str, float]:
    from flowork import backtest

    raw = raw_frame()
    y = raw["temp_max"]
    p = backtest.plan(raw.index, 5, 0.5, 0.2, horizon)
    target = y.shift(-horizon)
    origins = raw.index[(raw.index >= p.holdout_start) & target.notna().to_numpy()]
    truth = target[origins]
    train = y[raw.index + pd.Timedelta(days=horizon) < p.holdout_start]  # labels observed before the holdout
    doy = train.groupby(train.index.dayofyear).mean()
    smooth = pd.Series(
        [doy.reindex([(d + k - 1) % 366 + 1 for k in range(-7, 8)]).mean() for d in range(1, 367)], index=range(1, 367)
    )
    when = origins + pd.Timedelta(days=horizon)
    preds = {
        "persistence": y[origins].to_numpy(),
        "climatology (day-of-year ±7 d, training part)": smooth[when.dayofyear].to_numpy(),
        "seasonal naive (same day last year)": y.reindex(when - pd.Timedelta(days=365)).to_numpy(),
    }
    return {name: float(np.nanmean(np.abs(truth.to_numpy() - pred))) for name, pred in preds.items()}


def untuned_ridge(horizon: int, tmp: Path) -> float:
    import mlflow

    store = f"sqlite:///{tmp}/ridge{horizon}.db"
    run_flowork(
        [
            "model=ridge",
            f"data.target.horizon={horizon}",
            f"tracking.uri={store}",
            "tracking.log_model=false",
            f"tracking.artifact_location=file://{tmp}/art",
            f"hydra.run.dir={tmp}/r{horizon}",
        ]
    )
    mlflow.set_tracking_uri(store)
    run = mlflow.search_runs(experiment_names=["temperature"], output_format="list")[0]
    return float(run.data.metrics["holdout_mae"])


def example_champion(horizon: int, tmp: Path) -> dict:
    """`make run` itself (the example sweep, its models, budgets and launcher) at this horizon, into a throwaway store:
    the champion it selected by CV, with that champion's holdout score."""
    sweep_dir = tmp / f"example-h{horizon}"
    args = [
        f"data.target.horizon={horizon}",
        f"sweep.name=accuracy-h{horizon}",
        f"hydra.sweep.dir={sweep_dir}",
        f"tracking.uri=sqlite:///{tmp}/example.db",
        f"tracking.artifact_location=file://{tmp}/art",
        "charts.trials=none",  # charts do not change the champion
    ]
    subprocess.run(["make", "-s", "run", f"ARGS={' '.join(args)}"], cwd=ROOT, check=True, capture_output=True)
    best = yaml.safe_load((sweep_dir / "best.yaml").read_text())
    return best | {"leaderboard": (sweep_dir / "leaderboard.md").read_text()}  # every study's best, for the README


def rows(r: dict) -> list[tuple[str, str, str]]:
    """This benchmark's lines of the results table: (measure, flowork, baseline / target)."""
    out = []
    for h, acc in r.items():
        if h.startswith("h="):
            out += [(f"holdout MAE {h}: {name}", f"{mae:.2f} °C", "") for name, mae in acc.items()]
    for h, seconds in r.get("sweep_seconds", {}).items():
        out.append((f"`make run` (example sweep), {h}", f"{seconds:.0f} s", ""))
    return out


def main() -> None:
    import tempfile

    ap = argparse.ArgumentParser()
    ap.add_argument("--horizons", default="1,7", help="example sweeps to run, one per horizon")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results_accuracy.json")))
    args = ap.parse_args()
    report = {}
    with tempfile.TemporaryDirectory() as d:
        for h in map(int, args.horizons.split(",")):
            row = baselines(h) | {"untuned ridge (flowork default)": untuned_ridge(h, Path(d))}
            t0 = time.perf_counter()
            best = example_champion(h, Path(d))
            name = f"flowork champion of `make run` ({best['model']}, CV {float(best['cv']):.2f})"
            row[name] = float(best["holdout"])
            report[f"h={h}"] = row
            report.setdefault("sweep_seconds", {})[f"h={h}"] = time.perf_counter() - t0
            report.setdefault("leaderboards", {})[f"h={h}"] = best["leaderboard"]
            print(h, json.dumps(row, indent=1), flush=True)
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
