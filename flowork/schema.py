"""Typed schema of the config flowork owns. User nodes (`features.*`, `model.train`, `model.params`) stay free-form.

The YAML files under conf/ are validated against these dataclasses when a job starts (`validate`), so a wrong type or
an unknown direction fails with the key, the value and the allowed values before any data is read.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from flowork.errors import FloworkError


class Direction(StrEnum):
    minimize = "minimize"
    maximize = "maximize"


class Promote(StrEnum):
    better = "better"  # only past a champion evaluated the same way (data, target, horizon, metric, folds) and beaten
    always = "always"  # whatever the champion was


@dataclass
class TargetConfig:
    column: str = MISSING  # the column to forecast
    horizon: int = 1  # steps (rows) ahead of each row's time
    unit: str = ""  # shown on chart axes (°C, kWh ...)


@dataclass
class BacktestConfig:
    folds: int = 5  # consecutive validation windows, each trained on everything before it
    min_train: float = 0.5  # share (<1) or count (>=1) of development rows before the first validation window


@dataclass
class DataConfig:
    uri: str = MISSING  # local path (relative to the project), file://, http(s)://, s3://, gs:// ...
    format: str | None = None  # csv | parquet; None = from the extension
    time_column: str = MISSING
    time_format: str | None = None  # strftime layout of the times (%d/%m/%Y ...); None = ISO or pandas' guess
    time_zone: str | None = None  # times with a UTC offset read on this zone's clock (UTC ...); None = offset dropped
    freq: str | None = None  # pandas offset alias (D, h, MS ...); None = not checked
    target: TargetConfig = field(default_factory=TargetConfig)
    backtest: BacktestConfig = field(default_factory=BacktestConfig)
    holdout: float = 0.2  # final test share of rows, never used for selection
    read_options: dict[str, Any] = field(default_factory=dict)  # passed to pandas.read_csv / read_parquet


@dataclass
class FeaturesConfig:
    clean: Any = None  # node with _target_: user function clean(df, **kw) -> df, or null
    build: Any = MISSING  # node with _target_: user function build(df, **kw) -> X
    leakage_check: bool = True  # rebuild on truncated data and compare (DESIGN §3)


@dataclass
class ModelConfig:
    name: str = MISSING
    train: Any = MISSING  # node with _target_: user function train(X, y, **params) -> model with .predict(X)
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class MetricConfig:
    _target_: str = MISSING  # function (y_true, y_pred) -> float
    name: str = MISSING
    direction: Direction = Direction.minimize


@dataclass
class SearchConfig:
    n_trials: int = 20  # trials per model study
    timeout: float | None = None  # seconds per model study; None = no limit
    space: dict[str, str] = field(default_factory=dict)  # config key -> Hydra sweep expression


@dataclass
class TrackingConfig:
    uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///<project>/mlflow.db
    artifact_location: str | None = None  # None: <project>/mlartifacts (new experiments only)
    experiment: str = "flowork"
    model_name: str = "flowork-forecaster"  # registered model name of the champion
    log_model: bool = True  # log the fitted model of a single run (sweeps log only the champion)


@dataclass
class SweepConfig:
    name: str = MISSING  # re-running with the same name resumes the sweep
    storage: str | None = None  # Optuna storage URL; None = a journal file in the sweep's output dir
    workers: int | None = None  # parallel trial workers; None = the launcher's n_jobs (1 for the basic launcher)
    max_failure_rate: float = 0.5  # stop the sweep when more trials than this share fail (after 4 trials)
    sampler: Any = field(default_factory=lambda: {"_target_": "optuna.samplers.TPESampler", "seed": 0})
    pruner: Any = None  # e.g. {_target_: optuna.pruners.MedianPruner, n_warmup_steps: 2}
    select: bool = True  # register the best model as `champion` when the sweep ends
    promote: Promote = Promote.better  # when the alias moves to it (select.py: `promotion`)


class ChartSet(StrEnum):
    """Which trials of a sweep get charts. Performance = forecast vs actual over the folds and holdout, residuals,
    error per fold; explainability = by model type, on a refit of the trial on the development rows."""

    none = "none"  # no charts and no report
    champion = "champion"  # the champion's performance + explainability, and the sweep's charts
    best = "best"  # also each study's best trial (performance + explainability), drawn when the sweep ends
    top = "top"  # also performance charts of the `top_k` best trials of each study
    all = "all"  # also every trial's performance charts, drawn by its worker (1-4 s of work per trial here)


@dataclass
class ChartsConfig:
    trials: ChartSet = ChartSet.best
    top_k: int = 3  # with trials=top: trials per study that get performance charts (the best also explanations)
    report: bool = True  # <sweep dir>/report.html, one self-contained page per sweep


@dataclass
class FloworkConfig:
    data: DataConfig = field(default_factory=DataConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    metric: MetricConfig = field(default_factory=MetricConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    charts: ChartsConfig = field(default_factory=ChartsConfig)
    threads: int = 1  # BLAS/torch/xgboost threads per job; parallel workers each keep one core busy
    seed: int = 0


def missing_keys(node: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose value is `???`, found without resolving interpolations (which would fail on them)."""
    if isinstance(node, dict):
        return [k for key, v in node.items() for k in missing_keys(v, f"{prefix}{key}.")]
    return [prefix[:-1]] if node == "???" else []


