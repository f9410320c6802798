"""Issue #9 startup: `python -m flowork --help`, and command-to-first-trial (the MLflow run's start time minus the
moment the command was launched) for a single job and for a sweep, model=ridge and model=darts_nbeats.

    python bench/startup.py [--repeat 3] [--out bench/results_startup.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT


def help_seconds() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "flowork", "--help"], cwd=ROOT, capture_output=True, check=True)
    return time.perf_counter() - t0


def first_trial_seconds(model: str, sweep: bool, tmp: Path, k: int) -> float:
    import mlflow

    store = f"sqlite:///{tmp}/{model}{sweep}{k}.db"
    args = [
        f"model={model}",
        f"tracking.uri={store}",
        f"tracking.artifact_location=file://{tmp}/art",
        "tracking.log_model=false",
        f"hydra.run.dir={tmp}/run{k}",
    ]
    if sweep:
        args += [
            "search.n_trials=1",
            "sweep.select=false",
            "charts.trials=none",
            f"sweep.name=s{k}",
            f"hydra.sweep.dir={tmp}/sweep{model}{k}",
            "-m",
        ]
    start = time.time()
    subprocess.run([sys.executable, "-m", "flowork", *args], cwd=ROOT, capture_output=True, check=True)
    mlflow.set_tracking_uri(store)
    runs = mlflow.search_runs(experiment_names=["temperature"], output_format="list")
    trial_runs = [r for r in runs if r.data.tags.get("flowork.role") is None]
    return min(r.info.start_time for r in trial_runs) / 1000 - start


def rows(r: dict) -> list[tuple[str, str, str]]:
    """This benchmark's lines of the results table: (measure, flowork, baseline / target)."""
    out = [("`python -m flowork --help`", f"{r['help_s']:.2f} s", "≤ 1 s")]
    for key, value in r.items():
        if key.startswith("first_trial_s["):
            what = key.removeprefix("first_trial_s[").rstrip("]")
            out.append((f"command → first trial, model={what}", f"{value:.2f} s", "≤ 4 s" if what == "ridge" else ""))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).with_name("results_startup.json")))
    args = ap.parse_args()
    help_seconds()  # warm the file cache
    report = {"help_s": statistics.median(help_seconds() for _ in range(5))}
    with tempfile.TemporaryDirectory() as d:
        for model in ("ridge", "darts_nbeats"):
            for sweep in (False, True):
                key = f"first_trial_s[{model}{', sweep' if sweep else ''}]"
                report[key] = statistics.median(
                    first_trial_seconds(model, sweep, Path(d), k) for k in range(args.repeat)
                )
                print(key, round(report[key], 2), flush=True)
    print(json.dumps(report, indent=1))
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
