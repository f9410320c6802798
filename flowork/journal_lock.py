"""The lock of a sweep's Optuna journal file, whose release a Ctrl-C cannot cut halfway.

Optuna's own lock, cut by Ctrl-C before its release renamed the lock file away, leaves the lock behind (every
command on the sweep then waits the 30-s grace period before taking it over) and replaces the KeyboardInterrupt with
a FileNotFoundError. Imported only with optuna, when a journal storage is opened (flowork/studies.py).
"""

from __future__ import annotations

from optuna.storages.journal import JournalFileSymlinkLock

from flowork.shutdown import interrupts_deferred


class JournalLock(JournalFileSymlinkLock):
    def release(self) -> None:
        with interrupts_deferred():
            super().release()
