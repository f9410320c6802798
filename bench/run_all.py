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
    ("accuracy", ["accuracy.py", "--horizons", "1,7"]),  # each horizon is a full `make run` (~2 min here)
    ("sweep", ["sweep_parallel.py"]),
    ("ray", ["ray_vs_joblib.py", "--repeat", "1", "--trials", "2"]),  # 10 trials a launcher: the 20-minute budget
    ("serving", ["serving.py"]),
    ("overhead", ["overhead.py", "--repeat", "5"]),  # xgb fits move ±2% between runs: 5 pairs
    ("tracking", ["tracking.py"]),
]


def machine() -> str:
    import os

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def table(results: dict) -> str:
    """One markdown table: each benchmark module renders its own rows (it knows its measures and targets)."""
    import importlib

    rows = [("measure", "flowork", "baseline / target")]
    for name, cmd in STEPS:
        if name in results:
            rows += importlib.import_module(Path(cmd[0]).stem).rows(results[name])
    lines = ["| " + " | ".join(rows[0]) + " |", "|---|---|---|"] + ["| " + " | ".join(x) + " |" for x in rows[1:]]
    return "\n".join(lines)


def main() -> None:
    results: dict = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "seconds": {}}
    start = time.perf_counter()
    for name, cmd in STEPS:
        t0 = time.perf_counter()
        out = HERE / f"results_{name}.json"
        done = subprocess.run([sys.executable, *cmd, "--out", str(out)], cwd=HERE)
        if done.returncode == 0:
            results[name] = json.loads(out.read_text())
        results["seconds"][name] = round(time.perf_counter() - t0)
        print(f"bench {name}: {'ok' if done.returncode == 0 else 'FAILED'} in {results['seconds'][name]}s", flush=True)
    minutes = (time.perf_counter() - start) / 60
    failed = [name for name, _ in STEPS if name not in results]
    (HERE / "results.json").write_text(json.dumps(results, indent=2))
    (HERE / "RESULTS.md").write_text(
        f"Measured on {results['machine']}, {results['date']}; `make bench` took {minutes:.1f} min"
        + (f" (FAILED: {', '.join(failed)})" if failed else "")
        + f".\n\n{table(results)}\n"
    )
    print((HERE / "RESULTS.md").read_text())


if __name__ == "__main__":
    main()
