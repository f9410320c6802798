"""`python -m flowork ...`: hands Hydra's config to `flowork.run.run`. Heavy imports happen inside the job."""

from __future__ import annotations

import sys

CLI_COMMANDS = ("select", "report", "check", "init", "add-model", "serve", "version")  # flowork/cli.py's

if __name__ == "__main__":
    if sys.argv[1:2] and sys.argv[1] in CLI_COMMANDS:  # Hydra would take it for a malformed override
        print(
            f"flowork: error: `{sys.argv[1]}` is a command of the flowork CLI: run `flowork {' '.join(sys.argv[1:])}`"
            " (python -m flowork runs jobs and sweeps: python -m flowork key=value ...)",
            file=sys.stderr,
        )
        sys.exit(2)
    from pathlib import Path

    from flowork.search import multirun_first, widen
    from flowork.tracking_service import prestart

    conf = Path.cwd() / "conf"
    groups = [p.name for p in conf.iterdir() if p.is_dir()] if conf.is_dir() else []
    typed = sys.argv[1:]  # as the user wrote them: an error names them so (widen adds ++ to some)
    sys.argv[1:] = widen(multirun_first(sys.argv[1:]), groups)
    prestart(sys.argv[1:])  # a sweep's tracking process, importing MLflow while Hydra starts

import logging
import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

from flowork.errors import FloworkError
from flowork.interpolations import cache_parses
from flowork.shutdown import exit_without_teardown

log = logging.getLogger("flowork")
cache_parses()  # Hydra's compositions and every trial of a sweep read the same interpolations again and again


# conf/ of the project in the current directory (an absolute path: relative ones would start at this file).
@hydra.main(version_base="1.3", config_path=str(Path.cwd() / "conf"), config_name="config")
def main(cfg: DictConfig) -> float:
    from flowork.run import run

    if is_single_run():
        hide_command_line_secrets()
    try:
        result = run(cfg)
    except FloworkError as e:
        if os.environ.get("FLOWORK_TRACEBACK"):
            raise
        if is_single_run():
            # A user error is not a crash: print it without Hydra's traceback and exit non-zero.
            print(f"flowork: error: {e.render()}\n(set FLOWORK_TRACEBACK=1 to see the traceback)", file=sys.stderr)
            sys.exit(2)
        log.error("%s", e.render())
        raise
    log.info("cv %s = %.4f ± %.4f, holdout %.4f", cfg.metric.name, result.objective, result.std, result.holdout)
    if is_single_run():  # where to look at it (a sweep's trials are listed by its leaderboard)
        from flowork.run import project_root
        from flowork.tracking import scrub, tracking_uri

        store = scrub(tracking_uri(cfg.tracking.uri, project_root(cfg)))
        log.info("MLflow run %s, experiment %r, in %s", result.run_id, str(cfg.tracking.experiment), store)
    return result.objective


def hide_command_line_secrets() -> None:
    """A single run's `.hydra/` files, as Hydra wrote them, keep no credential given on the command line (a sweep
    writes its trials' files itself, redacted)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from flowork.tracking import redact_job_files

    hydra = HydraConfig.get()
    if hydra.output_subdir is not None:
        # as typed: `key=${data.target.colum}` is resolved (and its typo reported) by the job's own checks
        overrides = OmegaConf.to_container(hydra.overrides.task, resolve=False)
        redact_job_files(Path(hydra.runtime.output_dir, hydra.output_subdir), list(map(str, overrides or [])))


def is_single_run() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.get().mode == RunMode.RUN


if __name__ == "__main__":
    from flowork.schema import check_choices, check_yaml_syntax
    from flowork.search import check_overrides, command_line_overrides

    try:
        check_yaml_syntax(Path.cwd() / "conf")
        check_overrides(command_line_overrides(typed), where="the command line")
        check_choices(Path.cwd() / "conf", sys.argv[1:])
    except FloworkError as e:
        from flowork.tracking_service import discard_prestarted

        discard_prestarted()
        print(f"flowork: error: {e.render()}", file=sys.stderr)
        sys.exit(2)
    main()  # an error exits through SystemExit, with the usual teardown
    exit_without_teardown()
