"""The tracking process of a sweep (flowork/tracking_service.py): what it writes, for the sweep and its workers, what
happens when the sweep's process or a worker dies, and how its errors reach the user."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from types import SimpleNamespace

import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from flowork.errors import FloworkError
from flowork.studies import counted
from flowork.tracking_service import interrupts_deferred, queued_tracker
from tests.conftest import ROOT, empty_store, sweep, sweep_args
from tests.test_sweep import SCRIPTED, runs, trials


def tracking(tmp_path, uri=None):
    return SimpleNamespace(
        uri=uri or empty_store(tmp_path),
        experiment="temperature",
        artifact_location=f"file://{tmp_path}/artifacts",
    )


def test_writes_are_applied_in_order_and_runs_get_their_mlflow_ids(tmp_path):
    tracker = queued_tracker(tracking(tmp_path), str(ROOT))
    try:
        parent = tracker.start("study", {"flowork.role": "study"})
        child = tracker.start("trial", {"flowork.trial": "0"}, parent)
        tracker.log(child, params={"alpha": "1.0"}, metrics={"cv_mae": 2.0}, tags={"note": "x"})
        tracker.log_text(child, "a,b\n1,2\n", "predictions.csv")
        tracker.end(child)
        run_id = tracker.resolve(child)  # waits until all of the above is applied
    finally:
        tracker.close()
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.metrics == {"cv_mae": 2.0}
    assert run.data.params == {"alpha": "1.0"} and run.data.tags["note"] == "x"
    assert run.data.tags["mlflow.parentRunId"] == tracker.resolve(parent)
    assert [a.path for a in client.list_artifacts(run_id)] == ["predictions.csv"]


@pytest.mark.timeout(120)
def test_frames_sent_while_the_tracking_process_starts_are_applied(tmp_path):
    """Sent at once, while it still imports MLflow and pandas: a frame unpickled then on another thread once met a
    half-imported pandas, and the sweep waited forever."""
    import pandas as pd

    frame = pd.DataFrame({"temp_max": [1.0, 2.0]}, index=pd.date_range("2020-01-01", periods=2, name="date"))
    tracker = queued_tracker(tracking(tmp_path), str(ROOT))
    try:
        run = tracker.start("trial", {})
        tracker.log_dataset(run, frame, "data.csv", "temp_max", 1)
        tracker.log_csv(run, frame, "predictions.csv")
        tracker.end(run)
        run_id = tracker.resolve(run)
    finally:
        tracker.close()
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    logged = client.get_run(run_id)
    assert logged.data.tags["flowork.data_digest"] and len(logged.inputs.dataset_inputs) == 1
    assert [a.path for a in client.list_artifacts(run_id)] == ["predictions.csv"]


def test_an_error_of_the_tracking_process_is_raised_in_the_sweep_once(tmp_path, capfd):
    tracker = queued_tracker(tracking(tmp_path), str(ROOT))
    try:
        tracker.log("0123456789abcdef0123456789abcdef", metrics={"m": 1.0})  # no such run
        with pytest.raises(FloworkError, match="RESOURCE_DOES_NOT_EXIST|not found"):
            tracker.resolve(tracker.start("next", {}))
        tracker.check()  # raised once: the sweep's error path does not raise it again
    finally:
        tracker.close()
    assert "Traceback" not in capfd.readouterr().err  # the message says it all (FLOWORK_TRACEBACK=1 for more)


def test_a_store_that_cannot_be_opened_is_a_clear_error(tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    tracker = queued_tracker(tracking(tmp_path, f"sqlite:///{tmp_path}/afile/mlflow.db"), str(ROOT))
    with pytest.raises(FloworkError, match="cannot reach the MLflow tracking store"):
        tracker.resolve(tracker.start("run", {}))
    tracker.close()


@pytest.mark.parametrize(("launcher", "workers"), [([], 1), (["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], 2)])
def test_a_sweep_whose_store_cannot_be_opened_stops_with_a_clear_message(tmp_path, short_csv, launcher, workers):
    (tmp_path / "afile").write_text("not a folder")
    args = [a for a in sweep_args(tmp_path, short_csv) if not a.startswith("tracking.uri=")]
    out = sweep(*args, f"tracking.uri=sqlite:///{tmp_path}/afile/mlflow.db", "model=ridge", *launcher)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert "cannot reach the MLflow tracking store" in out.stderr
    # it stopped at once, not after its 20 trials: each worker within a trial or two (the tracking process reports
    # the error while the workers go on; a loaded machine saw a sequential sweep start its second trial)
    assert len(list(tmp_path.glob("sweeps/s/ridge/[0-9]*"))) <= 2 * workers


def test_runs_sent_before_the_sweeps_process_died_are_applied_and_the_sweep_resumes(tmp_path, short_csv):
    """Trials are told to Optuna one trial late (their runs are applied meanwhile): trial 2, not told when trial 3
    killed the process, has a complete run, and the resumed sweep tells Optuna so instead of running it again."""
    args = [*sweep_args(tmp_path, short_csv), "model=ridge", *SCRIPTED, "search.n_trials=4", "sweep.select=false"]
    out = sweep(*args, "+model.params.script='ok,ok,ok,die'")  # trial 3 ends the sweep's process at once
    assert out.returncode == 3, out.stderr[-3000:]
    deadline = time.time() + 60  # the tracking process applies what it was sent, then exits
    while time.time() < deadline:
        _, trial_runs = runs(tmp_path, "tags.`flowork.trial` != ''")
        if sum(r.info.status == "FINISHED" for r in trial_runs) == 3:
            break
        time.sleep(0.2)
    status = {r.data.tags["flowork.trial"]: r for r in trial_runs}
    for k in "012":
        assert status[k].info.status == "FINISHED" and "cv_mae" in status[k].data.metrics
    assert [t.state for t in trials(tmp_path, "s", "ridge")][:3] == [TrialState.COMPLETE] * 2 + [TrialState.RUNNING]

    out = sweep(*args, "+model.params.script='ok,ok,ok,die,ok'")  # resumed: trial 2 kept, 3 closed, 4 runs
    assert out.returncode == 0, out.stderr[-3000:]
    after = trials(tmp_path, "s", "ridge")
    assert [t.state for t in after] == [TrialState.COMPLETE] * 3 + [TrialState.FAIL, TrialState.COMPLETE]
    assert after[2].value == pytest.approx(status["2"].data.metrics["cv_mae"])
    assert after[2].user_attrs["run_id"] == status["2"].info.run_id
    _, trial_runs = runs(tmp_path, "tags.`flowork.trial` != ''")
    status = {r.data.tags["flowork.trial"]: r.info.status for r in trial_runs}
    assert status == {"0": "FINISHED", "1": "FINISHED", "2": "FINISHED", "3": "KILLED", "4": "FINISHED"}


@pytest.mark.parametrize(
    ("argv", "started"),
    [
        (["model=ridge,xgb", "-m"], True),
        (["--multirun", "model=ridge"], True),
        (["model=ridge"], False),  # a single run tracks in its own process
        (["-m", "--help"], False),  # Hydra prints and exits: no sweep
        (["-m", "--cfg", "job"], False),
    ],
)
def test_a_sweep_command_starts_its_tracking_process_before_hydra_and_the_sweep_uses_it(tmp_path, argv, started):
    from flowork import tracking_service

    tracking_service.prestart(argv)
    try:
        assert len(tracking_service._STARTED) == started
        if started:
            pid = tracking_service._STARTED[-1].process.pid
            tracker = queued_tracker(tracking(tmp_path), str(ROOT))  # ROOT: the tests' working directory
            try:
                assert tracker.process.pid == pid and not tracking_service._STARTED
                tracker.end(tracker.start("trial", {}))
            finally:
                tracker.close()
            assert tracker.process.returncode == 0
    finally:
        tracking_service.discard_prestarted()


def test_a_tracking_process_started_for_a_sweep_that_does_not_use_it_is_stopped(tmp_path):
    from flowork import tracking_service

    tracking_service.prestart(["-m"])
    child = tracking_service._STARTED[-1]
    kind, _, (socket, _) = child.replies.recv()  # where its workers would have connected
    assert kind == "listening" and os.path.exists(socket)
    tracking_service.discard_prestarted()
    assert child.process.poll() is not None and not tracking_service._STARTED
    assert not os.path.exists(os.path.dirname(socket))  # its private folder goes with it


def test_a_seeded_sequential_sweep_is_repeatable_though_each_trial_is_told_one_late(tmp_path, short_csv):
    """TPE past its random start-up trials: each proposal depends on the trials told before it, so the lag must be
    the same in every run (always one trial), whatever the tracking process's pace."""
    tpe = ["+sweep.sampler.n_startup_trials=2", "search.n_trials=6", "sweep.select=false", "charts.trials=none"]
    proposals = []
    for name in ("a", "b"):
        out = sweep(*sweep_args(tmp_path, short_csv, name), "model=ridge", *tpe)
        assert out.returncode == 0, out.stderr[-3000:]
        done = trials(tmp_path, name, "ridge")
        assert [t.state for t in done] == [TrialState.COMPLETE] * 6
        proposals.append([t.params for t in done])
    assert proposals[0] == proposals[1]


