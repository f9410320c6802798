"""Warming the joblib launcher's workers: the launch must find the very processes that were warmed."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra_plugins.hydra_joblib_launcher._core import process_joblib_cfg
from joblib import Parallel, delayed
from omegaconf import OmegaConf

from hydra_plugins.flowork_sweeper import _joblib
from tests.conftest import CONF


def pid() -> int:
    return os.getpid()


@pytest.fixture(autouse=True)
def loky_start_method(monkeypatch):
    """Warming sets loky's start method for the process: back to its default after each test."""
    from joblib.externals.loky.backend import context

    monkeypatch.setattr(context, "_DEFAULT_START_METHOD", None)


def preloaded() -> list[str]:
    import sys

    return [m for m in _joblib.PRELOAD if m not in sys.modules]


def test_workers_start_with_the_trial_libraries_imported():
    from joblib.externals.loky import get_reusable_executor

    _joblib.use_fork_server()
    executor = get_reusable_executor(max_workers=2, reuse=False)  # fresh processes: the first task sees their start
    try:
        assert executor.submit(preloaded).result(timeout=120) == []  # imported before any task ran
    finally:
        executor.shutdown(kill_workers=True)


def test_the_launch_reuses_the_warmed_workers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                "hydra/launcher=joblib",
                "hydra.launcher.n_jobs=2",
                f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
                f"tracking.artifact_location=file://{tmp_path}/art",
            ],
            return_hydra_config=True,
        )
    thread = _joblib.warm_workers(cfg)
    assert thread is not None
    thread.join(timeout=120)
    assert not thread.is_alive()
    # the joblib launcher's own call: same settings, so the same reusable executor and processes

    params = OmegaConf.to_container(cfg.hydra.launcher)
    params.pop("_target_")
    params["backend"] = "loky"
    process_joblib_cfg(params)
    again = set(Parallel(**params)(delayed(pid)() for _ in range(8)))  # a fast task may all land on one worker
    assert len(set(thread.pids)) == 2 and os.getpid() not in thread.pids
    assert again <= set(thread.pids)


def test_other_launchers_are_left_alone():
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", return_hydra_config=True)  # the basic launcher: trials run in this process
    assert _joblib.warm_workers(cfg) is None


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"  # a zombie has exited
    except (FileNotFoundError, IndexError):
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_released_workers_are_gone(tmp_path):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"tracking.uri=sqlite:///{tmp_path}/m.db"],
            return_hydra_config=True,
        )
    from multiprocessing import forkserver

    warming = _joblib.warm_workers(cfg)
    warming.join(timeout=120)
    assert len(set(warming.pids)) == 2 and all(running(p) for p in warming.pids)
    server = forkserver._forkserver._forkserver_pid
    assert server is not None and running(server)
    _joblib.release_workers()
    # at once: the fork server's own teardown would hold the command's output open after the sweep (~0.8 s)
    assert not running(server)
    deadline = time.time() + 10
    while any(running(p) for p in warming.pids) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(running(p) for p in warming.pids)
    again = _joblib.warm_workers(cfg)  # a later launch gets a new fork server and new workers
    again.join(timeout=120)
    assert len(set(again.pids)) == 2 and not set(again.pids) & set(warming.pids)
    _joblib.release_workers()


def test_one_job_runs_in_process_and_is_not_warmed():
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(
            "config", overrides=["hydra/launcher=joblib", "hydra.launcher.n_jobs=1"], return_hydra_config=True
        )
    assert _joblib.warm_workers(cfg) is None


def parallel_sweep(temp, *args):
    """A sweep on 2 joblib workers, with `temp` as its TMPDIR."""
    import subprocess

    from tests.conftest import ROOT, sweep_command

    return subprocess.run(
        sweep_command(*args, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TMPDIR": str(temp)},
    )


def test_a_parallel_sweep_runs_with_a_temp_dir_too_long_for_a_socket(tmp_path, short_csv):
    """Unix sockets take ~107 characters: the fork server's and the tracking process's live in $TMPDIR. Both step
    aside (loky's own start, workers writing to MLflow themselves) instead of every launch dying."""
    from tests.conftest import sweep_args

    long_tmp = tmp_path / ("t" * 100)
    long_tmp.mkdir()
    args = [*sweep_args(tmp_path, short_csv), "model=ridge", "search.n_trials=4", "sweep.select=false"]
    out = parallel_sweep(long_tmp, *args, "charts.trials=none")
    assert out.returncode == 0 and "a worker died" not in out.stdout + out.stderr, out.stderr[-3000:]
    assert len(list(tmp_path.glob("sweeps/s/ridge/[0-9]*"))) == 4


def test_released_workers_leave_no_temp_files(tmp_path, short_csv):
    """Killed workers run no exit handlers: what a library removes only at exit (cmdstanpy's fit outputs) goes into
    a temp folder per worker, which the sweep removes with them."""
    import subprocess

    from tests.conftest import sweep_args

    temp = tmp_path / "tmp"
    temp.mkdir()
    # left by a sweep that was killed (its process has exited), and by one that still runs (this one)
    gone = subprocess.Popen(["true"])
    gone.wait()
    (temp / f"{_joblib.WORKER_TEMP}{gone.pid}-abc").mkdir()
    (temp / f"{_joblib.WORKER_TEMP}{os.getpid()}-abc").mkdir()
    args = [*sweep_args(tmp_path, short_csv), "model=ridge", "search.n_trials=4", "sweep.select=false"]
    out = parallel_sweep(temp, *args, "model.train._target_=tests.sweep_helpers.temp_until_exit", "charts.trials=none")
    assert out.returncode == 0, out.stderr[-3000:]
    assert len(list(tmp_path.glob("sweeps/s/ridge/[0-9]*"))) == 4
    left = [p.name for p in temp.rglob("*") if p.name.startswith(("until-exit-", _joblib.WORKER_TEMP))]
    assert left == [f"{_joblib.WORKER_TEMP}{os.getpid()}-abc"]


def test_a_parallel_sweep_that_fails_leaves_no_temp_folders(tmp_path, short_csv):
    from tests.conftest import sweep_args

    temp = tmp_path / "tmp"
    temp.mkdir()
    (tmp_path / "afile").write_text("not a folder")
    args = [a for a in sweep_args(tmp_path, short_csv, new_store=True) if not a.startswith("tracking.uri=")]
    out = parallel_sweep(temp, *args, f"tracking.uri=sqlite:///{tmp_path}/afile/mlflow.db", "model=ridge")
    assert out.returncode == 2 and "cannot reach the MLflow tracking store" in out.stderr, out.stderr[-3000:]
    assert not [p.name for p in temp.iterdir() if p.name.startswith(_joblib.WORKER_TEMP)]
