"""Per-sweep charts: the leaderboard, each study's optimisation history and parameter importances, and the metric
against trial duration."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from flowork.charts.style import ACCENT, FORECAST, MUTED, PALETTE, figure, safely, save


def scored(study: Any) -> list[Any]:
    """The trials with a CV score: COMPLETE ones. A pruned trial has a value too, but it is the last intermediate
    value its training function reported (e.g. on a validation tail), not a CV result."""
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def leaderboard(rows: list[dict[str, Any]], out: Path, metric: str, unit: str) -> Path:
    ok = [r for r in rows if r["best"] is not None]
    fig, (ax,) = figure(
        f"Leaderboard: best CV {metric} per model (± std over folds) and its holdout {metric}",
        "model",
        f"{metric} ({unit})",
        size=(9, 4),
    )
    x = np.arange(len(ok))
    ax.bar(x, [r["best"] for r in ok], yerr=[r["std"] or 0 for r in ok], color=FORECAST, capsize=4, label="CV")
    ax.scatter(
        x,
        [r["holdout"] if r["holdout"] is not None else np.nan for r in ok],
        color=ACCENT,
        zorder=3,
        label="holdout",
    )
    ax.set_xticks(x, [r["model"] for r in ok])
    ax.legend()
    return save(fig, out)


def history(study: Any, out: Path, metric: str, unit: str) -> Path:
    from matplotlib.ticker import MaxNLocator

    trials = scored(study)
    values = np.array([t.value for t in trials])
    best = np.minimum.accumulate(values) if study.direction.name == "MINIMIZE" else np.maximum.accumulate(values)
    fig, (ax,) = figure(
        f"{study.study_name}: optimisation history", "trial number", f"CV {metric} ({unit})", size=(9, 3.6)
    )
    ax.scatter([t.number for t in trials], values, color=MUTED, s=14, label="trial")
    ax.plot([t.number for t in trials], best, color=FORECAST, label="best so far")
    # trial numbers are integers; min_n_ticks=1: with one trial the axis spans less than 1, and the locator's
    # default (2 ticks at least) falls back to fractional ones there (0.015 steps)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.legend()
    return save(fig, out)


def param_importances(study: Any, out: Path, seed: int) -> Path:
    import optuna

    # fANOVA named explicitly: Optuna's default evaluator changed (PED-ANOVA since Optuna 5), and the chart's title
    # must say what was computed. It costs ~0.4 s on a 30-trial study of 9 parameters (1.2 s on 110 trials; PED-ANOVA
    # ~0.01 s) on this 2-core machine, once per study at the end of the sweep. Seeded: the same sweep, the same chart.
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    importances = optuna.importance.get_param_importances(study, evaluator=evaluator)
    names = list(importances)[::-1]
    fig, (ax,) = figure(
        f"{study.study_name}: hyperparameter importance (fANOVA)",
        "share of the CV metric's variance explained",
        "parameter",
        size=(9, 0.35 * len(names) + 1.6),
    )
    ax.barh([n.replace("model.params.", "") for n in names], [importances[n] for n in names], color=FORECAST)
    return save(fig, out)


def metric_vs_duration(studies: list[Any], out: Path, metric: str, unit: str) -> Path:
    fig, (ax,) = figure(
        f"CV {metric} against trial duration (log scale)", "trial duration (s)", f"CV {metric} ({unit})", size=(9, 4)
    )
    for k, study in enumerate(studies):
        done = scored(study)
        ax.scatter(
            [t.user_attrs.get("seconds", np.nan) for t in done],
            [t.value for t in done],
            s=16,
            color=PALETTE[k % len(PALETTE)],
            label=study.study_name.split("/", 1)[-1],
        )
    ax.set_xscale("log")
    ax.legend()
    return save(fig, out)


def sweep_charts(
    rows: list[dict[str, Any]], studies: list[Any], out_dir: Path, metric: str, unit: str, seed: int = 0
) -> list[Path]:
    out = safely("leaderboard", lambda: leaderboard(rows, out_dir / "leaderboard.png", metric, unit))
    for study in studies:
        name = study.study_name.split("/", 1)[-1]
        out += safely(f"history {name}", partial(history, study, out_dir / f"history_{name}.png", metric, unit))
        if len(scored(study)) >= 3 and study.best_trial.params:  # fewer CV scores: too few to tell parameters apart
            importance = partial(param_importances, study, out_dir / f"importance_{name}.png", seed)
            out += safely(f"importance {name}", importance)
    out += safely(
        "metric_vs_duration", lambda: metric_vs_duration(studies, out_dir / "metric_vs_duration.png", metric, unit)
    )
    return out