def worker_of(tracker):
    """A second client of the same tracking process, as a sweep's worker process connects (here: in this process)."""
    from flowork.tracking_service import Child, QueuedTracker

    return QueuedTracker(tracker.key, Child.connect(tracker.serve_workers(), str(ROOT)))


def test_workers_write_through_the_sweeps_tracking_process_under_its_runs(tmp_path):
    tracker = queued_tracker(tracking(tmp_path), str(ROOT))
    try:
        study = tracker.start("study", {"flowork.role": "study"})  # a handle: not created in MLflow yet, maybe
        workers = [worker_of(tracker), worker_of(tracker)]
        trial_runs = []
        for k, worker in enumerate(workers):
            run = worker.start(f"trial {k}", {"flowork.trial": str(k)}, study)
            worker.log(run, metrics={"cv_mae": float(k)})
            worker.end(run)
            trial_runs.append(worker.resolve(run))
            worker.close()
        tracker.wait_for_workers()  # none connected: at once
        study_id = tracker.resolve(study)
    finally:
        tracker.close()
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    for k, run_id in enumerate(trial_runs):
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and run.data.metrics == {"cv_mae": float(k)}
        assert run.data.tags["mlflow.parentRunId"] == study_id


@pytest.mark.timeout(60)
def test_what_a_dead_worker_sent_is_applied_and_the_sweep_does_not_wait_for_it(tmp_path):
    tracker = queued_tracker(tracking(tmp_path), str(ROOT))
    try:
        import socket

        study = tracker.start("study", {})
        tracker.run_tags(study)  # the store is open (MLflow's import took seconds on a loaded machine): not timed
        worker = worker_of(tracker)
        run = worker.start("trial 0", {"flowork.trial": "0"}, study)
        worker.log(run, metrics={"cv_mae": 1.0})
        # its process died: no goodbye, its connection just ends
        socket.socket(fileno=os.dup(worker.requests.fileno())).shutdown(socket.SHUT_RDWR)
        t0 = time.monotonic()
        tracker.wait_for_workers()
        assert time.monotonic() - t0 < 5  # well before the wait's limit (tracking_process.LINGER)
        found = tracker.find_trial_run(study, 0)
    finally:
        tracker.close()
    run = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_run(found)
    assert run.data.metrics == {"cv_mae": 1.0} and run.info.status == "RUNNING"  # the sweep closes it (_impl)


