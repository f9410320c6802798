"""`flowork` command line: project-level commands next to the Hydra app (`python -m flowork`)."""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from flowork.errors import FloworkError

app = typer.Typer(
    help="flowork: describe an ML experiment as Hydra configs; flowork backtests, searches and tracks it on MLflow.\n\n"
    "Run experiments with `python -m flowork model=NAME` (one job) or `python -m flowork model=a,b -m` (a sweep).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(e: FloworkError) -> None:
    if os.environ.get("FLOWORK_TRACEBACK"):
        raise e
    typer.echo(f"flowork: error: {e.render()}", err=True)
    raise typer.Exit(2)


def latest_sweep(multirun: Path) -> str:
    sweeps = sorted(multirun.glob("*/optuna.journal"), key=lambda p: p.stat().st_mtime)
    if not sweeps:
        raise FloworkError(
            f"no sweep found under {multirun}/",
            fix="run a sweep first (python -m flowork model=a,b -m) or name one with --sweep NAME --storage URL",
        )
    return sweeps[-1].parent.name


@dataclass
class Sweep:
    """A finished (or interrupted) sweep of the project in the current directory, opened from its storage."""

    name: str
    dir: Path
    storage: Any
    rows: list[dict[str, Any]]  # the leaderboard
    cfg: Any  # the project's config for this sweep
    tracker: Any
    parent_run_id: str | None
    compose: Callable[[list[str]], Any]


def open_sweep(name: str | None, storage: str | None, extra: list[str]) -> Sweep:
    from hydra import compose, initialize_config_dir

    from flowork.schema import check_yaml_syntax
    from flowork.search import check_overrides
    from flowork.select import study_rows
    from flowork.studies import check_experiment, default_storage, is_sweep_name, open_storage, sweep_studies
    from flowork.tracking import tracker_for

    root = Path.cwd()
    check_yaml_syntax(root / "conf")  # a project's root (run from multirun/, it would look for multirun/multirun/)
    check_overrides(extra, where="the overrides given to this command")
    sys.path.insert(0, str(root))
    name = name or latest_sweep(root / "multirun")
    if not is_sweep_name(name):
        raise FloworkError(f"{name!r} is not a sweep name", fix="give the name of a directory under multirun/")
    sweep_dir = root / "multirun" / name
    if storage is None and not (sweep_dir / "optuna.journal").exists():  # do not create an empty one
        known = sorted(p.parent.name for p in (root / "multirun").glob("*/optuna.journal"))
        raise FloworkError(
            f"no sweep {name!r} under {root / 'multirun'}/",
            fix=f"use one of {known}" if known else "run a sweep first, or give its storage with --storage URL",
        )
    url = storage or default_storage(str(sweep_dir))
    store = open_storage(url)
    rows = study_rows(store, sweep_studies(store, name))
    if not rows:
        raise FloworkError(f"sweep {name!r} has no studies in {url}", fix="check the name (ls multirun/) or --storage")

    def compose_cfg(overrides: list[str]) -> Any:
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        try:
            with initialize_config_dir(str(root / "conf"), version_base="1.3"):
                return compose("config", overrides=[*overrides, *extra], return_hydra_config=True)
        except (HydraException, OmegaConfBaseException) as e:
            raise FloworkError(
                f"cannot compose the sweep's config with {[*overrides, *extra]}: {e}",
                where="the overrides given to this command, or conf/",
                fix="give overrides as key=value of existing keys (`python -m flowork --cfg job` lists them)",
            ) from None

    cfg = compose_cfg([f"sweep.name={name}"])
    check_experiment(store, name, str(cfg.tracking.experiment))
    tracker = tracker_for(cfg.tracking, str(root))
    parents = tracker.client.search_runs(
        [tracker.experiment_id], f"tags.`flowork.sweep` = '{name}' and tags.`flowork.role` = 'sweep'", max_results=1
    )
    if not parents:  # a refit would land in a store that has none of the sweep's runs
        from flowork.tracking import scrub

        raise FloworkError(
            f"sweep {name!r} has no runs in the tracking store {scrub(tracker.uri)}",
            where="tracking.uri (this command's overrides, conf/, or $MLFLOW_TRACKING_URI)",
            fix=f"give the store the sweep tracked to: flowork select --sweep {name} tracking.uri=...",
        )
    sweep_dir.mkdir(parents=True, exist_ok=True)
    return Sweep(name, sweep_dir, store, rows, cfg, tracker, parents[0].info.run_id, compose_cfg)


SWEEP_OPTION = typer.Option(help="sweep name (default: the latest under multirun/)")
STORAGE_OPTION = typer.Option(help="Optuna storage URL (default: multirun/NAME/optuna.journal)")


@app.command()
def select(
    sweep: Annotated[str | None, SWEEP_OPTION] = None,
    storage: Annotated[str | None, STORAGE_OPTION] = None,
    overrides: Annotated[list[str] | None, typer.Argument(help="config overrides, e.g. tracking.uri=...")] = None,
) -> None:
    """Refit the best trial of a sweep and register it as `champion` (what every sweep does when it ends)."""
    try:
        from flowork.select import champion, write_leaderboard

        s = open_sweep(sweep, storage, list(overrides or []))
        write_leaderboard(s.rows, str(s.dir), str(s.cfg.metric.name))
        summary = champion(
            s.rows,
            compose=s.compose,
            tracker=s.tracker,
            sweep=s.name,
            parent_run_id=s.parent_run_id,
            sweep_dir=str(s.dir),
            model_name=str(s.cfg.tracking.model_name),
            root=str(Path.cwd()),
            promote=str(s.cfg.sweep.promote),
        )
        typer.echo(
            f"best: {summary['model']} (trial {summary['trial']}), holdout {summary['holdout']:.4f} -> "
            f"{summary['model_uri']} (version {summary['version']})"
        )
        if summary["alias"] is None:
            again = ["flowork", "select", "--sweep", s.name, *(["--storage", storage] if storage else [])]
            again += [o for o in overrides or [] if not o.startswith("sweep.promote=")] + ["sweep.promote=always"]
            typer.echo(f"not champion: {summary['promotion']}\n(`{shlex.join(again)}` makes it champion anyway)")
    except FloworkError as e:
        fail(e)


@app.command()
def report(
    sweep: Annotated[str | None, SWEEP_OPTION] = None,
    storage: Annotated[str | None, STORAGE_OPTION] = None,
    overrides: Annotated[list[str] | None, typer.Argument(help="config overrides, e.g. charts.trials=top")] = None,
) -> None:
    """(Re)draw a sweep's charts and write its self-contained HTML report, multirun/NAME/report.html. The charts
    settings are the ones the sweep ran with, unless given here (charts.trials=top charts.top_k=5)."""
    try:
        from omegaconf import OmegaConf

        from flowork.charts.draw import sweep_report
        from flowork.schema import validate
        from flowork.search import key_of

        s = open_sweep(sweep, storage, list(overrides or []))
        given = {key_of(o) for o in overrides or []}
        # this command is asked for the page, whatever charts.report says
        settings = {**swept_chart_settings(s), "report": True}
        for key, value in settings.items():
            if f"charts.{key}" not in given:
                OmegaConf.update(s.cfg, f"charts.{key}", value)
        validate(s.cfg)  # charts.trials and charts.top_k as given here
        # The champion's charts come from its trial's config, composed (or not, when conf/ changed since the sweep)
        # by sweep_report: composing it here too would abort the whole report over an edited conf/.
        champion: dict[str, Any] | None = None
        if (s.dir / "best.yaml").exists():
            champion = OmegaConf.to_container(OmegaConf.load(s.dir / "best.yaml"))  # type: ignore[assignment]
        page = sweep_report(
            tracker=s.tracker,
            storage=s.storage,
            rows=s.rows,
            sweep=s.name,
            sweep_dir=s.dir,
            sweep_run=s.parent_run_id,
            champion=champion,
            cfg=s.cfg,
            root=str(Path.cwd()),
        )
        typer.echo(f"report: {page}")
    except FloworkError as e:
        fail(e)


def swept_chart_settings(s: Sweep) -> dict[str, Any]:
    """charts.trials and charts.top_k as the sweep ran with them, from the config the sweep saved for each study
    next to its trials (<sweep dir>/<model>/.hydra/config.yaml, whatever the launcher; the newest, should a resume
    have changed them). {} when none was saved (hydra.output_subdir=null): the project's current settings."""
    from omegaconf import OmegaConf

    subdir = s.cfg.hydra.output_subdir
    files = [s.dir / r["model"] / str(subdir) / "config.yaml" for r in s.rows] if subdir is not None else []
    files = sorted((p for p in files if p.is_file()), key=lambda p: p.stat().st_mtime)
    if not files:
        return {}
    saved = OmegaConf.load(files[-1])
    settings = {key: OmegaConf.select(saved, f"charts.{key}") for key in ("trials", "top_k")}
    if settings["trials"] == "none":  # a sweep that drew no charts: the report draws the project's set
        del settings["trials"]
    return {key: value for key, value in settings.items() if value is not None}


@app.command()
def check(
    rows: Annotated[int, typer.Option(help="rows of the data sample the contracts run on")] = 400,
) -> None:
    """Compose every config option, import every _target_, run the leakage check and every model's training
    contract on a sample; a table of OK / FAIL with the fix, non-zero exit on any failure."""
    from rich.console import Console
    from rich.table import Table

    from flowork.check import run_checks

    console = Console()
    table = Table(title=f"flowork check ({Path.cwd()})", show_lines=True)
    table.add_column("check")
    table.add_column("result")
    table.add_column("detail / fix", overflow="fold")
    with console.status("checking..."):
        results = run_checks(Path.cwd(), rows)
    for r in results:
        also = f"\n(and {r.same_failure} more check(s) with the same failure)" if r.same_failure else ""
        table.add_row(r.check + also, "[green]OK[/]" if r.ok else "[red]FAIL[/]", r.detail)
    console.print(table)
    failed = sum(1 + r.same_failure for r in results if not r.ok)
    if failed:
        console.print(f"[red]{failed} check(s) failed[/]")
        raise typer.Exit(1)


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="where to create the project")],
    example: Annotated[str, typer.Option(help="temperature (runs as is) or blank (your data: fill the ??? keys)")] = (
        "temperature"
    ),
    force: Annotated[
        bool,
        typer.Option(
            help="write into a non-empty directory: its files of the same names are replaced, and each one that "
            "differs from flowork's (your changes) is listed and first copied to flowork-backup/<time>/; your "
            "other files stay"
        ),
    ] = False,
) -> None:
    """Create a flowork project: conf/, user_code/, data/, Makefile, constraints.txt, .gitignore and a README with
    the next steps."""
    from flowork.scaffold import init as scaffold

    try:
        steps, replaced, backup = scaffold(directory, example, force)
    except FloworkError as e:
        fail(e)
    except OSError as e:  # a file in the way, no permission, a read-only filesystem
        fail(FloworkError(f"cannot create the project in {directory}: {e.strerror or e}", fix="choose another DIR"))
    if replaced:  # every one: a truncated list would hide the user's code among the Makefile and README
        typer.echo(
            f"replaced {len(replaced)} file(s) that differed from flowork's; your versions are in {backup}:\n  "
            + "\n  ".join(replaced)
            + f"\n(to get one back: cp {backup}/FILE {directory}/FILE)"
        )
    typer.echo(f"created {directory} ({example}). Next:\n  cd {directory}\n  " + "\n  ".join(steps))


