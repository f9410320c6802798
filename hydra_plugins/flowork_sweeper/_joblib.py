"""The joblib launcher's worker processes: warmed while the main process plans, released once the trials are done.

A fresh worker spends ~1-2 s before its first trial here: starting Python, importing flowork, pandas and Optuna (not
MLflow: the workers send their writes to the sweep's tracking process). The main process needs about as long to plan
the studies, and until it launches, the workers do not exist. joblib keeps one reusable loky executor per
configuration, so a first `Parallel` call with the launcher's own configuration starts the very processes the
launcher will use; running the imports there overlaps both start-ups. When the trials are done, the idle workers are
stopped at once instead of at interpreter exit, where each one's orderly teardown (~0.5 s with pandas loaded) delays
the command's return; so is the fork server they came from, which would otherwise hold the command's output open
through its own teardown. Other launchers (basic, Ray) are left alone.

The workers are forked from a fork server (loky's `forkserver` start method, Python's own mechanism) that imports
what every trial needs once (PRELOAD), rather than each being a fresh interpreter importing it all again: on 2 cores,
two workers importing pandas and Optuna next to the planning main process is seconds of start-up. The server is
a clean process of its own (no open store, no threads of the main process), so forking it is safe.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("flowork.sweep")
JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
WORKER_TEMP = "flowork-worker-"  # + <sweep pid>-<random>: each worker's temp folder, in the system's
# imported once by the fork server, inherited by every worker forked from it (MLflow is not: the workers' writes are
# applied by the sweep's tracking process)
PRELOAD = [
    "optuna",
    "flowork.run",
    "flowork.tracking_service",
    "hydra_plugins.hydra_joblib_launcher._core",
    __name__,
]


def warm_workers(config: DictConfig) -> Warming | None:
    """Start warming the launcher's workers in the background; join it before launching."""
    if OmegaConf.select(config, "hydra.launcher._target_") != JOBLIB:
        return None
    params = OmegaConf.to_container(config.hydra.launcher, resolve=True)
    assert isinstance(params, dict)  # a launcher config is a mapping
    params.pop("_target_", None)
    params["backend"] = "loky"  # as the joblib launcher sets it: the same executor is reused only for equal settings
    for key in ("pre_dispatch", "batch_size", "max_nbytes"):  # ...and as it converts these
        if isinstance(params.get(key), str) and params[key].isdigit():
            params[key] = int(params[key])
    n_jobs = int(params.get("n_jobs") or 1)
    workers = (os.cpu_count() or 1) if n_jobs < 0 else n_jobs
    if workers == 1:  # joblib runs a single job in this very process: nothing to warm
        return None
    remove_orphaned_worker_tempdirs()
    use_fork_server()
    warming = Warming(params, workers)
    warming.start()
    return warming


def use_fork_server() -> None:
    """Start loky's workers from a preloading fork server, unless this process already chose a start method."""
    import multiprocessing
    import tempfile

    from joblib.externals.loky.backend import context

    if "forkserver" not in context.START_METHODS or context.get_start_method() is not None:
        return  # Windows, or a start method set by the user's code
    if len(tempfile.gettempdir()) > 70:  # its socket, <tmp>/pymp-*/listener-*, would pass the OS's ~107 characters
        return
    multiprocessing.set_forkserver_preload(PRELOAD)
    context.set_start_method("forkserver")


class Warming(threading.Thread):
    def __init__(self, params: dict[str, Any], workers: int) -> None:
        super().__init__(name="flowork-warm", daemon=True)
        self.params, self.workers = params, workers
        self.pids: list[int] = []  # the processes warmed

    def run(self) -> None:
        try:
            from joblib import Parallel, delayed

            Parallel(**self.params)(delayed(warm)() for _ in range(self.workers))
            # loky starts every worker at once; a fast task may have run on one of them twice
            self.pids = sorted(executor()._processes)
            log.debug("warmed workers %s", self.pids)
        except Exception as e:  # warming is an optimisation: the launch works the same without it
            log.debug("could not warm the workers: %s: %s", type(e).__name__, e)


