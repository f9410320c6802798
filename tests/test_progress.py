"""The sweep's progress line: counts, best so far, and an ETA from this run's own pace."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from flowork.progress import Progress


@pytest.mark.parametrize(
    "done_at_start, done_after_10s, eta",
    [
        (0, 5, "ETA 10s"),  # 5 trials in 10 s, 5 left
        (8, 9, "ETA 10s"),  # resumed with 8 done: 1 trial in 10 s, 1 left (not 8 trials' pace)
        (3, 3, "ETA ?"),  # nothing finished yet in this run
    ],
)
def test_eta_follows_this_runs_pace(done_at_start, done_after_10s, eta):
    progress = Progress(SimpleNamespace(sweep="s", studies=[]), storage=None)
    first = progress.line([("ridge", done_at_start, 10, 0, None)])
    assert first.endswith("ETA ?")
    progress.t0 = time.time() - 10
    line = progress.line([("ridge", done_after_10s, 10, 1, 2.5)])
    assert line.endswith(eta)
    assert f"[sweep s] {done_after_10s}/10 trials | ridge {done_after_10s}/10 (1 failed) best 2.5000" in line
