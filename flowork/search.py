"""Search spaces in Hydra's sweep grammar -> Optuna distributions, and the command line's say over them.

Grammar (as in `conf/search/*.yaml` and on the command line):
  interval(a, b)            float in [a, b]            int(interval(a, b))   int in [a, b]
  tag(log, interval(a, b))  log-uniform                range(a, b[, step])   a, a+step, ... < b
  choice(x, y, ...) / x,y   categorical                a plain value         fixed for the sweep
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
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
        reason, at = grammar_reason(f"{key}={expression}", e.message)
        at = None if at is None else at - len(key) - 1  # in the expression, shown without its key
        raise FloworkError(
            f"cannot parse the search expression `{key}: {expression}`: {reason}{marker(expression, at)}",
            where=where,
            fix="write it as interval(a,b), int(interval(a,b)), tag(log, interval(a,b)), range(a,b,step), "
            f"choice(x,y) or a plain value (Hydra's sweep grammar: {SWEEP_GRAMMAR_DOCS})",
        ) from None
    if not override.is_sweep_override():
        return ("fixed", override.value())
    return to_distribution(override, where)


GRAMMAR_DOCS = "https://hydra.cc/docs/advanced/override_grammar/basic/"
SWEEP_GRAMMAR_DOCS = "https://hydra.cc/docs/advanced/override_grammar/extended/"
QUOTING_FIX = (
    "quote the override for the shell: 'key=value' (unquoted, the shell splits it at `;` and refuses `(`), and a "
    "value holding `;`, `=`, brackets or a comma that is not a list's for Hydra too: 'key=\"a;b\"'; the grammar: "
    + GRAMMAR_DOCS
)


def grammar_reason(text: str, message: str) -> tuple[str, int | None]:
    """Why Hydra could not parse the override `text` (its OverrideParseException message, written for grammar
    authors) in plain words, and the position in `text` it points at (None when it names none)."""
    lines = [line for line in message.splitlines() if not line.startswith(("See https://", "Error parsing override"))]
    first = lines[0] if lines else message
    value_at = text.find("=") + 1
    if first.startswith("LexerNoViableAltException") and len(lines) > 1:  # Hydra's own marker under the input
        at = lines[1].index("^") - len("LexerNoViableAltException: ")
        char = text[at] if 0 <= at < len(text) else ""
        return (f"the quote {char} is not closed" if char in "'\"" else f"`{char}` cannot be there unquoted"), at
    if found := re.fullmatch(r"\w+ while evaluating '(.*)': (.*)", first, re.DOTALL):  # a grammar function's
        return f"`{found[1]}`: {found[2]}", None
    if found := re.fullmatch(r"missing (\S+) at '(.*)'", first):
        if found[1] == "EQUAL":
            return "no `=` in it: an override is key=value (+key=value adds a key, ~key removes one)", None
        return f"{found[1].lower()} missing before `{found[2]}`", None
    value = text[value_at:]
    opened = next((o for o, c in ("()", "[]", "{}") if value.count(o) > value.count(c)), None)
    if opened and value_at:
        return f"`{opened}` is not closed", len(text)
    if found := re.fullmatch(r"no viable alternative at input '(.*)'", first, re.DOTALL):
        stopped = text.rfind(found[1]) + len(found[1]) - 1 if found[1] in text else None
        return f"cannot read `{found[1]}` (at the marked character: a missing argument, comma or bracket?)", stopped
    if found := re.fullmatch(r"(?:extraneous|mismatched) input '(.*?)' expecting .*", first, re.DOTALL):
        if found[1] == "<EOF>":
            return "it ends too early", len(text)
        at = text.find(found[1], value_at)  # the first in the value: where the parser stopped
        return f"`{found[1]}` is not expected there", at if at >= 0 else None
    return " ".join(lines), None


def marker(text: str, at: int | None) -> str:
    """`text` on a line of its own with a ^ under position `at` (nothing when there is no position)."""
    if at is None or not 0 <= at <= len(text):
        return ""
    return f"\n    {text}\n    {' ' * at}^"


def check_overrides(overrides: Iterable[str], where: str) -> None:
    """FloworkError naming the first override Hydra's grammar cannot parse, before Hydra reports it with a message
    about its parser (and exit status 1)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    for text in overrides:
        try:
            parser.parse_overrides([text])
        except OverrideParseException as e:
            reason, at = grammar_reason(text, e.message)
            raise FloworkError(
                f"the override `{text}` does not parse: {reason}{marker(text, at)}",
                where=f"{where}, `{text}`",
                fix=QUOTING_FIX,
            ) from None


def command_line_overrides(argv: Sequence[str]) -> list[str]:
    """The overrides among `python -m flowork`'s arguments, as Hydra's own argument parser finds them (flags such
    as `--cfg job` take values that are not overrides)."""
    from hydra._internal.utils import get_args_parser

    known, _ = get_args_parser().parse_known_args(multirun_first(list(argv)))
    return list(known.overrides)


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
