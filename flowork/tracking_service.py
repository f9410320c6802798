"""A sweep's MLflow writes, applied by a tracking process of their own while the trials run.

Why: a sequential sweep runs its trials in the sweep's own process, one after the other. Tracking them there put
MLflow's import and store opening (~2-3 s here) and every trial's writes on the trials' critical path, while the
second core sat idle; on a tracking server each write is also a network round trip (~100 ms a trial here). A thread
does not help: the writes hold the GIL (~0.3 s of 25 s gained). So the sweep's process sends each write down a pipe
and goes on, and a child process imports MLflow and applies the writes, in order, with the same `Tracker` every
other path uses (wandb and Neptune log through a process of their own for the same reasons).

- Runs are named by handles until the tracking process has created them: `start` returns a handle at once, the
  writes that follow name the run by it.
- A trial is told to Optuna once its run is complete: `resolve` waits until every write sent so far is applied and
  gives the run's MLflow id (the trial's `run_id`). A store that fails stops the sweep between trials with the
  same FloworkError the in-process Tracker raises, and leaves no complete trial without its complete run. The
  sweep tells each trial after the next one ran (`_worker.py`), so that wait is usually over before it starts.
- It starts before Hydra does (`prestart`, from `python -m flowork ... -m`), and exits without the interpreter's
  teardown once every write is applied.
- Nothing sent is lost: the tracking process applies every write it received, also when the sweep's process dies
  (its pipe then closes) or is interrupted (it has its own session, and applies the KILLED ends the sweep sends).
- A parallel sweep's workers on this machine (joblib) send their writes there too when the store is a local file,
  each over a connection of its own (`serve_workers`, `worker_tracker`). So MLflow is imported once, off every
  trial's path, instead of by the sweep's process and by every worker (~2-3 s each, on cores the trials need).
  Workers write to a tracking server themselves (their round trips overlap), as Ray's do (maybe from other
  machines).

This module is the sweep's side (and a worker's); `tracking_process.py` is the tracking process.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import threading
from collections.abc import Collection, Mapping
from typing import Any, NamedTuple

from flowork.errors import FloworkError
from flowork.shutdown import interrupts_deferred
from flowork.tracking import _TRACKERS, Tracker, tracker_key
from flowork.tracking_process import ADMIT

HANDLE = "queued-run:"  # prefix of a run's name until the tracking process reports its MLflow id
_HANDLES = itertools.count()  # a run's handle names its process: workers' handles share the tracking process


def queued_tracker(tracking: Any, root: str, model_name: str | None = None) -> QueuedTracker:
    """A QueuedTracker for a config's `tracking` node, also what `tracker_for` returns in this process until it is
    closed (a trial's run() finds it there). `model_name`: checked by the tracking process (MLflow's rule)."""
    key = tracker_key(tracking, root)
    child = _STARTED.pop() if _STARTED and _STARTED[-1].root == root else None
    discard_prestarted()
    tracker = _TRACKERS[key] = QueuedTracker(key, child or Child.spawn(root), model_name)
    return tracker


def worker_tracker(tracking: Any, root: str, service: tuple[str, bytes]) -> QueuedTracker:
    """In a sweep's worker: a QueuedTracker connected to the sweep's tracking process at `service` (the address and
    key `serve_workers` gave), also what `tracker_for` returns in this process until it is closed."""
    key = tracker_key(tracking, root)
    tracker = _TRACKERS.get(key)
    if isinstance(tracker, QueuedTracker) and tracker.service == service and not tracker.closed:
        return tracker  # opened by this worker job's first call (each job closes its own when done)
    tracker = _TRACKERS[key] = QueuedTracker(key, Child.connect(service, root))
    return tracker


class QueuedTracker(Tracker):
    """A Tracker whose writes a tracking process applies (see the module's doc); reads wait for the writes."""

    writes_later = True

    def __init__(self, key: tuple[str, str, str | None], child: Child, model_name: str | None = None) -> None:
        self.key = key
        self.uri = key[0]
        self.ids: dict[str, str] = {}  # handle -> MLflow run id, as the tracking process reports them
        self.answers: dict[int, Any] = {}  # request number -> its answer
        self.errors: list[FloworkError] = []
        self.raised = False  # the first error was raised once: close() does not raise it again
        self.sent_data: set[Any] = set()  # datasets the tracking process has (a frame is sent once)
        self.ends: dict[str, int] = {}  # run -> the request number of its end, answered once the end is applied
        self.numbers = itertools.count()
        self.changed = threading.Condition()
        self.local: Tracker | None = None  # this process's own Tracker, for reads (`client`)
        self.process, self.requests, self.replies, _, self.service = child  # process: None in a worker
        self.told_address = self.service is not None  # the sweep's: once the tracking process reports it
        self.alive = True  # until its replies end
        self.closed = False  # close() was called
        threading.Thread(target=self._read_replies, name="flowork-tracking-replies", daemon=True).start()
        self._send("open", key, model_name)

    # -- the Tracker's writes: sent, not waited for
    def start(self, name: str, tags: dict[str, str], parent_run_id: str | None = None) -> str:
        return self._create("start", name, tags, parent_run_id)

    def find_or_start(self, name: str, tags: dict[str, str], parent_run_id: str | None = None) -> str:
        return self._create("find_or_start", name, tags, parent_run_id)

    def log(
        self,
        run_id: str,
        params: Mapping[str, str] = {},
        metrics: Mapping[str, float] = {},
        tags: Mapping[str, str] = {},
    ) -> None:
        self._send("log", run_id, dict(params), dict(metrics), dict(tags))

    def log_text(self, run_id: str, text: str, path: str) -> None:
        self._send("log_text", run_id, text, path)

    def log_csv(self, run_id: str, frame: Any, path: str) -> None:
        self._send("log_csv", run_id, frame, path)  # written as CSV there: ~5 ms a trial less here

    def log_dataset(self, run_id: str, raw: Any, source: str, target: str, key: Any) -> None:
        known = (key, source, target) in self.sent_data
        self.sent_data.add((key, source, target))
        self._send("log_dataset", run_id, None if known else raw, source, target, key)

    def end(self, run_id: str, status: str = "FINISHED") -> None:
        self.ends[run_id] = number = next(self.numbers)
        self._send("end", run_id, status, number=number)

    def kill_running_children(self, parent_run_id: str, keep: Collection[int] = (), owner: str | None = None) -> None:
        self._send("kill_running_children", parent_run_id, tuple(keep), owner)

    # -- reads: answered once every earlier write is applied
    def find_trial_run(self, parent_run_id: str, number: int) -> str | None:
        return self._call("find_trial_run", parent_run_id, number)

    def completed_trial(self, run_id: str, metric: str) -> dict[str, float] | None:
        return self._call("completed_trial", run_id, metric)

    def run_tags(self, run_id: str) -> dict[str, str]:
        return self._call("run_tags", run_id)

    @property
    def client(self) -> Any:  # type: ignore[override]
        """MLflow's client in this process (imports MLflow here), once the writes sent so far are applied."""
        self._settle()
        if self.local is None:
            self.local = Tracker(*self.key)
        return self.local.client

    def applied(self, run_id: str | None) -> bool:
        """Whether `resolve(run_id)` returns at once: the run's end is applied (or the tracking process is gone)."""
        if run_id is None:  # no run to wait for
            return True
        end = self.ends.get(run_id)
        return end is not None and (end in self.answers or not self.alive)

    def resolve(self, run_id: str) -> str:
        """The MLflow id of a run, once its end and every write sent before it are applied (not the writes sent
        since: the next trial's, ~10 ms a trial here): a sweep tells Optuna a trial is complete only once the
        trial's run is, so a store that fails leaves no complete trial without its run (the trial is run again when
        the sweep resumes)."""
        end = self.ends.pop(run_id, None)
        if end is None or self.closed:
            self._settle()
        else:
            self._answer(end)
            if self.errors:
                raise self._failure()
        if run_id.startswith(HANDLE) and run_id not in self.ids:
            raise self._failure()
        return self.ids.get(run_id, run_id)

    def serve_workers(self) -> tuple[str, bytes] | None:
        """Let the sweep's workers on this machine send their writes to the tracking process too: (address, key)
        they connect with (`worker_tracker`); their writes are applied after every write sent here before. None:
        it could not listen (workers then write to MLflow themselves)."""
        try:
            self.requests.send_bytes(ADMIT)
        except OSError:  # BrokenPipeError: the tracking process is gone
            raise self._failure() from None
        with self.changed:
            self.changed.wait_for(lambda: self.told_address or not self.alive)
        if not self.told_address:
            raise self._failure()
        return self.service

    def wait_for_workers(self) -> None:
        """Return once every worker's connection is gone (closed, or its process died) and what it sent is applied,
        or after tracking_process.LINGER seconds: a dead worker's last writes may still be on their way."""
        self._call("workers_gone")

    def check(self) -> None:
        """Raise the tracking process's first error, once."""
        if self.errors and not self.raised:
            self.raised = True
            raise self.errors[0]

    def close(self) -> None:
        """Wait until every write is applied and the tracking process has exited (a worker: has said goodbye);
        raise its first error, if any was not raised yet."""
        self.closed = True
        if self.alive:
            with contextlib.suppress(FloworkError):  # it ended anyway; its first error, if any, is raised below
                self._call("close")
        with self.changed:  # its goodbye ends the thread reading its replies: a connection in use is not closed
            self.changed.wait_for(lambda: not self.alive)
        self.requests.close()  # the end of this client's requests
        self.replies.close()
        if self.process is not None:
            self.process.wait()
        if _TRACKERS.get(self.key) is self:
            del _TRACKERS[self.key]
        self.check()

    # -- the pipe
    def _settle(self) -> None:
        """Return once every write sent so far is applied; raise the tracking process's first error, if any."""
        if not self.closed:
            self._call("sync")
        if self.errors:
            raise self._failure()

    def _create(self, method: str, name: str, tags: dict[str, str], parent_run_id: str | None) -> str:
        handle = f"{HANDLE}{os.getpid()}.{next(_HANDLES)}"
        self._send(method, handle, name, dict(tags), parent_run_id)
        return handle

    def _send(self, method: str, *args: Any, number: int | None = None) -> None:
        try:
            with interrupts_deferred():  # a message cut halfway would leave the tracking process reading garbage
                self.requests.send((number, method, args))
        except OSError:  # BrokenPipeError: the tracking process is gone
            raise self._failure() from None

    def _call(self, method: str, *args: Any) -> Any:
        number = next(self.numbers)
        self._send(method, *args, number=number)
        return self._answer(number)

    def _answer(self, number: int) -> Any:
        """Wait for the answer to request `number` (requests are applied in order: every one before it is applied)."""
        with self.changed:
            self.changed.wait_for(lambda: number in self.answers or not self.alive)
        if number not in self.answers:
            raise self._failure()
        answer = self.answers.pop(number)
        if isinstance(answer, FloworkError):
            self.raised = True
            raise answer
        return answer

    def _read_replies(self) -> None:
        while True:
            try:
                kind, key, value = self.replies.recv()
            except (EOFError, OSError):
                break
            if kind == "bye":  # the answer to close() came before: nothing more will
                break
            with self.changed:
                if kind == "id":
                    self.ids[key] = value
                elif kind == "listening":
                    self.service, self.told_address = value, True
                elif kind == "error":
                    error = FloworkError(value["what"], where=value["where"], fix=value["fix"])
                    self.errors.append(error)
                    if key is not None:
                        self.answers[key] = error
                else:
                    self.answers[key] = value
                self.changed.notify_all()
        with self.changed:
            self.alive = False
            self.changed.notify_all()

    def _failure(self) -> FloworkError:
        """The tracking process's first error, or that it ended."""
        self.raised = True
        if self.errors:
            return self.errors[0]
        code = f"exit code {self.process.poll()}" if self.process is not None else "its connection closed"
        return FloworkError(
            f"flowork's tracking process ended unexpectedly ({code}); the writes it had applied are in MLflow",
            where="the messages above this one",
            fix="run the same command again: the sweep resumes, finished trials are kept",
        )


class Child(NamedTuple):
    """A tracking process and the two ends of its pipes this process holds (a worker: its one connection)."""

    process: Any  # subprocess.Popen; None in a worker (the sweep's process started it)
    requests: Any  # multiprocessing.connection.Connection, written here
    replies: Any  # read here
    root: str  # its working directory: the project's
    service: tuple[str, bytes] | None = None  # where workers connect: known to a worker, reported to the sweep

    @classmethod
    def connect(cls, service: tuple[str, bytes], root: str) -> Child:
        from multiprocessing.connection import Client

        address, key = service
        connection = Client(address, family="AF_UNIX", authkey=key)
        return cls(None, connection, connection, root, service)

    @classmethod
    def spawn(cls, root: str) -> Child:
        import subprocess
        from multiprocessing.connection import Connection

        requests_in, requests_out = os.pipe()
        replies_in, replies_out = os.pipe()
        package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # flowork's, for the child
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (package_dir, os.environ.get("PYTHONPATH")) if p)}
        process = subprocess.Popen(
            [sys.executable, "-m", "flowork.tracking_process", str(requests_in), str(replies_out)],
            pass_fds=(requests_in, replies_out),
            cwd=root,
            env=env,
            start_new_session=True,  # not stopped with the sweep's process group: it applies what it was sent
        )
        os.close(requests_in)
        os.close(replies_out)
        return cls(process, Connection(requests_out, readable=False), Connection(replies_in, writable=False), root)


_STARTED: list[Child] = []  # started by `prestart`, not used by a QueuedTracker yet


def prestart(argv: list[str]) -> None:
    """For a sweep (`-m`), start the tracking process before Hydra starts: it imports MLflow (~1.2 s here) while Hydra
    composes the sweep's config, ~0.4 s before the sweep itself could start it. A sweep whose trials run in other
    processes stops it (`discard_prestarted`); one that never starts ends it by exiting (its pipe closes)."""
    # Hydra's flags that print and exit (its own parser would import Hydra first, which this start is ahead of)
    inspects = {"-h", "--help", "--hydra-help", "-c", "--cfg", "-i", "--info", "-sc", "--shell-completion"}
    if {"-m", "--multirun"} & set(argv) and not inspects & set(argv):
        _STARTED.append(Child.spawn(os.getcwd()))


def discard_prestarted() -> None:
    while _STARTED:
        child = _STARTED.pop()
        child.process.terminate()  # it was sent nothing; it removes its socket's folder and exits at once
        child.process.wait()
        child.requests.close()
        child.replies.close()
