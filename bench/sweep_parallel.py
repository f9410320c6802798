"""Issue #3 benchmark: a two-model sweep with 1 vs 2 workers, next to a plain script with a ProcessPoolExecutor running
the same fits with no framework. The same trial list everywhere: flowork's studies get it enqueued before the sweep
starts. Both sides are timed as whole commands, from interpreter start to exit.

    python bench/sweep_parallel.py [--trials 40] [--out bench/results_sweep.json]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

from common import plain_script, run_flowork


def scenarios(n: int) -> dict[str, list[tuple[str, dict]]]:
    rng = random.Random(0)
    half = n // 2
    uneven = [("ridge", {"alpha": 10 ** rng.uniform(-2, 3)}) for _ in range(half)] + [
        ("xgb", {"n_estimators": rng.choice([50, 100, 400, 1200]), "max_depth": rng.randint(2, 6)}) for _ in range(half)
    ]
    similar = [
        ("xgb", {"n_estimators": 300, "max_depth": 3, "learning_rate": 10 ** rng.uniform(-2, -0.5)})
        for _ in range(half)
    ] + [("random_forest", {"n_estimators": 40, "max_depth": 8, "max_features": 0.5}) for _ in range(half)]
    return {"similar": similar, "uneven": uneven}


def flowork_sweep(trials, workers: int, tmp: Path, tag: str) -> tuple[float, float, list[float]]:
    """(wall seconds of the command, busy seconds of its trials, each trial's CV score in the trials' order)."""
    import optuna

    from flowork.studies import open_storage

    name = f"bench-{tag}-{workers}"
    sweep_dir = tmp / name
    storage = open_storage(f"journal:{sweep_dir}/optuna.journal")
    by_model: dict[str, list[dict]] = {}
    for model, params in trials:
        by_model.setdefault(model, []).append(params)
    for model, plist in by_model.items():
        study = optuna.create_study(study_name=f"{name}/{model}", storage=storage, direction="minimize")
        for p in plist:
            study.enqueue_trial({f"model.params.{k}": v for k, v in p.items()})
    args = [
        f"model={','.join(by_model)}",
        f"sweep.name={name}",
        f"hydra.sweep.dir={sweep_dir}",
        f"tracking.uri=sqlite:///{tmp}/mlflow.db",
        f"tracking.artifact_location=file://{tmp}/art",
        f"search.n_trials={len(trials) // len(by_model)}",
        "sweep.select=false",
        "charts.trials=none",  # the trial loop is what is compared: no end-of-sweep report
        "hydra/launcher=joblib",
        f"hydra.launcher.n_jobs={workers}",
        "~search.space",  # only the benchmarked keys are searched (as choices over the enqueued values)
    ]
    wall = run_flowork([*args, *space_overrides(trials), "-m"])
    done = {m: optuna.load_study(study_name=f"{name}/{m}", storage=storage).get_trials() for m in by_model}
    busy = sum(t.user_attrs.get("seconds", 0.0) for ts in done.values() for t in ts)
    queue = {m: iter(sorted(ts, key=lambda t: t.number)) for m, ts in done.items()}  # enqueued order per study
    return wall, busy, [float(next(queue[model]).value) for model, _ in trials]


def space_overrides(trials) -> list[str]:
    """Sweep every benchmarked key as a choice over the values used, so enqueued values are inside the space."""
    values: dict[str, set] = {}
    for _, p in trials:
        for k, v in p.items():
            values.setdefault(k, set()).add(v)
    return [f"model.params.{k}=choice({','.join(map(repr, sorted(v)))})" for k, v in values.items()]


def rows(r: dict) -> list[tuple[str, str, str]]:
    """This benchmark's lines of the results table: (measure, flowork, baseline / target)."""
    out = []
    for tag, x in r.items():
        if tag == "longer":
            continue
        out.append(
            (
                f"sweep, 2 workers, {tag} trials: wall vs a plain script with ProcessPoolExecutor(2)",
                f"{x['2']['flowork_wall']:.1f} s vs {x['2']['pool_wall']:.1f} s = {x['flowork2_vs_pool2']:.2f}×",
                "≤ 1.10×",
            )
        )
        out.append(
            (
                f"sweep, {tag}: 2-worker speedup (flowork / pool); worker idle share",
                f"{x['flowork_speedup']:.2f} / {x['pool_speedup']:.2f} = {x['speedup_ratio']:.2f}; "
                f"idle {x['2']['flowork_idle_share']:.0%} (pool {x['2']['pool_idle_share']:.0%})",
                "≥ 0.95",
            )
        )
    if "longer" in r:
        x = r["longer"]
        out.append(
            (
                f"sweep, 2 workers, {x['trials']} similar trials: wall vs a plain script with ProcessPoolExecutor(2)",
                f"{x['flowork_wall']:.1f} s vs {x['pool_wall']:.1f} s = {x['ratio']:.2f}×",
                "≤ 1.10×",
            )
        )
        out.append(
            (
                f"sweep, 2 workers, similar, {r['similar'].get('trials', 40)} → {x['trials']} trials: "
                "cost of one more trial; fixed cost",
                f"{x['flowork_per_trial_ms']:.0f} ms vs {x['pool_per_trial_ms']:.0f} ms "
                f"= {x['per_trial_ratio']:.2f}×; {x['flowork_fixed_s']:.1f} s vs {x['pool_fixed_s']:.1f} s",
                "",
            )
        )
    return out


