"""Interpolations parsed once per process, not on every read.

OmegaConf parses an interpolation string (`${data.target.column}_lag0`) with its ANTLR grammar each time the value is
read, ~0.1 ms a string here. A trial reads its config's interpolations several times (the config logged as plain
values, Hydra's sweep subdir and log file), ~1.6 ms a trial: more than anything else flowork adds to a fast trial.
A parse depends on the string alone and OmegaConf's resolver only reads the tree, so memoising it changes no value;
a string that does not parse raises each time, as before. OmegaConf (2.3) has no setting for this, so the cache
wraps the `parse` its modules call; with another OmegaConf that names it differently, nothing changes.
"""

from __future__ import annotations

import functools


def cache_parses(maxsize: int = 4096) -> None:
    """Memoise OmegaConf's interpolation parser for this process (idempotent)."""
    from omegaconf import _utils, base

    for module in (base, _utils):  # base resolves values; _utils validates one when it is assigned
        parse = getattr(module, "parse", None)
        if callable(parse) and not hasattr(parse, "cache_info"):
            module.parse = functools.lru_cache(maxsize=maxsize)(parse)  # type: ignore[attr-defined]
