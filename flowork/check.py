"""`flowork check`: everything a project's configs and user code promise, checked on a small sample.

Composes every option of every config group, imports every `_target_`, runs each model's features through the
leakage check and its training function through the contract, and reports each as OK or FAIL with the fix.
"""

from __future__ import annotations

import pickle
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from flowork.errors import FloworkError

GROUPS = ("data", "features", "model", "search", "metric")


@dataclass
class Result:
    check: str
    ok: bool
    detail: str = ""
    same_failure: int = 0  # further checks that failed with this very detail (reported once, on this row)


def options(conf: Path, group: str) -> list[str]:
    return sorted(p.stem for p in (conf / group).glob("*.yaml"))


def attempt(check: str, fn: Callable[[], Any], chosen: dict[str, str] | None = None) -> Result:
    """Run one check. `chosen`: filled by `fn` with the config options it composed, so that an error raised deeper
    down (loading data knows only conf/data/<option>.yaml) names the file."""
    if chosen is not None:
        chosen.clear()  # a composition that fails names no option of an earlier check
    try:
        detail = fn()
        return Result(check, True, str(detail or ""))
    except FloworkError as e:
        e.name_options(chosen or {})
        return Result(check, False, e.render())
    except Exception as e:  # user code may raise anything: report it with where it came from
        where = traceback.extract_tb(e.__traceback__)[-1]
        return Result(check, False, f"{type(e).__name__}: {e}\n  at {where.filename}:{where.lineno}")


def training_contract(cfg: DictConfig, raw: Any, root: str) -> str:
    """Fit the model on the older part of `raw`, predict the newer part: one finite value per row, picklable."""
    from flowork import instantiate
    from flowork.features import leakage_check, make_target
    from flowork.run import pipeline_of

    instantiate.ensure_importable(root)
    pipeline = pipeline_of(cfg.features, f"conf/features (model {cfg.model.name})")
    clean = pipeline.cleaned(raw)
    X = pipeline.features(clean)
    leakage_check(raw, pipeline, X)
    y, _ = make_target(clean, cfg.data.target.column, cfg.data.target.horizon)
    y = y.reindex(X.index)
    labelled = y.notna().to_numpy()
    X, y = X[labelled], y[labelled]
    cut = int(len(X) * 0.8)
    if cut < 10 or len(X) - cut < 2:
        raise FloworkError(
            f"only {len(X)} usable rows in the sample after feature building",
            fix="use more rows (flowork check --rows N) or a shorter feature window",
        )
    params = OmegaConf.to_container(cfg.model.params, resolve=True)
    where = f"conf/model/{cfg.model.name}.yaml, key `model.train`"
    train = instantiate.bind(cfg.model.train, where=where, call_args=2)
    model = train(X.iloc[:cut], y.iloc[:cut], **params)  # type: ignore[arg-type]
    if not callable(getattr(model, "predict", None)):
        raise FloworkError(
            f"the training function returned {type(model).__name__}, which has no predict(X)",
            where=where,
            fix="return a fitted model whose predict(X) gives one value per row of X",
        )
    pred = np.asarray(model.predict(X.iloc[cut:]), dtype=float).reshape(-1)
    if len(pred) != len(X) - cut or not np.isfinite(pred).all():
        raise FloworkError(
            f"predict(X) gave {len(pred)} values ({int((~np.isfinite(pred)).sum())} not finite) "
            f"for {len(X) - cut} rows",
            where=where,
            fix="return exactly one finite prediction per row of X, in X's order",
        )
    try:
        again = pickle.loads(pickle.dumps(model))
    except Exception as e:
        raise FloworkError(
            f"the fitted model cannot be pickled ({type(e).__name__}: {e}), so it cannot be logged",
            where=where,
            fix="define wrapper classes at module level in user_code/models.py",
        ) from None
    np.testing.assert_allclose(np.asarray(again.predict(X.iloc[cut:]), dtype=float).reshape(-1), pred, rtol=1e-5)
    mae = float(np.mean(np.abs(pred - y.iloc[cut:].to_numpy())))
    return f"{len(X.columns)} features, fit on {cut} rows, sample MAE {mae:.3g}"