@app.command("add-model")
def add_model(
    name: Annotated[str, typer.Argument(help="the new model's name (a Python identifier)")],
    like: Annotated[str, typer.Option(help="the model to start from (its params, features and search space)")] = (
        "ridge"
    ),
) -> None:
    """Add a model: conf/model/NAME.yaml, conf/search/NAME.yaml and a training function in user_code/models.py."""
    from flowork.scaffold import add_model as scaffold

    try:
        written = scaffold(Path.cwd(), name, like)
    except FloworkError as e:
        fail(e)
    typer.echo("wrote " + ", ".join(str(p.relative_to(Path.cwd())) for p in written))
    typer.echo(f"next: edit user_code/models.py:{name}, then `flowork check` and `python -m flowork model={name}`")


@app.command()
def serve(
    model_name: Annotated[
        str, typer.Option(help="the registered model (default: the project's tracking.model_name)")
    ] = "",
    tracking_uri: Annotated[
        str,
        typer.Option(
            help="the tracking store (default: the project's tracking.uri, else $MLFLOW_TRACKING_URI, else ./mlflow.db)"
        ),
    ] = "",
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on (0: any free one)", min=0, max=65535)] = 5000,
) -> None:
    """Serve the champion (models:/NAME@champion) with MLflow's REST server: POST /invocations, raw rows in."""
    from flowork.serving import champion_uri
    from flowork.tracking import tracking_uri as resolve_uri

    conf = Path.cwd() / "conf"
    try:
        check_port_free(host, port)
        # outside a project, only with the model's name given
        configured = project_tracking(conf) if (conf / "config.yaml").exists() or not model_name else {}
        uri = resolve_uri(tracking_uri or configured.get("uri"), str(Path.cwd()))
        name = model_name or configured.get("model_name")
        if not name:
            raise FloworkError(
                "the project's config sets no tracking.model_name",
                where="conf/config.yaml, key `tracking.model_name`",
                fix="name the model: flowork serve --model-name NAME",
            )
        model_uri = champion_uri(name, uri)
    except FloworkError as e:
        fail(e)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # its server's tools
    serve_cmd = ["models", "serve", "-m", model_uri, "--env-manager", "local", "--host", host, "--port", str(port)]
    os.execv(sys.executable, [sys.executable, "-m", "mlflow", *serve_cmd])  # MLflow's server in this process's place


