"""`make bench`: every benchmark in one run, then bench/results.json and bench/RESULTS.md (the table the README
shows). Each benchmark measures flowork and its baseline side by side in the same run; the ratios are the result."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
STEPS = [
    ("startup", ["startup.py", "--repeat", "1"]),
    ("accuracy", ["accuracy.py"]),
    ("sweep", ["sweep_parallel.py"]),
    ("serving", ["serving.py"]),
    ("overhead", ["overhead.py", "--repeat", "3"]),
]


def machine() -> str:
    import os

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def table(r: dict) -> str:
    s, sv, o, st = r.get("sweep", {}), r.get("serving", {}), r.get("overhead", {}), r.get("startup", {})
    rows = [("measure", "flowork", "baseline / target")]
    if st:
        rows += [
            ("`python -m flowork --help`", f"{st['help_s']:.2f} s", "≤ 1 s"),
            ("command → first trial, model=ridge", f"{st['first_trial_s[ridge]']:.2f} s", "≤ 4 s"),
        ]
    for tag in ("similar", "uneven"):
        if tag in s:
            x = s[tag]
            rows.append(
                (
                    f"sweep, 2 workers, {tag} trials: wall vs plain ProcessPoolExecutor(2)",
                    f"{x['flowork2_vs_pool2']:.2f}×",
                    "≤ 1.10×",
                )
            )
            rows.append(
                (
                    f"sweep, {tag}: 2-worker speedup (flowork / pool)",
                    f"{x['flowork_speedup']:.2f} / {x['pool_speedup']:.2f} = {x['speedup_ratio']:.2f}",
                    "≥ 0.95",
                )
            )
    if sv:
        rows.append(
            (
                "serving p50, concurrency 1 (vs bare estimator)",
                f"{sv['flowork']['c1']['p50_ms']:.1f} ms ({sv['p50_ratio_c1']:.2f}×)",
                f"{sv['bare']['c1']['p50_ms']:.1f} ms; ≤ 1.10×",
            )
        )
        rows.append(
            (
                "serving throughput, concurrency 16 (vs bare)",
                f"{sv['flowork']['c16']['throughput_rps']:.0f} req/s ({sv['throughput_ratio_c16']:.2f}×)",
                f"{sv['bare']['c16']['throughput_rps']:.0f} req/s; ≥ 0.90×",
            )
        )
    if o:
        ov = o["overhead"]
        rows.append(
            (
                "40 trials sequential vs plain script",
                f"{ov['ratio']:.2f}× ({ov['per_trial_overhead_ms']:.0f} ms/trial)",
                "≤ 1.10×",
            )
        )
        pt = o["per_trial"]
        rows.append(
            (
                "per-trial cost, trivial model, " + " / ".join(str(p["trials"]) for p in pt) + " trials",
                " / ".join(f"{p['median_trial_ms']:.0f} ms" for p in pt),
                "flat (≤ 1.2× growth)",
            )
        )
        for ls in o["long_series"]:
            rows.append(
                (f"one ridge job, {ls['rows']} rows", f"{ls['wall_s']:.1f} s, peak {ls['peak_rss_mb']:.0f} MB", "")
            )
    for h, acc in r.get("accuracy", {}).items():
        for name, mae in acc.items():
            rows.append((f"holdout MAE {h}: {name}", f"{mae:.2f} °C", ""))
    lines = ["| " + " | ".join(rows[0]) + " |", "|---|---|---|"] + ["| " + " | ".join(x) + " |" for x in rows[1:]]
    return "\n".join(lines)


def main() -> None:
    results = {"machine": machine(), "date": time.strftime("%Y-%m-%d")}
    for name, cmd in STEPS:
        t0 = time.perf_counter()
        out = HERE / f"results_{name}.json"
        done = subprocess.run([sys.executable, *cmd, "--out", str(out)], cwd=HERE)
        if done.returncode == 0:
            results[name] = json.loads(out.read_text())
        print(
            f"bench {name}: {'ok' if done.returncode == 0 else 'FAILED'} in {time.perf_counter() - t0:.0f}s", flush=True
        )
    (HERE / "results.json").write_text(json.dumps(results, indent=2))
    (HERE / "RESULTS.md").write_text(f"Measured on {results['machine']}, {results['date']}.\n\n{table(results)}\n")
    print((HERE / "RESULTS.md").read_text())


if __name__ == "__main__":
    main()