def warm() -> None:
    """In a worker: import what every trial needs (preloaded by the fork server where there is one)."""
    import optuna  # noqa: F401

    import flowork.run  # noqa: F401
    import flowork.tracking_service  # noqa: F401


def release_workers() -> None:
    """Stop the launcher's idle workers now. Every trial has returned: their runs are ended and their files written,
    so nothing is lost by not waiting for each interpreter's teardown."""
    if (running := executor()) is not None:
        running.shutdown(wait=False, kill_workers=True)
    stop_fork_server()
    remove_worker_tempdirs(os.getpid())


def worker_tempdir(sweep_pid: int) -> None:
    """In a worker of the sweep `sweep_pid`: a temp folder of its own for every library (TMPDIR, tempfile.tempdir).

    Killed workers run no exit handlers, and libraries that clean their temp files only at exit would leave them
    behind: cmdstanpy (Prophet's backend) keeps a folder of fit outputs per process, ~70 KB a Prophet trial here.
    The sweep's process removes these folders with its workers (remove_worker_tempdirs)."""
    import tempfile

    prefix = f"{WORKER_TEMP}{sweep_pid}-"
    if not os.path.basename(tempfile.gettempdir()).startswith(prefix):  # once per worker process
        os.environ["TMPDIR"] = tempfile.tempdir = tempfile.mkdtemp(prefix=prefix)


def remove_worker_tempdirs(sweep_pid: int, own: bool = False) -> None:
    """Remove the temp folders of the sweep's workers (`own`: in a worker, only its own)."""
    import glob
    import tempfile

    prefix = f"{WORKER_TEMP}{sweep_pid}-"
    here = tempfile.gettempdir()
    if own:
        remove([here] if os.path.basename(here).startswith(prefix) else [])
    else:
        remove(glob.glob(os.path.join(here, f"{prefix}*")))


def remove_orphaned_worker_tempdirs() -> None:
    """Remove the worker temp folders of this user's sweeps whose process has exited (killed, say, with no chance
    to remove them)."""
    import glob
    import tempfile

    remove(
        p for p in glob.glob(os.path.join(tempfile.gettempdir(), f"{WORKER_TEMP}*")) if not swept_by_a_live_process(p)
    )


def remove(paths: Iterable[str]) -> None:
    import shutil

    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


def swept_by_a_live_process(path: str) -> bool:
    """Whether a worker temp folder may still be in use: another user's, or its sweep's process runs."""
    from flowork.studies import pid_alive

    pid = os.path.basename(path)[len(WORKER_TEMP) :].partition("-")[0]
    try:
        return os.stat(path).st_uid != os.getuid() or not pid.isdigit() or pid_alive(int(pid))
    except OSError:  # gone meanwhile
        return True


def executor() -> Any:
    """The launcher's loky executor, if one runs (loky has no public getter that cannot start one)."""
    from joblib.externals.loky import reusable_executor

    return reusable_executor._executor


def stop_fork_server() -> None:
    """Kill the fork server the workers came from. Left alone, it notices this process's end and then tears down
    its own interpreter (~0.5 s with pandas loaded) while holding the command's stdout and stderr open: whoever
    waits for the command's output (a shell pipe, subprocess.run) waits that long after the sweep is done. It holds
    no open file or store, only the preloaded modules; a later launch starts a new one (multiprocessing does so for
    a server that is gone)."""
    import contextlib
    import signal
    from multiprocessing import forkserver

    server: Any = forkserver._forkserver  # Python's own single fork server; no public way to stop it without waiting
    with server._lock:
        pid, alive = server._forkserver_pid, server._forkserver_alive_fd
        if pid is None:
            return
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)  # reaped at once: killed, it has no teardown to wait for
        with contextlib.suppress(OSError):
            os.close(alive)
        server._forkserver_pid = server._forkserver_alive_fd = None