def project_tracking(conf: Path) -> dict[str, Any]:
    """tracking.uri and tracking.model_name as a job of this project sees them (conf/local/default.yaml included;
    no command-line overrides), so `flowork serve` reads the store the sweeps wrote to."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from flowork.schema import check_yaml_syntax

    check_yaml_syntax(conf)
    try:
        with initialize_config_dir(str(conf.resolve()), version_base="1.3"):
            cfg = compose("config")
        return {key: OmegaConf.select(cfg, f"tracking.{key}", default=None) for key in ("uri", "model_name")}
    except Exception as e:  # Hydra's or OmegaConf's: a missing option file, a bad interpolation
        raise FloworkError(
            f"the project's config does not compose: {str(e).splitlines()[0]}",
            where=str(conf),
            fix="`flowork check` names the file; or give both --model-name and --tracking-uri",
        ) from None


def check_port_free(host: str, port: int) -> None:
    """A clear error for a port already in use (MLflow's server would fail with a traceback of its own)."""
    import errno
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: a closing port is free
        try:
            s.bind((host, port))
        except OSError as e:
            in_use = e.errno == errno.EADDRINUSE
            raise FloworkError(
                f"cannot listen on {host}:{port}: {e.strerror or e}",
                where="flowork serve --host/--port (make serve-best PORT=...)",
                fix=f"stop what is using port {port} (make ui and make serve-best both default to 5000), or pick "
                "another port: --port 5001"
                if in_use
                else "give --host an address of this machine: 127.0.0.1 (this machine only) or 0.0.0.0 (every "
                "interface)",
            ) from None


@app.command()
def version() -> None:
    """Print flowork's version."""
    from importlib.metadata import version as dist_version

    typer.echo(dist_version("flowork"))


def main() -> None:
    """The `flowork` command: the app, then a fast exit once it succeeded (see flowork.shutdown)."""
    from flowork.shutdown import exit_without_teardown

    try:
        app()
    except SystemExit as e:  # click ends every command with SystemExit
        if e.code not in (0, None):
            raise
    exit_without_teardown()


if __name__ == "__main__":
    main()
