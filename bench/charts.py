"""Issue #6 benchmark: what charts cost a sweep, charts.trials=best (the default) vs charts.trials=all.

The example sweep (`make run`: five model studies, 2 joblib workers) on the example data, run once per setting with
the same seed; `--trials N` caps every study at N trials (a reduced sweep; 0 = the example's own budgets).

Measured, not estimated:
- trial time: Optuna's `seconds` of every trial (the trial's job, as the worker timed it);
- per-trial charts (charts.trials=all): the `chart_seconds` metric each trial's MLflow run gets from its worker;
- end-of-sweep charts + report (each study's best: performance + refit + explanations; the champion; the sweep's
  charts): `charts/timing.json` of the sweep;
- sweep wall time, from the command to its exit.
Chart time per trial = all chart time / trials; its share = chart time / summed trial time, and / sweep wall time.

    python bench/charts.py [--trials 6] [--out bench/results_charts.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from common import run_flowork

MODELS = "ridge,random_forest,xgb,prophet,darts_nbeats"


def sweep(mode: str, trials: int, tmp: Path) -> dict:
    from flowork.tracking import get_tracker

    name = f"charts-{mode}"
    sweep_dir = tmp / name
    store = f"sqlite:///{tmp}/{name}.db"
    args = [
        f"model={MODELS}",
        f"sweep.name={name}",
        f"hydra.sweep.dir={sweep_dir}",
        f"tracking.uri={store}",
        f"tracking.artifact_location=file://{tmp}/art-{name}",
        f"charts.trials={mode}",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        *([f"search.n_trials={trials}"] if trials else []),
        "-m",
    ]
    wall = run_flowork(args)
    return measure(mode, name, sweep_dir, get_tracker(store, "temperature", f"file://{tmp}/art-{name}"), wall)


def measure(mode: str, name: str, sweep_dir: Path, tracker, wall: float) -> dict:
    import optuna

    from flowork.studies import open_storage

    storage = open_storage(f"journal:{sweep_dir}/optuna.journal")
    trial_s, per_trial_chart_s = [], []
    for model in MODELS.split(","):
        study = optuna.load_study(study_name=f"{name}/{model}", storage=storage)
        for t in study.get_trials(deepcopy=False):
            if t.state.name != "COMPLETE":
                continue
            trial_s.append(t.user_attrs["seconds"])
            if mode == "all":
                metrics = tracker.client.get_run(t.user_attrs["run_id"]).data.metrics
                per_trial_chart_s.append(metrics["chart_seconds"])
    end = json.loads((sweep_dir / "charts" / "timing.json").read_text())["report_seconds"]
    charts_s = sum(per_trial_chart_s) + end
    n = len(trial_s)
    return {
        "setting": mode,
        "trials": n,
        "sweep_wall_s": wall,
        "trial_s_total": sum(trial_s),
        "trial_ms_median": 1000 * statistics.median(trial_s),
        "per_trial_charts_ms_median": 1000 * statistics.median(per_trial_chart_s) if per_trial_chart_s else 0.0,
        "end_of_sweep_charts_s": end,
        "charts_s_total": charts_s,
        "charts_ms_per_trial": 1000 * charts_s / n,
        "charts_share_of_trial_time": charts_s / sum(trial_s),
        "charts_share_of_sweep_wall": charts_s / wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=6, help="trials per study (0: the example's budgets, ~110 in all)")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results_charts.json")))
    args = ap.parse_args()
    report: dict = {
        "sweep": f"model={MODELS}, 2 joblib workers, "
        + (f"{args.trials} trials per study" if args.trials else "the example's budgets")
    }
    with tempfile.TemporaryDirectory() as d:
        for mode in ("best", "all"):
            report[mode] = sweep(mode, args.trials, Path(d))
            print(report[mode], flush=True)
    report["target"] = "default (best): charts < 10% of the sweep's wall time"
    report["target_met"] = report["best"]["charts_share_of_sweep_wall"] < 0.10
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
