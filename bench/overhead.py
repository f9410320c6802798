"""Issue #9 overhead and scale.

overhead: the same 40 ridge/xgb trials run by flowork (sweeper, MLflow, one worker) and by a plain Python script
(same data, features, folds and fits; no Hydra/Optuna/MLflow), alternated, median of --repeat runs each.
scale: flowork's per-trial cost with a trivial model at 10, 100 and 1000 trials (--scale), and one tabular job on
the example stretched to 10x and 100x its length (synthetic, hourly): wall time and peak memory.

    python bench/overhead.py [--repeat 5] [--scale 10,100,1000] [--out bench/results_overhead.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from common import DATA, plain_script, run_flowork
from sweep_parallel import flowork_sweep, scenarios


def overhead(repeat: int) -> dict:
    trials = scenarios(40)["uneven"]
    fw, pl = [], []
    with tempfile.TemporaryDirectory() as d:
        for k in range(repeat):
            pl.append(plain_script(trials, 1)[0])
            fw.append(flowork_sweep(trials, 1, Path(d), f"ov{k}")[0])  # same work: checked in sweep_parallel
            print(f"overhead run {k}: flowork {fw[-1]:.1f}s plain {pl[-1]:.1f}s", flush=True)
    f, p = statistics.median(fw), statistics.median(pl)
    return {
        "trials": len(trials),
        "repeat": repeat,
        "flowork_s": f,
        "plain_s": p,
        "ratio": f / p,
        "per_trial_overhead_ms": 1000 * (f - p) / len(trials),
        "pair_ratios": [round(a / b, 3) for a, b in zip(fw, pl, strict=True)],  # the spread between runs
    }


def per_trial(n: int, tmp: Path) -> dict:
    import optuna

    from flowork.studies import open_storage

    name = f"scale{n}"
    wall = run_flowork(
        [
            "model=ridge",
            "model.train._target_=bench.trivial.last_value",
            f"search.n_trials={n}",
            f"sweep.name={name}",
            f"hydra.sweep.dir={tmp}/{name}",
            f"tracking.uri=sqlite:///{tmp}/{name}.db",
            f"tracking.artifact_location=file://{tmp}/art",
            "sweep.select=false",
            "charts.trials=none",
            "features.leakage_check=false",
            "-m",
        ]
    )
    study = optuna.load_study(study_name=f"{name}/ridge", storage=open_storage(f"journal:{tmp}/{name}/optuna.journal"))
    seconds = [t.user_attrs["seconds"] for t in study.trials]
    half = len(seconds) // 2
    return {
        "trials": n,
        "wall_s": wall,
        "median_trial_ms": 1000 * statistics.median(seconds),
        "median_trial_ms_second_half": 1000 * statistics.median(seconds[half:]),
    }


def long_series(factor: int, tmp: Path) -> dict:
    df = pd.read_csv(DATA)
    reps = pd.concat([df] * factor, ignore_index=True)
    noise = np.random.default_rng(0).normal(0, 0.5, len(reps))
    for c in ("temp_max", "temp_min"):
        reps[c] = reps[c] + noise
    reps["date"] = pd.date_range("2000-01-01", periods=len(reps), freq="h").strftime("%Y-%m-%d %H:%M:%S")
    path = tmp / f"long{factor}.csv"
    reps.to_csv(path, index=False)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    wall = run_flowork(
        [
            "model=ridge",
            f"data.uri={path}",
            "data.freq=h",
            f"tracking.uri=sqlite:///{tmp}/long.db",
            f"tracking.artifact_location=file://{tmp}/art",
            "tracking.log_model=false",
            f"hydra.run.dir={tmp}/long{factor}",
        ]
    )
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"rows": len(reps), "wall_s": wall, "peak_rss_mb": max(peak, before) / 1024}


def rows(r: dict) -> list[tuple[str, str, str]]:
    """This benchmark's lines of the results table: (measure, flowork, baseline / target)."""
    ov, pt = r["overhead"], r["per_trial"]
    out = [
        (
            f"{ov['trials']} trials sequential vs plain script (median of {ov.get('repeat', 3)})",
            f"{ov['flowork_s']:.1f} s vs {ov['plain_s']:.1f} s = {ov['ratio']:.2f}× "
            f"({ov['per_trial_overhead_ms']:.0f} ms/trial)"
            + (f"; pairs {min(ov['pair_ratios']):.2f}-{max(ov['pair_ratios']):.2f}×" if "pair_ratios" in ov else ""),
            "≤ 1.10×",
        ),
        (
            "per-trial cost, trivial model, " + " / ".join(str(p["trials"]) for p in pt) + " trials",
            " / ".join(f"{p['median_trial_ms']:.0f} ms" for p in pt) + f" (growth {r['per_trial_growth']:.2f}×)",
            "flat (≤ 1.2× growth)",
        ),
    ]
    for ls in r["long_series"]:
        out.append((f"one ridge job, {ls['rows']} rows", f"{ls['wall_s']:.1f} s, peak {ls['peak_rss_mb']:.0f} MB", ""))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--scale", default="10,100,1000", help="trivial-model sweep sizes for the per-trial cost")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results_overhead.json")))
    args = ap.parse_args()
    report: dict = {"overhead": overhead(args.repeat)}
    print(report["overhead"], flush=True)
    with tempfile.TemporaryDirectory() as d:
        report["per_trial"] = [per_trial(int(n), Path(d)) for n in args.scale.split(",")]
        print(report["per_trial"], flush=True)
        report["long_series"] = [long_series(f, Path(d)) for f in (1, 10, 100)]
        print(report["long_series"], flush=True)
    growth = report["per_trial"][-1]["median_trial_ms"] / report["per_trial"][0]["median_trial_ms"]
    report["per_trial_growth"] = growth
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
