"""User-facing errors: what is wrong, where, and how to fix it.

Anything the user can cause (config, data, user code contracts) raises `FloworkError`. The entry points print it
without a traceback; set FLOWORK_TRACEBACK=1 to see one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any


class FloworkError(Exception):
    """An error the user can fix: `what` went wrong, `where` (file/key), and `fix` (what to do)."""

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None) -> None:
        self.what, self.where, self.fix = what, where, fix
        super().__init__(self.render())

    def name_options(self, choices: Mapping[str, str]) -> None:
        """`conf/<group>/<option>.yaml` in `where` -> the file of the option the job chose, where code deeper down
        (loading data, planning folds) only knew the group."""
        if self.where:
            self.where = re.sub(
                r"conf/(\w+)/<option>\.yaml",
                lambda m: f"conf/{m[1]}/{choices.get(m[1], '<option>')}.yaml",
                self.where,
            )
            self.args = (self.render(),)

    def render(self) -> str:
        lines = [self.what]
        if self.where:
            lines.append(f"  where: {self.where}")
        if self.fix:
            lines.append(f"  fix:   {self.fix}")
        return "\n".join(lines)


def config_file(key: str) -> str:
    """Best-effort config file of a dotted key: `data.target.column` -> `conf/data/*.yaml (data.target.column)`."""
    group = key.split(".", 1)[0]
    if group in {"data", "features", "model", "search", "metric"}:
        return f"conf/{group}/<option>.yaml, key `{key}`"
    return f"conf/config.yaml, key `{key}`"


def function_name(fn: Any) -> str:
    """A callable's name, through functools.partial (which has none of its own)."""
    return str(getattr(getattr(fn, "func", fn), "__name__", fn))


def call_user_code(what: str, fn: Callable[..., Any], *args: Any, where: str, fix: str) -> Any:
    """`fn(*args)`, where fn is (or runs) the user's code. An exception raised inside it becomes a FloworkError that
    names `what` and the user's line it came from, with the whole traceback chained to it (printed with
    FLOWORK_TRACEBACK=1, kept in a failed run's traceback.txt). A FloworkError, and Optuna's TrialPruned raised by
    the pruning reporter (a stop signal, not an error), pass through."""
    try:
        return fn(*args)
    except FloworkError:
        raise
    except Exception as e:
        if type(e).__name__ == "TrialPruned":
            raise
        import os
        import traceback

        package = os.path.dirname(os.path.abspath(__file__))
        frames = [
            f
            for f in traceback.extract_tb(e.__traceback__)
            if not os.path.abspath(f.filename).startswith(package) and "site-packages" not in f.filename
        ]
        at = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
        raise FloworkError(
            f"{what} raised {type(e).__name__}: {e}{at}{columns_hint(e, args)}", where=where, fix=fix
        ) from e


def columns_hint(error: Exception, args: tuple[Any, ...]) -> str:
    """For a KeyError naming a column the frame passed in does not have (`exog: [temp]` for `temperature`): that
    frame's columns, which the KeyError alone does not show."""
    frame = next((a for a in args if hasattr(a, "columns") and hasattr(a, "index")), None)
    key = error.args[0] if isinstance(error, KeyError) and error.args else None
    if frame is None or not isinstance(key, str) or key in frame.columns:
        return ""
    return f"; its frame has the columns {list(map(str, frame.columns))}"
