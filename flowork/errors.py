"""User-facing errors: what is wrong, where, and how to fix it.

Anything the user can cause (config, data, user code contracts) raises `FloworkError`. The entry points print it
without a traceback; set FLOWORK_TRACEBACK=1 to see one.
"""

from __future__ import annotations


class FloworkError(Exception):
    """An error the user can fix: `what` went wrong, `where` (file/key), and `fix` (what to do)."""

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None) -> None:
        self.what, self.where, self.fix = what, where, fix
        super().__init__(self.render())

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


def raised_in_user_code(error: Exception, what: str, *, where: str, fix: str) -> FloworkError:
    """`error`, raised inside the user's function `what`, as a FloworkError that names the user's line it came
    from. Raise it `from error`: the whole traceback stays chained to it (printed with FLOWORK_TRACEBACK=1, and a
    failed run's traceback.txt keeps it)."""
    import os
    import traceback

    package = os.path.dirname(os.path.abspath(__file__))
    frames = [
        f
        for f in traceback.extract_tb(error.__traceback__)
        if not os.path.abspath(f.filename).startswith(package) and "site-packages" not in f.filename
    ]
    at = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return FloworkError(f"{what} raised {type(error).__name__}: {error}{at}", where=where, fix=fix)
