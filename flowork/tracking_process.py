"""The tracking process of a sweep (started by `tracking_service.Child.spawn`): it applies the MLflow writes the
sweep's process and its workers send, in the order they arrive, with one `Tracker`.

- The sweep's process writes down a pipe (client MAIN). Its workers on this machine connect to a Unix socket in a
  folder only this user can enter, each connection authenticated with a key only the sweep's processes have.
- Workers are accepted only once the sweep's process sends ADMIT, after the study runs their trials name as
  parents: those writes are queued first, whatever the timing.
- Each client's requests are read off its connection as they arrive (`read`) and applied by one thread (`Service`);
  answers and errors go back to the client that asked.
- A client whose connection ends (closed, or its process died) is done: what it sent is applied. The process exits
  once the sweep's process is done and its workers are gone, or LINGER seconds after the sweep's process is done.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import pickle
import queue
import sys
import threading
import time
from typing import Any

from flowork.errors import FloworkError

CREATES = {"start", "find_or_start"}  # the calls that create (or reopen) a run: their first argument is its handle
MAIN = 0  # the sweep's process, on the tracking process's pipe; its workers are numbered from 1 as they connect
ADMIT = b"admit"  # raw bytes on the pipe (a request is a pickle): workers are accepted from here on
LINGER = 10.0  # seconds the tracking process waits for connected workers after the sweep's process is done


def serve(requests: Any, replies: Any) -> None:
    """The tracking process: apply each request in order; answer the ones that wait; report errors."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the sweep, which then sends its runs' KILLED ends
    received: queue.Queue[tuple[int, bytes | None]] = queue.Queue()
    workers = Workers(received)

    def stop(signum: int, frame: Any) -> None:  # a sweep that did not need it (tracking_service.discard_prestarted)
        workers.close()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    replies.send(("listening", None, workers.address))  # before MLflow's import: the sweep may admit workers soon
    read(MAIN, requests, received, admit=workers.admit)
    import mlflow  # noqa: F401  (before the first request: see tracking_service.prestart)

    # warnings on the sweep's console, as Hydra logs them there (urllib3's "Retrying ..." while a server is down)
    logging.basicConfig(format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s", level=logging.WARNING)
    service = Service(replies, workers)
    try:
        while service.going():
            try:
                client, request = received.get(timeout=service.timeout())
            except queue.Empty:
                continue  # a wait for workers may have timed out
            if request is None:
                service.gone(client)
            else:
                service.handle(client, request)
    finally:
        workers.close()


class Service:
    """The tracking process's state: each client's Tracker (the same one: same store), each run's MLflow id by
    handle, and the sweep's waits for its workers to be gone."""

    def __init__(self, replies: Any, workers: Workers) -> None:
        self.replies, self.workers = replies, workers
        self.trackers: dict[int, Any] = {}
        self.unopened: dict[int, Exception] = {}  # why a client's store did not open: its later requests say so too
        self.ids: dict[str, str] = {}
        self.waits: list[tuple[int, int]] = []  # (client, number) of "workers_gone" requests: answered once no
        # worker is connected (the sweep's process sends them)
        self.deadline: float | None = None  # when those waits (or the exit) stop waiting for workers (LINGER)
        self.main_done = False  # the sweep's process closed or ended: its workers' last writes, then exit

    def going(self) -> bool:
        """Answer the waits for workers that are over; False once the sweep's process and its workers are done."""
        settled = not self.workers.connections or time.monotonic() > (self.deadline or math.inf)
        if settled and self.waits:
            for client, number in self.waits:
                self.send(client, ("reply", number, None))
            self.waits, self.deadline = [], None
        return not (self.main_done and settled)

    def timeout(self) -> float | None:
        """How long to wait for the next request: until the deadline, if one runs."""
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def linger(self) -> None:
        self.deadline = self.deadline or time.monotonic() + LINGER

    def gone(self, client: int) -> None:
        """A client's requests ended (its pipe or connection closed, or its process died): all it sent is applied."""
        self.trackers.pop(client, None)
        if client == MAIN:
            self.main_done = True
            self.linger()  # a worker may still be sending its last writes
        elif (connection := self.workers.connections.pop(client, None)) is not None:
            connection.close()  # its reading thread ended: that is how its end came here

    def send(self, client: int, message: Any) -> None:
        connection = self.replies if client == MAIN else self.workers.connections.get(client)
        if connection is not None:
            with contextlib.suppress(OSError):  # its process died: nobody waits for the answer
                connection.send(message)

    def handle(self, client: int, request: bytes) -> None:
        try:
            number, method, args = pickle.loads(request)
        except Exception as e:  # cannot tell which request it was: report it and end (the sweep's waits end too)
            what = f"flowork's tracking process could not read a request: {type(e).__name__}: {e}"
            self.send(client, ("error", None, {"what": what, "where": None, "fix": None}))
            if client == MAIN:
                self.gone(MAIN)  # (the sweep's waits end with this process)
            return
        if method == "workers_gone":
            self.waits.append((client, number))
            self.linger()
            return
        try:
            result = self.apply(client, method, args)
            if number is not None:
                self.send(client, ("reply", number, result))
        except Exception as e:
            self.send(client, ("error", number, error_report(e)))
        if method == "close":
            self.send(client, ("bye", None, None))  # its requests end when it closes its end

    def open(self, key: tuple[str, str, str | None], model_name: str | None) -> Any:
        from flowork.tracking import get_tracker

        if MAIN in self.unopened:  # the sweep's store or model name was refused: so are its workers'
            raise self.unopened[MAIN]
        if model_name is not None:
            from flowork.select import check_model_name

            check_model_name(model_name)
        return get_tracker(*key)

    def apply(self, client: int, method: str, args: Any) -> Any:
        if method == "open":
            try:
                self.trackers[client] = self.open(*args)
            except Exception as e:
                self.unopened[client] = e
                raise
            return None
        if method in {"sync", "close"}:
            return None
        tracker = self.trackers.get(client)
        if tracker is None:  # opening the store failed
            raise self.unopened.get(client) or FloworkError("the tracking store is not open (see the error before)")
        args = [self.ids.get(a, a) if isinstance(a, str) else a for a in args]
        if method in CREATES:
            handle, *args = args
            run_id = self.ids[handle] = getattr(tracker, method)(*args)
            self.send(client, ("id", handle, run_id))
            return run_id
        return getattr(tracker, method)(*args)


def error_report(e: Exception) -> dict[str, str | None]:
    """An error of a request, as the client's QueuedTracker raises it (a FloworkError)."""
    import traceback

    if isinstance(e, FloworkError):
        return {"what": e.what, "where": e.where, "fix": e.fix}
    if os.environ.get("FLOWORK_TRACEBACK"):
        traceback.print_exc()
    return {
        "what": f"tracking in MLflow failed: {type(e).__name__}: {e}",
        "where": "flowork's tracking process (FLOWORK_TRACEBACK=1 prints its traceback)",
        "fix": "fix the cause, then run the same command again: the sweep resumes",
    }


class Workers:
    """The socket a parallel sweep's workers connect to (in a folder only this user can enter; each connection
    authenticated with a key only the sweep's processes have), and each connected worker's connection."""

    def __init__(self, received: queue.Queue[tuple[int, bytes | None]]) -> None:
        import tempfile
        from multiprocessing.connection import Listener

        self.folder = tempfile.mkdtemp(prefix="flowork-tracking-")
        key = os.urandom(32)
        self.listener: Any = None
        self.address: tuple[str, bytes] | None = None  # None: workers write to MLflow themselves
        try:
            self.listener = Listener(os.path.join(self.folder, "socket"), family="AF_UNIX", authkey=key)
            self.address = (self.listener.address, key)
        except OSError:  # e.g. a $TMPDIR too long for a socket's path (~100 characters)
            pass
        self.received = received
        self.connections: dict[int, Any] = {}
        self.admitted = False

    def admit(self) -> None:
        """Accept workers from now on: every request the sweep's process sent before is queued already."""
        if not self.admitted and self.listener is not None:
            self.admitted = True
            threading.Thread(target=self._accept, name="flowork-tracking-accept", daemon=True).start()

    def _accept(self) -> None:
        for client in itertools.count(MAIN + 1):
            try:
                connection = self.listener.accept()
            except OSError:  # closed: the process is ending
                return
            except Exception:  # a connection without the key (multiprocessing.AuthenticationError)
                continue
            self.connections[client] = connection  # before its first request is queued: its answers go here
            read(client, connection, self.received)

    def close(self) -> None:
        import shutil

        if self.listener is not None:
            with contextlib.suppress(OSError):
                self.listener.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def read(client: int, connection: Any, received: queue.Queue, admit: Any = None) -> None:
    """Start a thread that reads a client's requests off its connection as they arrive, into `received` as
    (client, bytes), then (client, None) at its end: a pipe holds ~64 KB, and a trial's predictions alone are about
    that, so a sweep writing while the writes before are applied would wait for them. Kept as bytes: unpickled by
    the one thread that applies them (a frame unpickled here while that thread imports pandas met a half-imported
    pandas). `admit`: called in order when the client sends ADMIT."""

    def run() -> None:
        try:
            while True:
                request = connection.recv_bytes()
                if request == ADMIT and admit is not None:
                    admit()
                else:
                    received.put((client, request))
        except (EOFError, OSError):
            pass
        finally:
            received.put((client, None))

    threading.Thread(target=run, name=f"flowork-tracking-requests-{client}", daemon=True).start()


if __name__ == "__main__":
    from multiprocessing.connection import Connection

    from flowork.shutdown import exit_without_teardown

    serve(Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False))
    exit_without_teardown()  # every write is applied; the sweep waits for this exit
