"""Search spaces in Hydra's sweep grammar -> Optuna distributions, and the command line's say over them.

Grammar (as in `conf/search/*.yaml` and on the command line):
  interval(a, b)            float in [a, b]            int(interval(a, b))   int in [a, b]
  tag(log, interval(a, b))  log-uniform                range(a, b[, step])   a, a+step, ... < b
  choice(x, y, ...) / x,y   categorical                a plain value         fixed for the sweep
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from flowork.errors import FloworkError

Distribution = Any  # optuna.distributions.BaseDistribution (optuna imported lazily: it costs ~0.5 s)


@dataclass
class Space:
    """What a study samples (`params`) and what every trial of it fixes (`fixed`), both keyed by config key."""

    params: dict[str, Distribution] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)


def parse(key: str, expression: str, *, where: str) -> Distribution | tuple[str, Any]:
    """`key=expression` as an Optuna distribution, or ("fixed", value) for a plain value."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        (override,) = OverridesParser.create().parse_overrides([f"{key}={expression}"])
    except OverrideParseException as e:
        raise FloworkError(
            f"cannot parse the search expression `{key}: {expression}`: {e}",
            where=where,
            fix="use interval(a,b), int(interval(a,b)), tag(log, interval(a,b)), range(a,b,step) or choice(x,y)",
        ) from None
    if not override.is_sweep_override():
        return ("fixed", override.value())
    return to_distribution(override, where)


def to_distribution(override: Any, where: str) -> Distribution:
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    value: Any = override.value()  # Hydra types start/end as Optional; a parsed sweep always has them
    log = "log" in getattr(value, "tags", set())
    if isinstance(value, ChoiceSweep):
        return CategoricalDistribution([v for v in override.sweep_iterator()])  # lists too: see studies.py
    if isinstance(value, RangeSweep):
        start, stop, step = (getattr(value, a) for a in ("start", "stop", "step"))
        if step is None or step <= 0 or start >= stop:
            raise FloworkError(
                f"empty range for `{override.key_or_group}`: range({start}, {stop}, {step}) has no values",
                where=where,
                fix="write range(start, stop, step) with start < stop and step > 0 (stop is excluded)",
            )
        if all(isinstance(v, int) for v in (start, stop, step)):
            last = start + ((stop - start - 1) // step) * step
            return IntDistribution(int(start), int(last), step=int(step))
        items = list(override.sweep_iterator())
        return FloatDistribution(float(items[0]), float(items[-1]), step=float(step))
    if isinstance(value, IntervalSweep):
        value = SimpleNamespace(start=value.start, end=value.end)  # (Hydra types them Optional)
        if value.start >= value.end:
            raise FloworkError(
                f"empty interval for `{override.key_or_group}`: start {value.start} >= end {value.end}",
                where=where,
                fix="write interval(low, high) with low < high",
            )
        if log and value.start <= 0:
            raise FloworkError(
                f"log interval for `{override.key_or_group}` must start above 0, got {value.start}",
                where=where,
                fix="use a positive lower bound, or drop tag(log, ...)",
            )
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    raise FloworkError(f"unsupported sweep `{override.input_line}`", where=where)  # pragma: no cover


def build_space(space: Mapping[str, str], sweeps: Mapping[str, Distribution], fixed: set[str], *, where: str) -> Space:
    """A model's space from its search file; the command line replaces (`sweeps`) or fixes (`fixed`) keys."""
    out = Space()
    for key, expression in space.items():
        if key in fixed or key in sweeps:
            continue
        parsed = parse(key, str(expression), where=f"{where}, key `search.space.{key}`")
        if isinstance(parsed, tuple):
            out.fixed[key] = parsed[1]
        else:
            out.params[key] = parsed
    out.params.update(sweeps)
    return out


def check_space_keys(cfg: Any, keys: Sequence[str], model: str, where: str) -> None:
    """FloworkError for search keys the model's composed config lacks. A trial would set such a key anyway, and
    only the champion's refit would refuse it (Hydra composes that config again): a typo in a search file would
    cost the whole sweep."""
    from omegaconf import OmegaConf

    unknown = sorted(k for k in keys if OmegaConf.select(cfg, k, default=KeyError) is KeyError)
    if unknown:
        raise FloworkError(
            f"search space key(s) {unknown} are not in the config of {model}",
            where=f"{where}, key `search.space`",
            fix=f"correct the name (model.params.<param>, features.build.<argument>, ...), or remove the key if "
            f"{model}'s features or model do not take it; a new model param needs a default value in "
            f"conf/model/{model}.yaml first",
        )


def override_value(value: Any) -> str:
    """A sampled value as a Hydra override value (strings quoted so `a,b` or `1e-3` stay what they are)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):  # a choice among lists: `windows: choice([7, 30], [14])`
        return "[" + ",".join(map(override_value, value)) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{override_value(v)}" for k, v in value.items()) + "}"
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def overrides_of(params: Mapping[str, Any]) -> list[str]:
    return [f"{k}={override_value(v)}" for k, v in params.items()]


MODEL_SPECIFIC = ("model.", "features.")  # keys a model's own config options define (model=ridge,xgb: each has its own)


def widen(argv: list[str], groups: Collection[str]) -> list[str]:
    """Give Hydra a plain `key=value` as `++key=value` (set it, or add it) where flowork says better what a key
    that does not exist means. Hydra refuses one with "To append to your config use +key=value", advice that only
    leads to a second error.

    - Sweeps: `model=ridge,xgb model.params.max_depth=6 -m` fixes xgb's depth and leaves ridge alone. Hydra first
      composes the sweep's own config with the default model, which may lack the key; the sweeper applies `++` keys
      to the models that have them, and names a key none of them has.
    - Single runs: every key but a config group's choice (`model=xgb`; `groups` are conf/'s folders) and Hydra's
      own. A misspelt key is then flowork's error: the typed config names the keys its section has, and the
      user's functions (model.params, features.build) the arguments their signature takes.
    """
    if any(a in ("-m", "--multirun") for a in argv):
        return [f"++{a}" if a.startswith(MODEL_SPECIFIC) and "=" in a else a for a in argv]
    return [
        f"++{a}" if "=" in a and not a.startswith(("+", "~", "-", "hydra")) and key_of(a) not in groups else a
        for a in argv
    ]


def multirun_first(argv: list[str]) -> list[str]:
    """`-m` / `--multirun` moved before the overrides: Hydra's argument parser takes overrides on one side of it
    only, so `model=ridge -m search.n_trials=4` failed with "unrecognized arguments: search.n_trials=4"."""
    flags = [a for a in argv if a in ("-m", "--multirun")]
    return flags + [a for a in argv if a not in flags]


def key_of(override_line: str) -> str:
    return override_line.split("=", 1)[0].lstrip("+~")


def split_arguments(arguments: Sequence[str]) -> tuple[list[str], dict[str, Distribution], list[str]]:
    """Command-line overrides -> (models of `model=a,b`, sweep expressions by key, plain overrides).

    Plain overrides fix their key for the sweep; a sweep expression replaces that key's search space.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    models: list[str] = []
    sweeps: dict[str, Distribution] = {}
    plain: list[str] = []
    for override in OverridesParser.create().parse_overrides(list(arguments)):
        key = key_of(override.get_key_element())  # (widen made model-specific sweeps `++key`)
        if key == "model":
            values = override.sweep_iterator() if override.is_sweep_override() else [override.value()]
            models = [str(v) for v in values]
        elif override.is_sweep_override():
            sweeps[key] = to_distribution(override, where="command line")
        else:
            plain.append(str(override.input_line))
    return models, sweeps, plain
