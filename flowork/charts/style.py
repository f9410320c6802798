"""One visual language for every chart: size, fonts, colours, titles with units, labelled axes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("flowork.charts")
ACTUAL, FORECAST, ACCENT, MUTED = "#1f2937", "#2563eb", "#dc2626", "#9ca3af"
PALETTE = ["#2563eb", "#d97706", "#059669", "#7c3aed", "#db2777", "#0891b2"]  # one colour per model / component


def figure(title: str, xlabel: str, ylabel: str, *, size: tuple[float, float] = (10, 4.2), rows: int = 1) -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on servers and workers
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.titlesize": 12, "axes.spines.top": False, "axes.spines.right": False})
    fig, axes = plt.subplots(rows, 1, figsize=(size[0], size[1] * rows), squeeze=False)
    fig.suptitle(title, fontsize=13, x=0.01, ha="left")
    for ax in axes[:, 0]:
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.25)
    return fig, axes[:, 0]


def save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def safely(name: str, draw: Callable[[], Any]) -> list[Path]:
    """Draw one chart; a failure is a warning with the reason, and the caller goes on."""
    try:
        out = draw()
    except Exception as e:  # any library error inside a chart must not fail the trial or the sweep
        log.warning("chart %s not drawn: %s: %s", name, type(e).__name__, e)
        return []
    return [] if out is None else out if isinstance(out, list) else [out]
