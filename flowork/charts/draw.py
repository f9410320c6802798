"""What to draw for a run and for a sweep, and where it goes: PNGs logged to the run under `charts/`, and the
sweep's HTML report (`<sweep dir>/report.html`, also logged to the sweep's run).

`charts.trials` (flowork/schema.py ChartSet) picks the trials: the champion, each study's best (default), the
`top_k` of each study, or all (those are drawn by the sweep's workers right after each trial). Performance charts
come from the run's `predictions.csv`; explanations from one refit of the trial on the development rows
(`refit.py`), explained on the holdout.
"""

from __future__ import annotations

import html
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from flowork.charts.style import log, safely


def unit_of(cfg: Any) -> str:
    return str(cfg.data.target.get("unit") or cfg.data.target.column)


PERCENT_METRICS, UNITLESS_METRICS = {"mape", "smape"}, {"r2"}


def metric_unit(cfg: Any) -> str:
    """The unit of the sweep's metric on chart axes: the target's unit for error metrics (mae, rmse, and a user's
    own metric unless it is named like a built-in percentage or ratio)."""
    name = str(cfg.metric.name)
    return "%" if name in PERCENT_METRICS else "no unit" if name in UNITLESS_METRICS else unit_of(cfg)


def predictions(tracker: Any, run_id: str) -> pd.DataFrame:
    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per run fills the sweep's log
    with tempfile.TemporaryDirectory() as d:
        path = tracker.client.download_artifacts(run_id, "predictions.csv", d)
        return pd.read_csv(path, index_col=0, parse_dates=True)


def log_charts(tracker: Any, run_id: str, paths: list[Path]) -> None:
    for path in paths:
        safely(f"log {path.name}", partial(tracker.client.log_artifact, run_id, str(path), "charts"))


def run_charts(tracker: Any, run_id: str, out_dir: Path, title: str, unit: str) -> list[Path]:
    """Performance charts of one run from its predictions, logged to the run; the time they took is the run's
    `chart_seconds` metric (what bench/charts.py reads)."""
    from flowork.charts.performance import all_performance

    t0 = time.perf_counter()
    out = safely("predictions", lambda: all_performance(predictions(tracker, run_id), out_dir, title, unit))
    log_charts(tracker, run_id, out)
    seconds = time.perf_counter() - t0
    safely("log chart_seconds", lambda: tracker.log(run_id, metrics={"chart_seconds": seconds}))
    log.info("charts for %s: %d in %.2fs", title, len(out), seconds)
    return out


def explain_trial(cfg: Any, root: str, out_dir: Path, title: str, unit: str) -> list[Path]:
    """Refit the trial's config on the development rows and explain it on the holdout rows."""
    from flowork.charts.explain import explain
    from flowork.charts.refit import holdout_fit

    fit = holdout_fit(cfg, root)
    return explain(fit.model, fit.X, fit.y, out_dir, title, unit)


def composer(cfg: Any, root: str) -> Callable[[list[str]], Any]:
    """compose(overrides) -> a trial's config. Inside the sweeper Hydra is initialised: its own config loader
    composes exactly as the sweep's workers did; elsewhere the project's conf/ is composed afresh."""
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        loader = GlobalHydra.instance().config_loader()
        return lambda overrides: loader.load_sweep_config(cfg, list(overrides))

    def compose(overrides: list[str]) -> Any:
        from hydra import compose as hydra_compose
        from hydra import initialize_config_dir

        with initialize_config_dir(str(Path(root, "conf")), version_base="1.3"):
            return hydra_compose("config", overrides=list(overrides))

    return compose


def charted_rows(rows: list[dict[str, Any]], champion: dict[str, Any] | None, mode: str) -> list[dict[str, Any]]:
    """The leaderboard rows (one per study, best first) whose best trial gets performance + explanations."""
    done = [r for r in rows if r["run_id"] and r["best"] is not None]
    if mode == "champion":
        model = champion["model"] if champion else (done[0]["model"] if done else None)
        return [r for r in done if r["model"] == model]
    return done


