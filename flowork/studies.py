"""Optuna studies of a sweep: storage, naming, budgets and the trials a killed sweep left behind.

A sweep `S` over models a, b has studies `S/a` and `S/b` in one storage. Trial user attributes carry what the
leaderboard and the champion need: `overrides` (to recompose the trial's config), `run_id`, `std`, `holdout`,
`seconds`, and `error` for failures.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import warnings
from collections.abc import Collection
from typing import Any

from flowork.errors import FloworkError

# A choice among lists (`features.build.windows: choice([7, 30], [14])`) is fine: Optuna keeps the choices as JSON,
# and flowork replays a trial's lists as lists (search.override_value). Optuna warns on every read of such a space.
warnings.filterwarnings("ignore", "Choices for a categorical distribution", UserWarning)

KILLED = "killed"  # user attr on trials closed after their sweep died: they do not count against the budget
EXCESS = "excess"  # user attr on a trial asked after its study's budget was spent by a concurrent worker
RERUN_OF = "rerun_of"  # user attr on a trial enqueued again because a worker process died while it ran
# Several sweep commands may run one sweep at once (machines sharing `sweep.storage`). Each registers in its studies
# as the study user attr PROCESS + "<host> <pid>" = its last heartbeat (time.time(); 0 once it ended), and tags its
# trials' MLflow runs PROCESS_TAG = "<host> <pid>": a resume then closes only the trials no running command owns.
PROCESS_TAG = "flowork.process"
EXPERIMENT = "flowork.experiment"  # study user attr: the MLflow experiment its sweep's runs are in
PROCESS = f"{PROCESS_TAG} "
BEAT_SECONDS = 60.0
STALE_SECONDS = 300.0  # a command on another machine whose heartbeat is older than this is taken as gone


def is_sweep_name(name: str | None) -> bool:
    """A name that is one folder under multirun/ (what `flowork select --sweep NAME` takes back)."""
    return name not in (None, "", ".", "..") and not any(sep in str(name) for sep in "/\\")


def default_storage(sweep_dir: str) -> str:
    return f"journal:{os.path.join(sweep_dir, 'optuna.journal')}"


def open_storage(url: str) -> Any:
    """An Optuna storage from a URL; `journal:<path>` is a journal file (safe for parallel processes on one
    machine, no server), `grpc://host:port` Optuna's gRPC storage proxy (many workers on many machines in front of
    one database), anything else a database URL for Optuna (sqlite:///, postgresql://, mysql+pymysql://)."""
    import optuna

    if url.startswith("grpc://"):
        return grpc_storage(url)
    if url.startswith("journal:"):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        from flowork.journal_lock import JournalLock

        path = url.removeprefix("journal:")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return JournalStorage(JournalFileBackend(path, lock_obj=JournalLock(path)))
    try:
        return optuna.storages.get_storage(url)
    except Exception as e:
        raise FloworkError(
            f"cannot open the Optuna storage {url}: {type(e).__name__}: {e}",
            where="conf/config.yaml, key `sweep.storage`",
            fix="use a reachable database URL, or null for a journal file in the sweep directory",
        ) from None


def grpc_storage(url: str, timeout: float = 10.0) -> Any:
    """`grpc://host:port`: a client of `optuna.storages.run_grpc_proxy_server` (README: Scaling out)."""
    host, _, port = url.removeprefix("grpc://").rstrip("/").rpartition(":")
    where = "conf/config.yaml, key `sweep.storage`"
    if not host or not port.isdigit():
        raise FloworkError(
            f"{url} is not grpc://host:port", where=where, fix="e.g. sweep.storage=grpc://10.0.0.5:13000"
        )
    try:
        import warnings

        from optuna.exceptions import ExperimentalWarning
        from optuna.storages import GrpcStorageProxy

        with warnings.catch_warnings():  # once per process and worker; the README says what is tested
            warnings.simplefilter("ignore", ExperimentalWarning)
            proxy = GrpcStorageProxy(host=host, port=int(port))
        proxy.wait_server_ready(timeout=timeout)
    except ImportError as e:
        raise FloworkError(f"Optuna's gRPC storage needs grpcio: {e}", fix="pip install grpcio protobuf") from None
    except ConnectionError:
        raise FloworkError(
            f"no Optuna gRPC storage proxy answers at {url} (waited {timeout:g} s)",
            where=where,
            fix="start it (README: Scaling out, `run_grpc_proxy_server`) or fix the address",
        ) from None
    return proxy


def study_name(sweep: str, model: str) -> str:
    return f"{sweep}/{model}"


def counted(trial: Any) -> bool:
    """Whether a trial uses up budget: started ones (not WAITING in the queue), except killed and excess trials."""
    return trial.state.name != "WAITING" and not (trial.user_attrs.get(KILLED) or trial.user_attrs.get(EXCESS))


def budget_used(trials: list[Any]) -> int:
    return sum(1 for t in trials if counted(t))


def process_name(host: str | None = None, pid: int | None = None) -> str:
    return f"{host or socket.gethostname()} {pid or os.getpid()}"


def pid_alive(pid: int) -> bool:
    """Whether process `pid` of this machine runs (an exited one not yet reaped by its parent does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):  # no /proc (macOS): os.kill's answer
        return True


def others_running(study: Any) -> set[str]:
    """The other sweep commands running this study now: on this machine, their processes exist; on another, their
    heartbeat is recent."""
    me, now, host = process_name(), time.time(), socket.gethostname()
    running = set()
    for key, beat in study.user_attrs.items():
        name = key.removeprefix(PROCESS)
        if not key.startswith(PROCESS) or name == me or not float(beat) > 0:
            continue
        their_host, _, pid = name.rpartition(" ")
        if pid_alive(int(pid)) if their_host == host else now - float(beat) < STALE_SECONDS:
            running.add(name)
    return running


class Presence:
    """This sweep command registered in its studies while it runs, with a heartbeat (see PROCESS)."""

    def __init__(self, studies: list[Any]) -> None:
        self.studies, self.key = studies, PROCESS + process_name()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.beat_until_stopped, daemon=True, name="flowork-heartbeat")

    def beat(self, value: float) -> None:
        for study in self.studies:
            study.set_user_attr(self.key, value)

    def beat_until_stopped(self) -> None:
        while not self.stop.wait(BEAT_SECONDS):
            # a storage hiccup: the next beat tries again (a missed one is well within STALE_SECONDS)
            with contextlib.suppress(Exception):
                self.beat(time.time())

    def __enter__(self) -> Presence:
        self.beat(time.time())
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        with contextlib.suppress(Exception):  # the storage is gone (the error on its way out says so)
            self.beat(0.0)  # (a command not marked ended is still seen as gone: by its pid, or its old heartbeat)


def close_orphans(study: Any, reason: str, keep: Collection[int] = ()) -> list[Any]:
    """Mark trials a stopped sweep left RUNNING as FAIL and killed (they count against neither the budget nor the
    failure rate), except the trial numbers in `keep` (another running command's); returns them. Optuna has no
    public API to annotate a trial another process asked for, hence the storage calls (close_after_worker_death
    too)."""
    from optuna.trial import TrialState

    orphans = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if t.number not in keep]
    for t in orphans:
        study._storage.set_trial_user_attr(t._trial_id, KILLED, reason)
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    return list(orphans)


def close_after_worker_death(study: Any, rerun: bool, keep: Collection[int] = ()) -> list[tuple[Any, bool]]:
    """Close the trials RUNNING when a worker process died, except the trial numbers in `keep`; (trial, whether it
    runs again) each. With `rerun`, each is enqueued once more with its params and closed as killed (neither budget
    nor a failure); a trial that was such a rerun already, or without `rerun`, is FAIL."""
    from optuna.trial import TrialState

    closed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.number in keep:
            continue
        again = rerun and RERUN_OF not in t.user_attrs and bool(t.params)
        if again:
            study._storage.set_trial_user_attr(t._trial_id, KILLED, "its worker process died: run again")
            study.enqueue_trial(t.params, user_attrs={RERUN_OF: t.number})
        else:
            of = f" (as a rerun of trial {t.user_attrs[RERUN_OF]})" if RERUN_OF in t.user_attrs else ""
            study._storage.set_trial_user_attr(t._trial_id, "error", f"its worker process died{of}")
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        closed.append((t, again))
    return closed


def reruns_waiting(study: Any) -> bool:
    """Whether reruns of trials whose worker process died are enqueued and not started."""
    from optuna.trial import TrialState

    return any(RERUN_OF in t.user_attrs for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def sweep_studies(storage: Any, sweep: str) -> list[str]:
    import optuna

    return sorted(s.study_name for s in optuna.get_all_study_summaries(storage) if s.study_name.startswith(f"{sweep}/"))


def check_experiment(storage: Any, sweep: str, experiment: str) -> None:
    """A sweep's runs live in one MLflow experiment, the one its studies were created with: a command on the sweep
    (a resume, select, report) that names another one would split the sweep across two experiments (the new runs
    under a second sweep run, the champion compared with half the trials), so it is refused before any run exists."""
    import optuna

    saved = {
        s.user_attrs[EXPERIMENT]
        for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
        if s.study_name.startswith(f"{sweep}/") and EXPERIMENT in s.user_attrs
    }
    if saved and saved != {experiment}:
        own = sorted(saved)[0]  # one, unless two commands disagreed before this check existed
        raise FloworkError(
            f"sweep {sweep!r} tracks its runs in the MLflow experiment {own!r}, but this command names "
            f"tracking.experiment={experiment!r}: the sweep would be split across two experiments",
            where="the command line (or conf/config.yaml), key `tracking.experiment`",
            fix=f"run the same command with tracking.experiment={own} to go on with sweep {sweep!r} in its own "
            f"experiment; to track into {experiment!r}, start a new sweep (another sweep.name)",
        )