def test_a_connection_without_the_key_is_refused_and_the_workers_go_on(tmp_path):
    from multiprocessing import AuthenticationError
    from multiprocessing.connection import Client

    tracker = queued_tracker(tracking(tmp_path), str(ROOT))
    try:
        address, _ = tracker.serve_workers()
        with pytest.raises(AuthenticationError):
            Client(address, family="AF_UNIX", authkey=b"guessed")
        worker = worker_of(tracker)
        run = worker.start("trial 0", {})
        worker.end(run)
        assert worker.resolve(run)
        worker.close()
    finally:
        tracker.close()
    assert not os.path.exists(address)  # the socket and its private folder go with the tracking process


def test_a_parallel_sweeps_workers_do_not_import_mlflow(tmp_path, short_csv):
    """~2-3 s of start-up each here: their writes go to the sweep's tracking process instead."""
    out = sweep(
        *sweep_args(tmp_path, short_csv),
        "model=ridge",
        "model.train._target_=tests.sweep_helpers.imports",
        "data.backtest.folds=2",
        "search.n_trials=6",
        "sweep.select=false",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    seen = [p.read_text().split() for p in tmp_path.glob("sweeps/s/ridge/*/imports.txt")]
    assert len(seen) == 6 and str(os.getpid()) not in {parent for _, parent, _ in seen}  # not the sweep's process
    assert {imported for _, _, imported in seen} == {"False"}
    # (a worker that finds the budget spent by the other's last trial takes a number, EXCESS, with no run)
    assert [t.state for t in trials(tmp_path, "s", "ridge") if counted(t)] == [TrialState.COMPLETE] * 6
    _, trial_runs = runs(tmp_path, "tags.`flowork.trial` != ''")
    _, studies = runs(tmp_path, "tags.`flowork.role` = 'study'")
    assert len(trial_runs) == 6 and {r.info.status for r in trial_runs} == {"FINISHED"}
    assert {r.data.tags["mlflow.parentRunId"] for r in trial_runs} == {studies[0].info.run_id}


def raise_interrupt(signum, frame):
    raise KeyboardInterrupt  # as the sweep's SIGTERM handler does


@pytest.mark.parametrize(
    "signals, handler, interrupted, finished",
    [
        ([signal.SIGINT], signal.default_int_handler, True, True),  # Ctrl-C: after the block, not in it
        ([signal.SIGTERM], raise_interrupt, True, True),  # a sweep's `kill` (its handler): the same
        ([signal.SIGINT, signal.SIGINT], signal.default_int_handler, True, False),  # twice: the second at once
        ([signal.SIGINT], signal.SIG_IGN, False, True),  # a background job's ignored Ctrl-C stays ignored
    ],
)
def test_a_message_is_sent_whole_before_an_interrupt_stops_the_sweep(signals, handler, interrupted, finished):
    before = signal.signal(signals[0], handler)
    steps = []
    try:
        with contextlib.suppress(KeyboardInterrupt):
            with interrupts_deferred():
                for sig in signals:
                    os.kill(os.getpid(), sig)
                    time.sleep(0.05)  # the handler runs here, between two bytecodes
                steps.append("sent")
            steps.append("after")
        assert ("sent" in steps) == finished and ("after" not in steps) == interrupted
        assert signal.getsignal(signals[0]) == handler
    finally:
        signal.signal(signals[0], before)
