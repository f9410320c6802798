"""Issue #9 accuracy: the example sweep's champion next to honest baselines on the same holdout and protocol
(origins in the last 20% of days, labels `horizon` days ahead, nothing fitted on the holdout), h = 1 and 7.

    python bench/accuracy.py [--sweep example] [--out bench/results_accuracy.json]

The champion's figure is read from multirun/<sweep>/best.yaml (run `make run` first; for h=7 run the sweep with
data.target.horizon=7 and name it with --sweep7).
"""

from __future__ import annotations

import argparse
import json
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


def champion(sweep: str | None) -> dict | None:
    path = ROOT / "multirun" / str(sweep) / "best.yaml"
    return yaml.safe_load(path.read_text()) if sweep and path.exists() else None


def main() -> None:
    import tempfile

    ap = argparse.ArgumentParser()
    ap.add_argument("--sweep", default="example")
    ap.add_argument("--sweep7", default=None)
    ap.add_argument("--out", default=str(Path(__file__).with_name("results_accuracy.json")))
    args = ap.parse_args()
    report = {}
    with tempfile.TemporaryDirectory() as d:
        for h, sweep in ((1, args.sweep), (7, args.sweep7)):
            row = baselines(h) | {"untuned ridge (flowork default)": untuned_ridge(h, Path(d))}
            best = champion(sweep)
            if best:
                row[f"flowork champion ({best['model']}, sweep {sweep})"] = float(best["holdout"])
            report[f"h={h}"] = row
            print(h, json.dumps(row, indent=1), flush=True)
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