def top_trials(storage: Any, row: dict[str, Any], k: int) -> list[Any]:
    """The `k` best completed trials of the row's study with an MLflow run, best first."""
    import optuna
    from optuna.trial import TrialState

    study = optuna.load_study(study_name=row["study"], storage=storage)
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.user_attrs.get("run_id")]
    done.sort(key=lambda t: float(t.value or 0.0), reverse=study.direction.name == "MAXIMIZE")
    return done[:k]


@dataclass
class ChartJob:
    """One run's charts: performance from its predictions, explanations from a refit of its config. Plain data, no
    MLflow client or Hydra (the caller downloads and logs), so a job can be drawn anywhere. (Drawing the jobs in
    a spawned process per core was measured here: slower than one after another on this shared 2-core machine,
    the children's imports outweighing the parallelism.)"""

    run_id: str
    title: str
    out_dir: str
    unit: str
    root: str
    predictions: pd.DataFrame | None  # None: no performance charts (already drawn by the sweep's worker)
    cfg: dict[str, Any] | None  # the trial's resolved config; None: no explanations
    reused: list[str] = field(default_factory=list)  # charts drawn before (charts.trials=all)


def draw_job(job: ChartJob) -> list[str]:
    """Draw one job's charts; each chart that fails is a warning, and the others are still drawn."""
    from flowork.charts.performance import all_performance

    out = [Path(p) for p in job.reused]
    if job.predictions is not None:
        pred = job.predictions
        out += safely("performance", lambda: all_performance(pred, Path(job.out_dir), job.title, job.unit))
    if job.cfg is not None:
        from omegaconf import OmegaConf

        cfg = OmegaConf.create(job.cfg)
        out += safely(
            f"explain {job.title}", lambda: explain_trial(cfg, job.root, Path(job.out_dir), job.title, job.unit)
        )
    return [str(p) for p in out]


def resolved(cfg: Any) -> dict[str, Any]:
    """The config without Hydra's own node, interpolations resolved: plain data, validated again by the refit."""
    from omegaconf import OmegaConf

    keep = [str(k) for k in cfg if k != "hydra"]
    return OmegaConf.to_container(OmegaConf.masked_copy(cfg, keep), resolve=True)  # type: ignore[return-value]


def best_trial_job(
    r: dict[str, Any], tracker: Any, compose: Callable, charts_dir: Path, unit: str, root: str, reuse: bool
) -> ChartJob:
    """Performance (reused from the workers' per-trial charts when charts.trials=all) and explanations of a study's
    best trial."""
    title = f"{r['model']} trial {r['trial']}"
    drawn = charts_dir / "trials" / f"{r['model']}_{r['trial']}"
    reused = [str(p) for p in sorted(drawn.glob("*.png"))] if reuse and drawn.is_dir() else []
    pred = None if reused else safely_value(f"predictions of {title}", lambda: predictions(tracker, r["run_id"]))
    cfg = safely_value(f"config of {title}", lambda: resolved(compose(list(r["overrides"] or []))))
    return ChartJob(r["run_id"], title, str(charts_dir / r["model"]), unit, root, pred, cfg, reused)


