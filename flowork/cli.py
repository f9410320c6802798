"""`flowork` command line: project-level commands next to the Hydra app (`python -m flowork`)."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="flowork: describe an ML experiment as Hydra configs; flowork backtests, searches and tracks it on MLflow.\n\n"
    "Run experiments with `python -m flowork model=NAME` (one job) or `python -m flowork model=a,b -m` (a sweep).",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def version() -> None:
    """Print flowork's version."""
    from importlib.metadata import version as dist_version

    typer.echo(dist_version("flowork"))


if __name__ == "__main__":
    app()