@functools.cache
def schema() -> DictConfig:
    """The typed config, built once per process (~10 ms each time otherwise: once per sweep trial)."""
    return OmegaConf.structured(FloworkConfig)


def validate(cfg: DictConfig, choices: dict[str, str] | None = None) -> DictConfig:
    """Merge `cfg` onto the schema; a type, enum or missing-value error becomes a FloworkError naming the key.

    A config already merged onto the schema is checked as it is: a sweep worker types each study's config once and
    then only assigns the sampled values, which OmegaConf type-checks on assignment (a merge costs ~10 ms a trial)."""
    merged: DictConfig | ListConfig
    if OmegaConf.get_type(cfg) is FloworkConfig:
        merged, missing = cfg, []  # checked for ??? when it was merged; an assignment cannot add one
    else:
        user_cfg = OmegaConf.masked_copy(cfg, [str(k) for k in cfg if k != "hydra"]) if "hydra" in cfg else cfg
        missing = sorted(missing_keys(OmegaConf.to_container(user_cfg, resolve=False)))
        if missing:
            groups = {k.split(".")[0] for k in missing} & set(choices or {})
            raise FloworkError(
                f"config keys still marked ??? (must be filled): {', '.join(missing)}",
                where=", ".join(sorted(f"conf/{g}/{(choices or {})[g]}.yaml" for g in groups)) or None,
                fix=f"set them in the config files under conf/ or on the command line, e.g. {missing[0]}=...",
            )
        try:
            merged = OmegaConf.merge(schema(), user_cfg)  # merge copies its first argument: the cache stays clean
            missing = sorted(OmegaConf.missing_keys(merged))
        except OmegaConfBaseException as e:
            key = getattr(e, "full_key", None) or "?"
            group, chosen = key.split(".")[0], choices or {}
            if isinstance(e, ConfigKeyError):  # a misspelt key: flowork's own sections list theirs
                parent = key.rpartition(".")[0]
                keys = list(OmegaConf.select(schema(), parent) if parent else schema())
                raise FloworkError(
                    f"unknown config key `{key}`: {'`' + parent + '`' if parent else 'the config'} has "
                    f"{', '.join(map(str, keys))}",
                    where=f"the command line, or conf/{group}/{chosen[group]}.yaml" if group in chosen else None,
                    fix="check its spelling",
                ) from None
            # OmegaConf appends the key and the node types it went through: the key is said in `where`
            message = str(getattr(e, "msg", e)).split("\n    full_key:")[0]
            raise FloworkError(
                f"invalid config value: {message}",
                where=f"conf/{group}/{chosen[group]}.yaml, key `{key}`" if group in chosen else f"key `{key}`",
                fix="correct the value in the YAML file or on the command line (key=value)",
            ) from None
    if missing:
        raise FloworkError(
            f"config keys still marked ??? (must be filled): {', '.join(missing)}",
            fix=f"set them in the config files under conf/ or on the command line, e.g. {missing[0]}=...",
        )
    assert isinstance(merged, DictConfig)  # merged onto a dataclass: always a DictConfig
    if merged.sweep.workers is not None and merged.sweep.workers < 1:
        raise FloworkError(
            f"sweep.workers must be at least 1 (or null), got {merged.sweep.workers}",
            where="key `sweep.workers` (conf/config.yaml or the command line)",
            fix="use null for the launcher's n_jobs, or a number of parallel workers such as 2",
        )
    if not 0 <= merged.sweep.max_failure_rate <= 1:
        raise FloworkError(
            f"sweep.max_failure_rate is a share of the trials, between 0 and 1; got {merged.sweep.max_failure_rate}",
            where="key `sweep.max_failure_rate` (conf/config.yaml or the command line)",
            fix="e.g. 0.5 stops the sweep once more than half its trials failed; 1.0 never stops it",
        )
    if merged.charts.top_k < 1:
        raise FloworkError(
            f"charts.top_k must be at least 1, got {merged.charts.top_k}",
            where="key `charts.top_k` (conf/config.yaml or the command line)",
            fix="use e.g. charts.trials=top charts.top_k=3 (the 3 best trials of each study get charts)",
        )
    if merged.data.freq:  # what ${data.freq} gives the user's functions too
        from flowork.data import checked_freq

        merged.data.freq = checked_freq(merged.data.freq)
    return merged


