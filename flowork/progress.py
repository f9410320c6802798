"""Live sweep progress: trials done/total per model, best so far, elapsed, ETA.

A thread in the main process polls the study storage (workers may be other processes or machines). On a terminal
it is a rich live table; otherwise one plain line per change, so CI logs stay readable.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import Any


class Progress:
    def __init__(self, plan: Any, storage: Any, every: float = 1.0) -> None:
        self.plan, self.storage, self.every = plan, storage, every
        self.stop = threading.Event()
        self.t0 = time.time()
        self.thread = threading.Thread(target=self.loop, daemon=True, name="flowork-progress")
        self.tty = sys.stderr.isatty()
        self.last = ""
        self.done_before: int | None = None  # trials a resumed sweep had finished: not part of this run's pace

    def __enter__(self) -> Progress:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)

    def rows(self) -> list[tuple[str, int, int, int, float | None]]:
        import optuna
        from optuna.trial import TrialState

        from flowork.studies import counted

        out = []
        for s in self.plan.studies:
            study = optuna.load_study(study_name=s.name, storage=self.storage)
            trials = [t for t in study.get_trials(deepcopy=False) if counted(t)]
            done = [t for t in trials if t.state.is_finished()]
            values = [float(t.value or 0.0) for t in trials if t.state == TrialState.COMPLETE]
            pick = min if study.direction.name == "MINIMIZE" else max
            best = pick(values) if values else None
            failed = sum(t.state == TrialState.FAIL for t in done)
            out.append((s.model, len(done), s.n_trials, failed, best))
        return out

    def line(self, rows: list[tuple[str, int, int, int, float | None]]) -> str:
        elapsed = time.time() - self.t0
        done = sum(r[1] for r in rows)
        total = sum(r[2] for r in rows)
        if self.done_before is None:
            self.done_before = done
        pace = done - self.done_before
        eta = f"{elapsed / pace * (total - done):.0f}s" if pace else "?"
        parts = [
            f"{m} {d}/{n}" + (f" ({f} failed)" if f else "") + (f" best {b:.4f}" if b is not None else "")
            for m, d, n, f, b in rows
        ]
        return (
            f"[sweep {self.plan.sweep}] {done}/{total} trials | "
            + " | ".join(parts)
            + f" | {elapsed:.0f}s elapsed, ETA {eta}"
        )

    def table(self, rows: list[tuple[str, int, int, int, float | None]]) -> Any:
        from rich.table import Table

        table = Table(title=self.line(rows).split(" | ")[0] + " | " + self.line(rows).split(" | ")[-1])
        for col in ("model", "trials", "failed", "best so far"):
            table.add_column(col, justify="left" if col == "model" else "right")
        for m, d, n, f, b in rows:
            table.add_row(m, f"{d}/{n}", str(f), "—" if b is None else f"{b:.4f}")
        return table

    def loop(self) -> None:
        if self.tty:
            from rich.console import Console
            from rich.live import Live

            with Live(console=Console(stderr=True), refresh_per_second=2, transient=False) as live:
                while not self.stop.wait(self.every):
                    with contextlib.suppress(Exception):  # storage busy: next tick
                        live.update(self.table(self.rows()))
                with contextlib.suppress(Exception):
                    live.update(self.table(self.rows()))
            return
        while not self.stop.wait(self.every):
            try:
                text = self.line(self.rows())
            except Exception:  # storage busy or not created yet: try again next tick
                continue
            if text.split(" | ")[:-1] != self.last.split(" | ")[:-1]:
                print(text, file=sys.stderr, flush=True)
                self.last = text
        with contextlib.suppress(Exception):
            print(self.line(self.rows()), file=sys.stderr, flush=True)
