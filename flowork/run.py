"""One job: load -> clean/build features -> backtest -> holdout -> track. `run(cfg)` returns the objective.

Pure with respect to Hydra: tests call `run(cfg)` with a composed config; `__main__` only hands Hydra's config here.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from flowork import backtest, data, instantiate
from flowork.errors import FloworkError, call_user_code, function_name
from flowork.features import Pipeline, leakage_check, make_target


@dataclass
class JobResult:
    objective: float  # mean validation metric over the folds
    std: float
    holdout: float
    run_id: str | None
    model_uri: str | None = None  # the logged pyfunc (models:/...), when tracking.log_model


@dataclass
class TrialContext:
    """Set by the sweeper around one trial job: where its MLflow run hangs, and what it reports back."""

    parent_run_id: str
    tags: dict[str, str] = field(default_factory=dict)
    reporter: Callable[[float, int], None] | None = None  # Optuna's report + prune check
    run_id: str | None = None  # filled in by run() as soon as the MLflow run exists
    result: JobResult | None = None


TRIAL: ContextVar[TrialContext | None] = ContextVar("flowork_trial", default=None)
LIMITED: dict[str, tuple[int, int]] = {}  # the thread limit last applied by threadpoolctl: (limit, len(sys.modules))


class Reporter:
    """Passed as `reporter` to a training function that declares it: `reporter(value, step)` reports an
    intermediate score (lower or higher is better as the metric's direction says).

    In a sweep with a pruner, values go to Optuna at step `fold * STRIDE + step`, so trials are compared at the same
    fold and step, and a hopeless trial stops with optuna.TrialPruned; elsewhere (single runs, the holdout and
    serving fits) it does nothing, so training code never has to check for it.
    """

    STRIDE = 100_000

    def __init__(self, sink: Callable[[float, int], None] | None) -> None:
        self.sink, self.offset, self.active = sink, 0, False

    def start(self, fold: Any) -> None:
        self.active = fold.name.startswith("fold")
        self.offset = int(fold.name.removeprefix("fold")) * self.STRIDE if self.active else 0

    def __call__(self, value: float, step: int) -> None:
        if self.sink is not None and self.active:
            self.sink(float(value), self.offset + int(step))


def limit_threads(n: int) -> None:
    """One BLAS/OpenMP/torch thread per job by default: two workers on two cores oversubscribe otherwise
    (xgboost ran 20-40x slower here). The env vars cover libraries not imported yet."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[var] = str(n)
    # threadpoolctl scans every loaded shared library (~4 ms): again only when the limit or the set of imported
    # modules (a proxy for newly loaded native libraries) changed since the last trial in this process
    applied = (n, len(sys.modules))
    if LIMITED.get("threads") == applied:
        return
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        pass
    LIMITED["threads"] = (n, len(sys.modules))


def choices_of(cfg: DictConfig) -> dict[str, str]:
    """Chosen option per config group (model -> xgb), for error messages that name the YAML file."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return {k: str(v) for k, v in HydraConfig.get().runtime.choices.items() if v is not None}
    except (ValueError, ImportError):  # not running under Hydra (tests calling run() directly)
        return {}


def project_root(cfg: DictConfig) -> str:
    try:
        from hydra.core.hydra_config import HydraConfig

        return str(HydraConfig.get().runtime.cwd)
    except ValueError:
        return os.getcwd()


def metric_of(target: str, where: str) -> Callable[[Any, Any], float]:
    """The metric `metric(y_true, y_pred) -> float` of `metric._target_`: its signature checked now, its value on
    every call."""
    where = f"{where}, key `metric._target_`"
    metric = instantiate.locate(target, where=where)
    instantiate.check_call(metric, 2, {}, where=where)

    def score(y_true: Any, y_pred: Any) -> float:
        value = metric(y_true, y_pred)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise FloworkError(
                f"the metric `{function_name(metric)}` returned {value!r}, not a number",
                where=where,
                fix="return one float from metric(y_true, y_pred)",
            ) from None

    return score


def pipeline_of(features: Any, where: str) -> Pipeline:
    """The user's feature functions of a `features` node (config or plain dict) bound to their arguments."""
    clean = features["clean"]
    return Pipeline(
        clean=instantiate.bind(clean, where=f"{where}, key `features.clean`") if clean is not None else None,
        build=instantiate.bind(features["build"], where=f"{where}, key `features.build`"),
        where=where,
    )


def run(
    cfg: DictConfig,
    *,
    root: str | None = None,
    parent_run_id: str | None = None,
    extra_tags: dict[str, str] | None = None,
) -> JobResult:
    """Run one job. `root` is the project directory (default: Hydra's original working directory)."""
    choices = choices_of(cfg)
    try:
        return run_job(cfg, choices, root, parent_run_id, extra_tags)
    except FloworkError as e:
        e.name_options(choices)  # conf/data/<option>.yaml -> conf/data/seattle_weather.yaml
        raise


def run_job(
    cfg: DictConfig,
    choices: dict[str, str],
    root: str | None,
    parent_run_id: str | None,
    extra_tags: dict[str, str] | None,
) -> JobResult:
    from flowork.schema import validate

    cfg = validate(cfg, choices)
    root = root or project_root(cfg)
    if cfg.threads < 1:
        raise FloworkError(
            f"threads must be >= 1, got {cfg.threads}",
            where="conf/config.yaml, key `threads`",
            fix="set threads to the number of BLAS/torch/xgboost threads each job may use (1 with parallel workers)",
        )
    limit_threads(cfg.threads)
    instantiate.ensure_importable(root)
    where_features = f"conf/features/{choices.get('features', '<option>')}.yaml"
    where_model = f"conf/model/{choices.get('model', '<option>')}.yaml, key `model.train`"

    # the config as plain values, once (~2 ms a trial): the user's functions are bound from it, and it is logged
    values: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # type: ignore[assignment]
    # Bind every user function first: a wrong _target_ or key fails before data is read or a run is created.
    pipeline = pipeline_of(values["features"], where_features)
    params: dict[str, Any] = values["model"]["params"]
    train_fn = instantiate.bind(values["model"]["train"], where=where_model, call_args=2)
    instantiate.check_call(train_fn, 2, params, where=where_model)
    metric = metric_of(cfg.metric._target_, f"conf/metric/{choices.get('metric', '<option>')}.yaml")

    reporter = None
    if "reporter" in inspect.signature(train_fn).parameters:
        trial_ctx = TRIAL.get()
        reporter = Reporter(trial_ctx.reporter if trial_ctx else None)
        params = {**params, "reporter": reporter}

    train = functools.partial(train_fn, **params)  # train(X, y); still names the user's function (errors)

    from flowork.tracking import flatten, git_state, redact, tracker_for

    tracker = tracker_for(cfg.tracking, root)
    resolved = redact(values)  # a copy: `params` and the bound functions keep the real values
    tags = {"flowork.model": cfg.model.name, **git_state(os.path.abspath(root)), **(extra_tags or {})}
    trial = TRIAL.get()
    name = str(cfg.model.name)
    if trial is not None:
        parent_run_id, tags = trial.parent_run_id, {**tags, **trial.tags}
        name = f"{name} #{trial.tags.get('flowork.trial', '')}"
    with tracker.run(name, tags, parent_run_id) as run_id:
        if trial is not None:
            trial.run_id = run_id
        tracker.log(run_id, params=flatten(resolved))
        tracker.log_text(run_id, to_yaml(resolved), "config.yaml")
        result = evaluate(cfg, root, pipeline, train, metric, tracker, run_id, where_model, reporter)
    if trial is not None:
        trial.result = result
    return result


def evaluate(cfg, root, pipeline, train, metric, tracker, run_id, where_model, reporter=None) -> JobResult:
    t0 = time.perf_counter()
    data_cfg = cfg.data  # each read of a typed config node costs ~20 us: read once (a sweep runs this every trial)
    target, horizon = str(data_cfg.target.column), int(data_cfg.target.horizon)
    raw, data_key = data.load_with_digest(data_cfg, root)  # the key identifies the data for the per-process caches
    tracker.log_dataset(run_id, raw, str(data_cfg.uri), target, data_key)
    features_key = (data_key, tuple(map(str, raw.columns)), step_key(pipeline.clean), step_key(pipeline.build))
    clean, X = built(pipeline, raw, features_key)
    if len(X) == 0 and target in clean and clean[target].notna().any():  # no target value at all: said below
        raise FloworkError(
            f"features.build returned no rows from the {len(clean)} rows after cleaning (lags and trailing windows "
            "need earlier rows; rows with missing values may be dropped too)",
            where="conf/features/<option>.yaml, key `features.build`",  # run() names the option
            fix="use more data, or fewer lags and shorter windows",
        )
    if features_key not in CHECKED and cfg.features.leakage_check:
        leakage_check(raw, pipeline, X)
        CHECKED.add(features_key)  # same data + same feature config = same verdict: once per worker process
    y, label_time = make_target(clean, target, horizon)
    y, label_time = y.reindex(X.index), label_time.reindex(X.index)
    if not label_time.notna().any() and horizon >= len(clean):
        raise FloworkError(
            f"data.target.horizon={horizon} is longer than the data ({len(clean)} rows after cleaning): no row has "
            f"a target value {horizon} steps later",
            where="conf/data/<option>.yaml, key `data.target.horizon`",
            fix="forecast fewer steps ahead (the horizon counts rows of data.freq, e.g. 24 = a day of hourly rows), "
            "or use more data",
        )
    if not label_time.notna().any():
        raise FloworkError(
            f"the target column {target!r} has no value to learn from "
            f"({int(clean[target].notna().sum())} of {len(clean)} rows after cleaning)",
            where="conf/data/<option>.yaml, key `data.target.column`",
            fix="check the data file's target column and what features.clean does to it",
        )
    backtest_cfg = data_cfg.backtest
    times = backtest.observed_times(raw, target)
    p = backtest.plan(times, backtest_cfg.folds, backtest_cfg.min_train, data_cfg.holdout, horizon)
    fold_list = backtest.folds(X.index, label_time, p)
    results = backtest.run_folds(
        train, X, y, fold_list, metric, where_model, on_fold=reporter.start if reporter else None
    )
    cv, hold = results[:-1], results[-1]
    scores = pd.Series([r.score for r in cv])
    mean, std = float(scores.mean()), float(scores.std(ddof=0))
    name = cfg.metric.name
    metrics = {f"cv_{name}_{r.name}": r.score for r in cv}
    metrics |= {f"cv_{name}": mean, f"cv_{name}_std": std, f"holdout_{name}": hold.score}
    metrics |= {"fit_seconds": sum(r.seconds for r in results), "job_seconds": time.perf_counter() - t0}
    tracker.log(run_id, metrics={k: v for k, v in metrics.items() if math.isfinite(v)})
    tracker.log_csv(run_id, predictions(results, y), "predictions.csv")
    if not math.isfinite(mean):
        raise FloworkError(
            f"the validation {name} is {mean}: the model predicted NaN/inf or the metric is undefined on this data",
            where=where_model,
            fix="check the model's predictions and the metric (mape is undefined when the target can be 0)",
        )
    model_uri = (
        log_final_model(cfg, root, raw, clean, pipeline, train, X, y, tracker, run_id, where_model)
        if cfg.tracking.log_model
        else None
    )
    return JobResult(mean, std, hold.score, run_id, model_uri)


def log_final_model(cfg, root, raw, clean, pipeline, train, X, y, tracker, run_id, where: str) -> str:
    """Refit on every labelled row (DESIGN §4: the serving fit) and log it as a pyfunc that takes raw rows."""
    from flowork.backtest import FIT_FIX
    from flowork.serving import Forecaster, ForecastSpec, labels_read, log_forecaster, required_history

    labelled = y.notna().to_numpy()
    what = f"the training function (`{function_name(train)}`), refit on all {int(labelled.sum())} labelled rows,"
    model = call_user_code(what, train, X[labelled], y[labelled], where=where, fix=FIT_FIX)
    # a request's rows end with an observed target, as the data's do before rows of future values (exogenous
    # columns known ahead, a target not recorded yet): the example request and the label checks are taken there
    observed = raw[cfg.data.target.column].last_valid_index()
    raw, X = raw.loc[:observed], X.loc[:observed]
    history = required_history(raw, pipeline, X)
    spec = ForecastSpec(
        time_column=cfg.data.time_column,
        time_format=cfg.data.time_format,
        time_zone=cfg.data.time_zone,
        target=cfg.data.target.column,
        horizon=cfg.data.target.horizon,
        freq=cfg.data.freq or data.spacing(clean.index),
        columns=list(map(str, raw.columns)),
        history=history,
        features=list(map(str, X.columns)),
        ranges={
            str(c): (float(raw[c].min()), float(raw[c].max()))
            for c in raw.columns
            if pd.api.types.is_numeric_dtype(raw[c]) and raw[c].notna().any()
        },
        labels=labels_read(raw, pipeline, history),
    )
    return log_forecaster(tracker, run_id, Forecaster(pipeline, model, spec), raw.tail(history), root)


CHECKED: set[tuple[Any, ...]] = set()  # features keys (data, clean, build) that passed the leakage check
BUILT: OrderedDict[tuple[Any, ...], tuple[pd.DataFrame, pd.DataFrame]] = OrderedDict()  # features key -> frames


def step_key(step: Callable[..., Any] | None) -> Any:
    """A bound feature function as a cache key: the function itself (held, so its address is never reused by another)
    and its repr, which names its arguments: the features config, at no conversion cost."""
    return None if step is None else (getattr(step, "func", step), repr(step))


def built(pipeline: Pipeline, raw: pd.DataFrame, key: tuple[Any, ...]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(cleaned rows, features) of the data, built once per process for the same data and feature functions (the
    contract makes them stateless): a study's trials that sample only model params share them (~3 ms a trial here,
    far more on long series). The last two are kept; each trial gets copies, as it got frames of its own."""
    if key not in BUILT:
        clean = pipeline.cleaned(raw)
        BUILT[key] = clean, pipeline.features(clean)
        while len(BUILT) > 2:
            BUILT.popitem(last=False)
    BUILT.move_to_end(key)
    clean, X = BUILT[key]
    return clean.copy(), X.copy()


def to_yaml(container: dict[str, Any]) -> str:
    """The resolved config as YAML through libyaml: OmegaConf.to_yaml rebuilds a DictConfig first and costs ~13 ms
    a trial here, this ~0.5 ms."""
    import yaml

    return yaml.dump(
        container, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False, allow_unicode=True
    )


def predictions(results, y: pd.Series) -> pd.DataFrame:
    """Every fold's and the holdout's predictions next to the truth (charts and `flowork report` read them). Built
    from arrays: a frame per fold and a concat cost ~1 ms a trial."""
    index = results[0].predictions.index.append([r.predictions.index for r in results[1:]])
    return pd.DataFrame(
        {
            "fold": np.repeat([r.name for r in results], [len(r.predictions) for r in results]),
            "y_true": y.reindex(index).to_numpy(),
            "y_pred": np.concatenate([np.asarray(r.predictions) for r in results]),
        },
        index=index,
    )
