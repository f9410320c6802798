"""The one place that turns `_target_` nodes into callables.

Every user function (clean, build, train, metric) goes through `bind`, which imports the target, binds the node's
keyword arguments and checks them against the function's signature *before* anything runs, so a typo in a YAML key
fails at once with the file, the key and the function's real parameters.
"""

from __future__ import annotations

import functools
import inspect
import sys
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
    """Import `pkg.module.attr` and return it, or fail naming the config location and the import problem."""
    from hydra.utils import get_method  # hydra's own resolver: same rules as instantiate

    try:
        return get_method(path)
    except Exception as e:  # hydra wraps ImportError/AttributeError differently across versions
        cause = e.__cause__ or e
        raise FloworkError(
            f"cannot import `_target_: {path}`: {type(cause).__name__}: {cause}",
            where=where,
            fix="check the module path and function name (run from the project root so `user_code` is importable)",
        ) from None


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
