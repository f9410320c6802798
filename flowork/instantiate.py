"""The one place that turns `_target_` nodes into callables.

Every user function (clean, build, train, metric) goes through `bind`, which imports the target, binds the node's
keyword arguments and checks them against the function's signature *before* anything runs, so a typo in a YAML key
fails at once with the file, the key and the function's real parameters.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import sys
import types
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from flowork.errors import FloworkError, function_name


def ensure_importable(root: str) -> None:
    """Put the project root on sys.path so `user_code.*` imports.

    `python -m flowork` does this for the main process, but launcher workers (joblib/loky, Ray) start fresh
    interpreters that do not; they all call this before importing user code.
    """
    if root not in sys.path:
        sys.path.insert(0, root)


def locate(path: str, *, where: str) -> Callable[..., Any]:
    """Import `pkg.module.attr` and return it, or fail naming the config location and what is wrong: a module
    that does not exist, a name its module lacks (with the names it has), or an error raised by importing it.
    (Not Hydra's get_method: it logs an ERROR line of its own and says "no module named user_code.models.ridgee"
    for a misspelt function name.)"""
    fix = "check the module path and function name (run from the project root so `user_code` is importable)"
    try:
        target = resolve(path)
    except MissingName as e:
        have = [n for n, f in vars(e.module).items() if not n.startswith("_") and defined_in(f, e.module)]
        close = difflib.get_close_matches(e.name, have, n=1)
        raise FloworkError(
            f"cannot import `_target_: {path}`: {e.module.__name__} has no `{e.name}`"
            + (f" (did you mean `{close[0]}`?)" if close else ""),
            where=where,
            fix=f"use one of its functions: {', '.join(have[:20])}" if have else fix,
        ) from None
    except ModuleNotFoundError as e:
        raise FloworkError(
            f"cannot import `_target_: {path}`: no module named {e.name!r}", where=where, fix=fix
        ) from None
    except Exception as e:  # the module's own code failed (a SyntaxError, a NameError at import time, ...)
        raise FloworkError(
            f"cannot import `_target_: {path}`: importing it raised {type(e).__name__}: {e}",
            where=where,
            fix="fix that error in the module (FLOWORK_TRACEBACK=1 shows where)",
        ) from e
    if not callable(target):
        raise FloworkError(f"`_target_: {path}` is a {type(target).__name__}, not a function", where=where, fix=fix)
    return target


def defined_in(obj: Any, owner: Any) -> bool:
    """A function (or class) of `owner` itself, not one it imported."""
    home = owner.__name__ if isinstance(owner, types.ModuleType) else owner.__module__
    return callable(obj) and getattr(obj, "__module__", None) == home


class MissingName(Exception):
    def __init__(self, module: Any, name: str) -> None:
        self.module, self.name = module, name


def resolve(path: str) -> Any:
    """The module `path`, else attribute by attribute from the longest importable module (`pkg.mod.Class.method`)."""
    try:
        return importlib.import_module(path)
    except ModuleNotFoundError as e:
        if "." not in path or not (e.name == path or path.startswith(f"{e.name}.")):
            raise  # an unknown top-level package, or a module the imported code itself lacks
        missing = e
    parent, _, name = path.rpartition(".")
    owner = resolve(parent)
    if hasattr(owner, name):
        return getattr(owner, name)
    if hasattr(owner, "__path__"):  # a package: its module `name` does not exist
        raise missing
    raise MissingName(owner, name)


def bind(node: Any, *, where: str, call_args: int = 1) -> Callable[..., Any]:
    """A callable for a `_target_` node with the node's other keys bound as keyword arguments.

    `call_args` is how many positional arguments flowork will pass (df -> 1, X and y -> 2); the binding is checked
    against the target's signature now, so a wrong key is an error here, not halfway through a backtest.
    """
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=True)
    if not isinstance(node, dict) or "_target_" not in node:
        raise FloworkError(
            f"expected a node with `_target_`, got {node!r}",
            where=where,
            fix="write it as `_target_: user_code.module.function` plus its keyword arguments",
        )
    kwargs = {k: v for k, v in node.items() if k != "_target_"}
    fn = locate(node["_target_"], where=where)
    check_call(fn, call_args, kwargs, where=f"{where} (`_target_: {node['_target_']}`)")
    return functools.partial(fn, **kwargs)


def check_call(fn: Callable[..., Any], n_args: int, kwargs: dict[str, Any], *, where: str) -> None:
    """Fail with the accepted parameters when `fn(*n_args positional, **kwargs)` cannot bind."""
    name = function_name(fn)
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature: let the call itself decide
        return
    try:
        sig.bind(*range(n_args), **kwargs)
    except TypeError as e:
        raise FloworkError(
            f"`{name}` cannot be called with these arguments: {e}",
            where=where,
            fix=f"its signature is {name}{sig}; rename or remove the offending key",
        ) from None