def run_checks(root: Path, rows: int = 400) -> list[Result]:
    """Every check, a failure shared by several (a ??? key of the default data config fails every composition and
    every contract the same way) reported once, on the row of the first check it failed, with how many more."""
    results: list[Result] = []
    first: dict[str, Result] = {}
    for r in checks(root, rows):
        if not r.ok and r.detail in first:
            first[r.detail].same_failure += 1
            continue
        if not r.ok:
            first[r.detail] = r
        results.append(r)
    return results


def checks(root: Path, rows: int) -> Iterator[Result]:
    from hydra import compose, initialize_config_dir

    from flowork import data
    from flowork.schema import check_yaml_syntax, validate
    from flowork.search import build_space, check_space_keys

    conf = root / "conf"
    if not (conf / "config.yaml").exists():
        yield Result(
            "conf/config.yaml",
            False,
            f"no conf/config.yaml under {root}: run flowork check in a project (flowork init DIR makes one)",
        )
        return
    syntax = attempt("conf/ YAML syntax", lambda: check_yaml_syntax(conf))
    yield syntax
    if not syntax.ok:  # every composition would fail the same way
        return
    models = options(conf, "model")

    chosen: dict[str, str] = {}  # the options of the check under way (attempt)

    def composed(*overrides: str) -> DictConfig:
        with initialize_config_dir(str(conf), version_base="1.3"):
            cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
        # the options chosen, so that an error names its file (conf/data/main.yaml); validate drops `hydra`
        chosen.update(cfg.hydra.runtime.choices)
        return validate(cfg, dict(chosen))

    for group in GROUPS:
        for option in options(conf, group):
            extra = [f"model={option}"] if group == "search" and option in models else []

            def compose_option(g: str = group, o: str = option, e: list[str] = extra) -> str:
                cfg = composed(f"{g}={o}", *e)
                if e:  # a model's own search file: its keys must be in that model's config
                    where = f"conf/search/{o}.yaml"
                    space = build_space(cfg.search.space, {}, set(), where=where)
                    check_space_keys(cfg, [*space.params, *space.fixed], o, where)
                return ""

            yield attempt(f"compose {group}={option}", compose_option, chosen)
    for model in models:

        def contract(m: str = model) -> str:
            cfg = composed(f"model={m}")
            raw = data.load(cfg.data, str(root)).head(rows)
            return training_contract(cfg, raw, str(root))

        yield attempt(f"model {model}: features, leakage check, training contract", contract, chosen)
    for metric in options(conf, "metric"):

        def metric_contract(m: str = metric) -> str:
            from flowork import instantiate
            from flowork.run import metric_of

            cfg = composed(f"metric={m}")
            instantiate.ensure_importable(str(root))
            score = metric_of(cfg.metric._target_, f"conf/metric/{m}.yaml")
            value = score(np.array([1.0, 2.0, 4.0]), np.array([1.5, 2.0, 3.0]))
            return f"{cfg.metric.direction}, {value:.3g} on a sample"

        yield attempt(f"metric {metric}: metric(y_true, y_pred) -> number", metric_contract, chosen)
    for features in options(conf, "features"):

        def leakage(f: str = features) -> str:
            from flowork import instantiate
            from flowork.features import leakage_check
            from flowork.run import pipeline_of

            cfg = composed(f"features={f}")
            instantiate.ensure_importable(str(root))
            raw = data.load(cfg.data, str(root)).head(rows)
            pipeline = pipeline_of(cfg.features, f"conf/features/{f}.yaml")
            X = pipeline(raw)
            leakage_check(raw, pipeline, X)
            return f"{X.shape[1]} columns on the default data"

        yield attempt(f"features {features}: leakage check", leakage, chosen)