def safely_value(name: str, make: Callable[[], Any]) -> Any:
    try:
        return make()
    except Exception as e:  # a config that no longer composes (conf/ edited since) costs its charts only
        log.warning("chart step %s failed: %s: %s", name, type(e).__name__, e)
        return None


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
    compose: Callable[[list[str]], Any] | None = None,
) -> Path:
    """Charts for the sweep, each study's best trial (or only the champion's, or the top k of each study) and the
    champion, gathered into one HTML page; the time they took in `charts/timing.json` and the sweep run's metrics."""
    import optuna

    from flowork.charts import report
    from flowork.charts.sweep import sweep_charts

    t0 = time.perf_counter()
    mode, top_k = str(cfg.charts.trials), int(cfg.charts.get("top_k", 3))
    compose = compose or composer(cfg, root)
    metric, unit = str(cfg.metric.name), unit_of(cfg)
    charts_dir = sweep_dir / "charts"
    studies = [optuna.load_study(study_name=r["study"], storage=storage) for r in rows]
    note = ""
    if mode == "all":
        note = (
            f"<p>Every trial's charts: its MLflow run (<code>charts/</code>) and <code>{charts_dir}/trials/</code>.</p>"
        )
    charted = charted_rows(rows, champion, mode)
    jobs = [best_trial_job(r, tracker, compose, charts_dir, unit, root, reuse=mode == "all") for r in charted]
    extra: dict[str, list[tuple[Any, int]]] = {}  # charts.trials=top: each study's runners-up, performance only
    if mode == "top":
        for r in charted:
            for t in top_trials(storage, r, top_k)[1:]:
                title, run_id = f"{r['model']} trial {t.number}", t.user_attrs["run_id"]
                pred = safely_value(f"predictions of {title}", partial(predictions, tracker, run_id))
                out_dir = charts_dir / "trials" / f"{r['model']}_{t.number}"
                extra.setdefault(r["model"], []).append((t, len(jobs)))
                jobs.append(ChartJob(run_id, title, str(out_dir), unit, root, pred, None))
    sweep_pngs = sweep_charts(rows, studies, charts_dir / "sweep", metric, metric_unit(cfg), int(cfg.get("seed", 0)))
    if sweep_run:  # the sweep's own charts go to its run, with or without the HTML page (charts.report)
        log_charts(tracker, sweep_run, sweep_pngs)
    charts_of = [[Path(p) for p in draw_job(job)] for job in jobs]
    for job, paths in zip(jobs, charts_of, strict=True):
        log_charts(tracker, job.run_id, [p for p in paths if str(p) not in job.reused])
    per_model = {r["model"]: charts_of[k] for k, r in enumerate(charted)}
    sections = [("Sweep", report.table_html(rows, metric) + note, sweep_pngs)]
    if champion is not None and champion["model"] in per_model:
        charts = per_model[champion["model"]]
        promoted = champion.get("alias", "champion") is not None  # best.yaml of a sweep before `promotion`: it was
        log_charts(tracker, champion["champion_run_id"], charts)
        text = (
            f"<p>{champion['model']} trial {champion['trial']}: CV {metric} {champion['cv']:.4f}, holdout {metric} "
            f"{champion['holdout']:.4f}; registered as <code>{champion['model_uri']}</code> (version "
            f"{champion['version']}{'' if promoted else ', not champion: ' + html.escape(champion['promotion'])}). "
            "Explanations: the trial refit on the development rows, on the holdout.</p>"
        )
        title = "Champion" if promoted else "Best of the sweep"
        sections.append((f"{title}: {champion['model']} (trial {champion['trial']})", text, charts))
    for r in rows:
        if r["model"] not in per_model:
            continue
        if champion is not None and r["model"] == champion["model"]:
            text, charts = "<p>The champion: its charts are above.</p>", []
        else:
            text, charts = "", per_model[r["model"]]
        sections.append((f"Best {r['model']} trial ({r['trial']})", text, charts))
        for t, k in extra.get(r["model"], []):
            sections.append((f"{r['model']} trial {t.number} (CV {metric} {t.value:.4f})", "", charts_of[k]))
    seconds = time.perf_counter() - t0
    page = sweep_dir / "report.html"
    meta = f"{len(rows)} studies, metric {metric}, charts.trials={mode}; charts drawn in {seconds:.1f} s"
    if not cfg.charts.get("report", True):
        log.info("charts drawn in %.1f s (charts.report=false: no HTML page)", seconds)
    elif not safely("report", lambda: report.write(page, f"flowork sweep {sweep}", meta, sections)):
        return page  # the warning says why; the sweep itself has finished
    safely("timing", lambda: write_timing(charts_dir / "timing.json", mode, seconds))
    if sweep_run:
        if page.exists():
            safely("log report", lambda: tracker.client.log_artifact(sweep_run, str(page)))
        safely("log chart_seconds", lambda: tracker.log(sweep_run, metrics={"chart_seconds": seconds}))
    return page


def write_timing(path: Path, mode: str, seconds: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"mode": mode, "report_seconds": seconds}))
    return path
