"""Pick the best trial of a sweep across its model studies, refit it, register it as `champion`; the leaderboard.

Used at the end of every sweep and by `flowork select --sweep NAME`.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from flowork.errors import FloworkError
from flowork.tracking import redact_overrides

log = logging.getLogger("flowork.select")
ALIAS = "champion"


def study_rows(storage: Any, study_names: list[str]) -> list[dict[str, Any]]:
    """One leaderboard row per study: best CV metric ± std, its holdout, trial counts, time."""
    import optuna
    from optuna.trial import TrialState

    from flowork.studies import counted

    rows = []
    for name in study_names:
        study = optuna.load_study(study_name=name, storage=storage)
        trials = [t for t in study.get_trials(deepcopy=False) if counted(t)]
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        best = None
        if done:
            pick = min if study.direction.name == "MINIMIZE" else max
            best = pick(done, key=lambda t: float(t.value or 0.0))
        rows.append(
            {
                "model": name.split("/", 1)[-1],
                "study": name,
                "direction": study.direction.name.lower(),
                "best": best.value if best else None,
                "std": best.user_attrs.get("std") if best else None,
                "holdout": best.user_attrs.get("holdout") if best else None,
                "trial": best.number if best else None,
                "params": best.params if best else {},
                "overrides": best.user_attrs.get("overrides") if best else None,
                "run_id": best.user_attrs.get("run_id") if best else None,
                "ok": len(done),
                "failed": sum(t.state == TrialState.FAIL for t in trials),
                "pruned": sum(t.state == TrialState.PRUNED for t in trials),
                "seconds": sum(t.user_attrs.get("seconds", 0.0) for t in trials),
            }
        )
    ranked = [r for r in rows if r["best"] is not None]
    sign = 1 if (ranked and ranked[0]["direction"] == "minimize") else -1
    ranked.sort(key=lambda r: sign * r["best"])
    return ranked + [r for r in rows if r["best"] is None]


def leaderboard(plan: Any, storage: Any) -> list[dict[str, Any]]:
    """Every study of the sweep: a resume that names only some of its models still ranks (and picks from) them all."""
    from flowork.studies import sweep_studies

    names = [s.name for s in plan.studies]
    return study_rows(storage, names + [n for n in sweep_studies(storage, plan.sweep) if n not in names])


def render(rows: list[dict[str, Any]], metric: str = "metric") -> str:
    """The leaderboard as a markdown table (printed, and written as leaderboard.md)."""

    def num(x: float | None) -> str:
        return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.4f}"

    lines = [
        f"| rank | model | best CV {metric} ± std | holdout {metric} | trials ok / failed / pruned | time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(rows, 1):
        lines.append(
            f"| {i if r['best'] is not None else '-'} | {r['model']} | {num(r['best'])} ± {num(r['std'])} | "
            f"{num(r['holdout'])} | {r['ok']} / {r['failed']} / {r['pruned']} | {r['seconds']:.1f} |"
        )
    return "\n".join(lines)


def write_leaderboard(rows: list[dict[str, Any]], sweep_dir: str, metric: str = "metric") -> None:
    Path(sweep_dir, "leaderboard.md").write_text(render(rows, metric) + "\n")
    shared = [{**r, "overrides": r["overrides"] and redact_overrides(r["overrides"])} for r in rows]
    Path(sweep_dir, "leaderboard.json").write_text(json.dumps(shared, indent=2, default=str))
    try:
        from rich.console import Console
        from rich.markdown import Markdown

        Console(stderr=True).print(Markdown(render(rows, metric)))
    except ImportError:  # pragma: no cover
        print(render(rows, metric))


def champion(
    rows: list[dict[str, Any]],
    *,
    compose: Callable[[list[str]], DictConfig],
    tracker: Any,
    sweep: str,
    parent_run_id: str | None,
    sweep_dir: str,
    model_name: str,
    root: str | None = None,
    promote: str = "better",
) -> dict[str, Any]:
    """Refit the best row's trial (DESIGN §4), log it, register it under `model_name`; the alias `champion` moves
    to it as `promote` says (`promotion`)."""
    import os

    from flowork.run import run

    best = next((r for r in rows if r["best"] is not None), None)
    if best is None:
        raise FloworkError(
            f"sweep {sweep!r} has no completed trial to select",
            fix="run the sweep (or resume it) until at least one trial completes",
        )
    overrides = [o for o in best["overrides"] if not o.startswith("tracking.log_model=")]
    cfg = compose([*overrides, "tracking.log_model=true"])
    tags = {"flowork.sweep": sweep, "flowork.role": ALIAS, "flowork.source_trial": f"{best['study']}#{best['trial']}"}
    with refit_job(cfg, str(Path(sweep_dir, ALIAS))):
        result = run(cfg, root=root or os.getcwd(), parent_run_id=parent_run_id, extra_tags=tags)
    promoted, why = promotion(tracker.client, model_name, str(result.run_id), promote)
    version = register(tracker, result.model_uri, model_name, tags, alias=promoted)
    summary = {
        "sweep": sweep,
        "model": best["model"],
        "trial": best["trial"],
        "cv": best["best"],
        "cv_std": best["std"],
        "holdout": result.holdout,
        "params": best["params"],
        "overrides": redact_overrides(overrides),
        "trial_run_id": best["run_id"],
        "champion_run_id": result.run_id,
        "registered_model": model_name,
        "version": version,
        "alias": ALIAS if promoted else None,
        "promotion": why,
        "model_uri": f"models:/{model_name}@{ALIAS}" if promoted else f"models:/{model_name}/{version}",
    }
    Path(sweep_dir, "best.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(summary)))
    summary["cfg"] = cfg  # for the charts of the champion (not part of best.yaml)
    log.info(
        "best: %s (trial %s) cv %.4f, holdout %.4f -> %s version %s, %s: %s",
        best["model"],
        best["trial"],
        best["best"],
        result.holdout,
        model_name,
        version,
        f"now {ALIAS}" if promoted else f"not {ALIAS} (set sweep.promote=always to make it)",
        why,
    )
    return summary


# How a run was scored: two runs' CV metrics are comparable only when all of these agree.
EVALUATION = (
    "data.target.column",
    "data.target.horizon",
    "data.freq",
    "data.backtest.folds",
    "data.backtest.min_train",
    "data.holdout",
    "metric.name",
    "metric.direction",
)


def evaluation(run: Any) -> dict[str, str | None]:
    from flowork.data import current_alias

    scored = {key: run.data.params.get(key) for key in EVALUATION}
    if scored["data.freq"]:  # a champion logged with a deprecated alias (H) was evaluated as its current one (h)
        scored["data.freq"] = current_alias(scored["data.freq"])
    scored["data (digest)"] = run.data.tags.get("flowork.data_digest")
    return scored


def promotion(client: Any, model_name: str, run_id: str, promote: str) -> tuple[bool, str]:
    """Whether the model of `run_id` takes the alias from the current champion, and why. With promote=better it does
    only when it beats the champion's CV metric on the same evaluation: a quick sweep of one model, or a sweep
    of another horizon, must not replace a better model that is being served."""
    from mlflow.exceptions import MlflowException

    try:
        current = client.get_model_version_by_alias(model_name, ALIAS)
    except MlflowException as e:
        if e.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}:  # no such model, or no alias yet
            return True, f"{model_name} had no {ALIAS}"
        raise
    if promote == "always":
        return True, f"sweep.promote=always (the {ALIAS} was version {current.version})"
    new = client.get_run(run_id)
    try:
        old = client.get_run(current.run_id)
    except MlflowException:
        return True, f"the run of the {ALIAS} (version {current.version}) no longer exists"
    ours, theirs = evaluation(new), evaluation(old)
    differ = [f"{key} {theirs[key]} -> {ours[key]}" for key in ours if ours[key] != theirs[key]]
    if differ:
        return False, f"the {ALIAS} (version {current.version}) was evaluated otherwise: {', '.join(differ)}"
    metric = f"cv_{ours['metric.name']}"
    mine, its = new.data.metrics.get(metric), old.data.metrics.get(metric)
    if its is None or not math.isfinite(its):
        return True, f"the {ALIAS} (version {current.version}) has no {metric}"
    beats = mine is not None and (mine < its if ours["metric.direction"] == "minimize" else mine > its)
    return beats, f"{metric} {mine:.4f} vs {its:.4f} of the {ALIAS} (version {current.version})"


@contextmanager
def refit_job(cfg: DictConfig, output_dir: str) -> Iterator[None]:
    """The refit as a Hydra job of its own, like each trial: HydraConfig serves the champion's config with
    `<sweep dir>/champion` as its output dir, so a training function that reads HydraConfig behaves in the refit as
    it did in its trial (it failed with "HydraConfig was not set")."""
    from hydra.core.hydra_config import HydraConfig

    hydra = HydraConfig.instance()
    before = hydra.cfg
    if "hydra" in cfg:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        with read_write(cfg.hydra), open_dict(cfg.hydra):
            cfg.hydra.runtime.output_dir = output_dir
            cfg.hydra.job.name = ALIAS
        hydra.set_config(cfg)
    try:
        yield
    finally:
        hydra.cfg = before


def check_model_name(name: str) -> None:
    """The registered model's name, checked before a sweep spends its budget (MLflow checks it only when the
    champion is registered, at the very end)."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_model_name  # MLflow's own rule, whatever its version says

    try:
        _validate_model_name(name)
    except MlflowException as e:
        raise FloworkError(
            f"tracking.model_name {name!r} cannot be registered: {e.message}",
            where="conf/config.yaml, key `tracking.model_name`",
            fix="use a name without '/' or ':', e.g. temperature-forecaster",
        ) from None


def register(tracker: Any, model_uri: str | None, name: str, tags: dict[str, str], alias: bool) -> str:
    """A new version of the registered model `name`; with `alias`, the `champion` alias moves to it."""
    import mlflow

    if model_uri is None:
        raise FloworkError("the champion run logged no model", fix="keep tracking.log_model=true for selection")
    mlflow.set_tracking_uri(tracker.uri)
    version = mlflow.register_model(model_uri, name, tags=tags)
    if alias:
        tracker.client.set_registered_model_alias(name, ALIAS, version.version)
    return str(version.version)
