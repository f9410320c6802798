"""Warnings about the data, shown once per sweep rather than once per process.

Every trial of a sweep loads the same data and plans the same backtest, so each worker process would log the same
warning (a gap in the data, rows after the target's last value) again. A warning goes through `warn_once`, which
remembers its text: a process shows it once, and a sweep shows it once in all, as its own process loads the data
while planning and hands the texts it showed to its workers (SweepPlan.shown), which remember them as shown.
"""

from __future__ import annotations

import logging

SHOWN: set[str] = set()  # texts of the warnings this process showed, or its sweep did


def warn_once(logger: logging.Logger, message: str, *args: object) -> None:
    """`logger.warning(message, *args)`, unless a warning with the same text was shown already."""
    text = message % args if args else message
    if text not in SHOWN:
        SHOWN.add(text)
        logger.warning("%s", text)