def longer(trials: list, short: dict) -> dict:
    """The similar sweep 4x longer, 2 workers: with the 40-trial run, splits each side's wall time into a fixed
    cost (start, imports, stores, exit) and the cost of one more trial."""
    with tempfile.TemporaryDirectory() as d:
        fw = flowork_sweep(trials, 2, Path(d), "longer")[0]
        pw = plain_script(trials, 2)[0]
    n0, n1 = short["trials"], len(trials)
    f_per, p_per = (fw - short[2]["flowork_wall"]) / (n1 - n0), (pw - short[2]["pool_wall"]) / (n1 - n0)
    return {
        "trials": n1,
        "flowork_wall": fw,
        "pool_wall": pw,
        "ratio": fw / pw,
        "flowork_per_trial_ms": 1000 * f_per,
        "pool_per_trial_ms": 1000 * p_per,
        "per_trial_ratio": f_per / p_per,
        "flowork_fixed_s": fw - n1 * f_per,
        "pool_fixed_s": pw - n1 * p_per,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--longer", type=int, default=4, help="also the similar sweep this many times longer (0: no)")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results_sweep.json")))
    args = ap.parse_args()
    report = {}
    for tag, trials in scenarios(args.trials).items():
        row = {}
        with tempfile.TemporaryDirectory() as d:
            for workers in (1, 2):
                fw, fw_busy, fw_scores = flowork_sweep(trials, workers, Path(d), tag)
                pw, pw_busy, pool_scores = plain_script(trials, workers)
                # the same work on both sides: each trial's CV score agrees
                same = max(abs(a - b) for a, b in zip(fw_scores, pool_scores, strict=True))
                row[workers] = {
                    "flowork_wall": fw,
                    "pool_wall": pw,
                    "flowork_idle_share": 1 - fw_busy / (workers * fw),
                    "pool_idle_share": 1 - pw_busy / (workers * pw),
                    "max_score_difference": same,
                }
                if same > 1e-6:
                    raise SystemExit(f"{tag}, {workers} workers: flowork and the pool did different work ({same})")
                print(tag, workers, row[workers], flush=True)
        row["flowork_speedup"] = row[1]["flowork_wall"] / row[2]["flowork_wall"]
        row["pool_speedup"] = row[1]["pool_wall"] / row[2]["pool_wall"]
        row["flowork2_vs_pool2"] = row[2]["flowork_wall"] / row[2]["pool_wall"]
        row["speedup_ratio"] = row["flowork_speedup"] / row["pool_speedup"]
        row["trials"] = len(trials)
        report[tag] = row
        print(tag, {k: round(v, 3) for k, v in row.items() if not isinstance(v, dict)}, flush=True)
    if args.longer:
        report["longer"] = longer(scenarios(args.trials * args.longer)["similar"], report["similar"])
        print("longer", report["longer"], flush=True)
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
