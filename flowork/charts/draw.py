"""What to draw for a run and for a sweep, and where it goes: PNGs logged to the run under `charts/`, and the
sweep's HTML report (`<sweep dir>/report.html`, also logged to the sweep's run)."""

from __future__ import annotations

import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from flowork.charts.style import log, safely


def unit_of(cfg: Any) -> str:
    return str(cfg.data.target.get("unit") or cfg.data.target.column)


def predictions(tracker: Any, run_id: str) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as d:
        path = tracker.client.download_artifacts(run_id, "predictions.csv", d)
        return pd.read_csv(path, index_col=0, parse_dates=True)


def run_charts(
    tracker: Any,
    run_id: str,
    out_dir: Path,
    title: str,
    unit: str,
    *,
    model_uri: str | None = None,
    cfg: Any = None,
    root: str | None = None,
) -> list[Path]:
    """Performance charts from the run's predictions; with its logged model, the explanations too."""
    from flowork.charts.performance import all_performance

    t0 = time.perf_counter()
    out = safely("predictions", lambda: all_performance(predictions(tracker, run_id), out_dir, title, unit))
    if model_uri is not None and cfg is not None:
        out += safely("explain", lambda: explain_logged(model_uri, cfg, root or ".", out_dir, title, unit))
    for path in out:
        safely(f"log {path.name}", partial(tracker.client.log_artifact, run_id, str(path), "charts"))
    log.info("charts for %s: %d in %.2fs", title, len(out), time.perf_counter() - t0)
    return out


def explain_logged(model_uri: str, cfg: Any, root: str, out_dir: Path, title: str, unit: str) -> list[Path]:
    """Explain the logged model on the holdout rows of its own data and features."""
    import mlflow

    from flowork import backtest, data
    from flowork.charts.explain import explain
    from flowork.features import make_target

    forecaster = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    raw = data.load(cfg.data, root)
    clean = forecaster.pipeline.cleaned(raw)
    X = forecaster.pipeline.features(clean)
    y, _ = make_target(clean, cfg.data.target.column, cfg.data.target.horizon)
    y = y.reindex(X.index)
    p = backtest.plan(
        raw.index, cfg.data.backtest.folds, cfg.data.backtest.min_train, cfg.data.holdout, cfg.data.target.horizon
    )
    rows = (X.index >= p.holdout_start) & y.notna().to_numpy()
    return explain(forecaster.model, X[rows], y[rows], out_dir, title, unit)


def sweep_report(
    *,
    tracker: Any,
    storage: Any,
    rows: list[dict[str, Any]],
    sweep: str,
    sweep_dir: Path,
    sweep_run: str | None,
    champion: dict[str, Any] | None,
    cfg: Any,
    root: str,
) -> Path:
    """Charts for the sweep, each study's best trial and the champion, gathered into one HTML page."""
    import optuna

    from flowork.charts import report
    from flowork.charts.sweep import sweep_charts

    metric, unit = str(cfg.metric.name), unit_of(cfg)
    charts_dir = sweep_dir / "charts"
    studies = [optuna.load_study(study_name=r["study"], storage=storage) for r in rows]
    sections = [
        ("Sweep", report.table_html(rows, metric), sweep_charts(rows, studies, charts_dir / "sweep", metric, unit))
    ]
    if champion is not None:
        title = f"Champion: {champion['model']} (trial {champion['trial']})"
        charts = run_charts(
            tracker,
            champion["champion_run_id"],
            charts_dir / "champion",
            title,
            unit,
            model_uri=f"models:/{champion['registered_model']}/{champion['version']}",
            cfg=champion.get("cfg", cfg),
            root=root,
        )
        text = (
            f"<p>holdout {metric}: {champion['holdout']:.4f}; registered as "
            f"<code>{champion['model_uri']}</code> (version {champion['version']}).</p>"
        )
        sections.append((title, text, charts))
    for r in rows:
        if r["run_id"]:
            title = f"Best {r['model']} trial ({r['trial']})"
            sections.append((title, "", run_charts(tracker, r["run_id"], charts_dir / r["model"], title, unit)))
    page = report.write(
        sweep_dir / "report.html", f"flowork sweep {sweep}", f"{len(rows)} studies, metric {metric}", sections
    )
    if sweep_run:
        safely("log report", lambda: tracker.client.log_artifact(sweep_run, str(page)))
    return page