def check_yaml_syntax(conf: Path) -> None:
    """conf/config.yaml exists and every YAML file under conf/ parses. Hydra reports a syntax error as a traceback
    from deep inside its YAML loader; this names the file, line and column instead (~2 ms for the example's 24
    files)."""
    import yaml

    if not (conf / "config.yaml").is_file():
        raise FloworkError(
            f"no {conf / 'config.yaml'}: not a flowork project's root",
            fix="run from the project's root (where conf/ is), or create a project: flowork init DIR",
        )

    class UniqueKeys(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
        """PyYAML keeps the last of two equal keys; OmegaConf refuses them later, with a traceback."""

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} {TWICE}", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep)

    for path in sorted(conf.rglob("*.yaml")):
        where = str(path.relative_to(conf.parent))
        try:
            yaml.load(path.read_text(encoding="utf-8"), Loader=UniqueKeys)
        except UnicodeDecodeError as e:
            raise FloworkError(f"{where} is not UTF-8 text ({e.reason})", where=where, fix="save it as UTF-8") from None
        except yaml.YAMLError as e:
            mark, problem = getattr(e, "problem_mark", None), str(getattr(e, "problem", None) or e)
            at = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise FloworkError(
                f"{where} is not valid YAML: {problem}",
                where=f"{where}{at}",
                fix="keep one of the two (a key appears once in a mapping)"
                if problem.endswith(TWICE)
                else "check the indentation there, quote values that contain ': ' or start with a special character, "
                "and close every bracket and quote",
            ) from None


TWICE = "appears twice in one mapping"


def check_choices(conf: Path, overrides: list[str]) -> None:
    """Each `group=option` (or `group=a,b` in a sweep) on the command line names an existing conf/group/option.yaml.
    Hydra's own error for a missing one ends in its config search path; this one says which options exist."""
    import re

    for override in overrides:
        group, eq, value = override.partition("=")
        if not eq or not re.fullmatch(r"[\w-]+", group) or not (conf / group).is_dir():
            continue  # a plain key (model.params.alpha=1), a +/~ override or hydra/...: not a group choice
        if not re.fullmatch(r"[\w.-]+(,[\w.-]+)*", value) or value == "null":
            continue  # sweep grammar (choice(...), glob(...)), or null (no option): Hydra checks it
        available = sorted(p.stem for p in (conf / group).glob("*.yaml"))
        for option in value.split(","):
            if option not in available:
                add = "; or add one: flowork add-model NAME --like ridge" if group == "model" else ""
                raise FloworkError(
                    f"no {group} option {option!r}: conf/{group}/{option}.yaml does not exist",
                    where=f"the command line, `{override}`",
                    fix=f"use one of: {', '.join(available)}{add}",
                )
