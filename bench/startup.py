"""Issue #9 startup: `python -m flowork --help`, and command-to-first-trial (the MLflow run's start time minus the
moment the command was launched) for a single job and for a sweep, model=ridge and model=darts_nbeats.

A project's first command creates its MLflow store (sqlite: MLflow runs its ~50 schema migrations, 1.5-2 s here);
every later command opens it. The first ridge job is measured on a new store, then each command on that store.

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
    """Seconds from the command to the start of its first trial's run, in the store of repeat `k`."""
    import mlflow

    store = f"sqlite:///{tmp}/store{k}.db"
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
            f"sweep.name={model}{k}",
            f"hydra.sweep.dir={tmp}/sweep{model}{k}",
            "-m",
        ]
    start = time.time()
    subprocess.run([sys.executable, "-m", "flowork", *args], cwd=ROOT, capture_output=True, check=True)
    mlflow.set_tracking_uri(store)
    runs = mlflow.search_runs(experiment_names=["temperature"], output_format="list")
    trial_runs = [r for r in runs if r.data.tags.get("flowork.role") is None and r.info.start_time >= start * 1000]
    return min(r.info.start_time for r in trial_runs) / 1000 - start


COMMANDS = [  # (key, model, sweep), in this order: the first creates the store the others open
    ("ridge, new store", "ridge", False),
    ("ridge", "ridge", False),
    ("ridge, sweep", "ridge", True),
    ("darts_nbeats", "darts_nbeats", False),
    ("darts_nbeats, sweep", "darts_nbeats", True),
]


def rows(r: dict) -> list[tuple[str, str, str]]:
    """This benchmark's lines of the results table: (measure, flowork, baseline / target)."""
    out = [("`python -m flowork --help`", f"{r['help_s']:.2f} s", "≤ 1 s")]
    for key, value in r.items():
        if key.startswith("first_trial_s["):
            what = key.removeprefix("first_trial_s[").rstrip("]")
            target = "≤ 4 s" if what == "ridge" else ""
            out.append((f"command → first trial, model={what}", f"{value:.2f} s", target))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).with_name("results_startup.json")))
    args = ap.parse_args()
    help_seconds()  # warm the file cache
    report = {"help_s": statistics.median(help_seconds() for _ in range(5))}
    seconds: dict[str, list[float]] = {key: [] for key, _, _ in COMMANDS}
    with tempfile.TemporaryDirectory() as d:
        for k in range(args.repeat):
            for key, model, sweep in COMMANDS:
                seconds[key].append(first_trial_seconds(model, sweep, Path(d), k))
                print(key, round(seconds[key][-1], 2), flush=True)
    report |= {f"first_trial_s[{key}]": statistics.median(values) for key, values in seconds.items()}
    print(json.dumps(report, indent=1))
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
