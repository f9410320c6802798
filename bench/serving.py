"""Issue #4 benchmark: latency and throughput of one-origin requests against `mlflow models serve`, flowork's
champion pyfunc (raw rows in: cleaning + features + model) vs the bare estimator served by MLflow on already-built
features. Same fitted model, same machine, loopback only, bounded request counts.

Both servers run side by side (an idle one costs nothing) and the measures alternate between them for `--rounds`
rounds, the first side swapping each round; each figure is the median over rounds. On a machine shared with other
jobs, load that comes and goes then hits both sides alike instead of whichever ran second.

    python bench/serving.py [--requests 320] [--rounds 3] [--out bench/results_serving.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import DATA, ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(model_uri: str, store: str, cwd: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": store, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            model_uri,
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/ping")
            if c.getresponse().status == 200:
                return proc, port
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server did not start")


def load(port: int, body: bytes, concurrency: int, total: int) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    per_worker = total // concurrency

    def worker() -> None:
        nonlocal errors
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)  # keep-alive, like a real client
        for _ in range(per_worker):
            t0 = time.perf_counter()
            conn.request("POST", "/invocations", body, {"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            dt = time.perf_counter() - t0
            with lock:
                latencies.append(dt)
                errors += r.status != 200

    for _ in range(10):  # warm-up
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("POST", "/invocations", body, {"Content-Type": "application/json"})
        c.getresponse().read()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    latencies.sort()
    return {
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
        "throughput_rps": len(latencies) / wall,
        "errors": errors,
        "requests": len(latencies),
    }


def summary(rounds: list[dict[str, float]]) -> dict[str, float]:
    """Median of each figure over the rounds; errors and requests are totals."""
    out = {k: statistics.median(r[k] for r in rounds) for k in ("p50_ms", "p99_ms", "throughput_rps")}
    return out | {k: sum(r[k] for r in rounds) for k in ("errors", "requests")} | {"rounds": rounds}


def rows(r: dict) -> list[tuple[str, str, str]]:
    """This benchmark's lines of the results table: (measure, flowork, baseline / target)."""
    fw, bare = r["flowork"], r["bare"]
    return [
        (
            "serving p50 / p99, concurrency 1 (vs bare estimator)",
            f"{fw['c1']['p50_ms']:.1f} / {fw['c1']['p99_ms']:.1f} ms ({r['p50_ratio_c1']:.2f}×)",
            f"{bare['c1']['p50_ms']:.1f} / {bare['c1']['p99_ms']:.1f} ms; p50 ≤ 1.10×",
        ),
        (
            "serving throughput, concurrency 16 (vs bare); errors",
            f"{fw['c16']['throughput_rps']:.0f} req/s ({r['throughput_ratio_c16']:.2f}×); "
            f"{fw['c1']['errors'] + fw['c16']['errors']} errors",
            f"{bare['c16']['throughput_rps']:.0f} req/s; ≥ 0.90×, 0 errors",
        ),
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=320)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).with_name("results_serving.json")))
    args = ap.parse_args()
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    tmp = tempfile.mkdtemp()
    store = f"sqlite:///{tmp}/m.db"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "flowork",
            "model=ridge",
            f"tracking.uri={store}",
            f"tracking.artifact_location=file://{tmp}/art",
            f"hydra.run.dir={tmp}/run",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    mlflow.set_tracking_uri(store)
    run = mlflow.search_runs(experiment_names=["temperature"], output_format="list")[0]
    model = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")[0]
    champion_uri = model.model_uri
    forecaster = mlflow.pyfunc.load_model(champion_uri).unwrap_python_model()
    raw = pd.read_csv(DATA)
    rows = raw.tail(forecaster.spec.history + 1)
    champion_body = json.dumps({"dataframe_split": rows.to_dict(orient="split", index=False)}).encode()
    X = forecaster.pipeline(raw.set_index(pd.to_datetime(raw["date"])).drop(columns="date").rename_axis("date"))
    with mlflow.start_run():
        bare = mlflow.sklearn.log_model(
            forecaster.model,
            name="bare",
            signature=infer_signature(X, forecaster.model.predict(X)),
            pip_requirements=["scikit-learn", "pandas"],
        )
    bare_body = json.dumps({"dataframe_split": X.tail(1).to_dict(orient="split", index=False)}).encode()

    sides = {"bare": (bare.model_uri, bare_body), "flowork": (champion_uri, champion_body)}
    procs, ports = {}, {}
    runs: dict[str, dict[str, list[dict[str, float]]]] = {name: {"c1": [], "c16": []} for name in sides}
    load_avg = [os.getloadavg()[0]]
    try:
        for name, (uri, _) in sides.items():
            procs[name], ports[name] = serve(uri, store, tmp)
        for r in range(args.rounds):
            order = list(sides) if r % 2 == 0 else list(reversed(sides))
            for c in (1, 16):
                for name in order:
                    runs[name][f"c{c}"].append(load(ports[name], sides[name][1], c, args.requests))
            load_avg.append(os.getloadavg()[0])
            print(f"round {r + 1}/{args.rounds}, load {load_avg[-1]:.2f}", flush=True)
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(timeout=20)
    report: dict = {name: {c: summary(rs) for c, rs in per_c.items()} for name, per_c in runs.items()}
    for name in sides:
        brief = {c: {k: round(v, 1) for k, v in m.items() if k != "rounds"} for c, m in report[name].items()}
        print(name, json.dumps(brief), flush=True)
    report["rounds"] = args.rounds
    report["load_avg_1min"] = load_avg  # before the first round and after each
    report["p50_ratio_c1"] = report["flowork"]["c1"]["p50_ms"] / report["bare"]["c1"]["p50_ms"]
    report["throughput_ratio_c16"] = (
        report["flowork"]["c16"]["throughput_rps"] / report["bare"]["c16"]["throughput_rps"]
    )
    print({k: round(v, 3) for k, v in report.items() if isinstance(v, float)})
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
