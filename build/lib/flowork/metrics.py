"""Built-in metrics `(y_true, y_pred) -> float`, referenced from conf/metric/*.yaml by `_target_`.

Written with numpy rather than imported from scikit-learn: importing sklearn costs ~1 s, and these are one line each.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def _pair(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)


def mae(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(t - p)))


def rmse(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    t, p = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((t - p) ** 2)))


def mape(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean absolute percentage error, in percent. Undefined (inf) when a true value is 0."""
    t, p = _pair(y_true, y_pred)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(100 * np.mean(np.abs((t - p) / t)))


def smape(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Symmetric MAPE in percent (0..200); a pair where both values are 0 counts as 0 error."""
    t, p = _pair(y_true, y_pred)
    denom = np.abs(t) + np.abs(p)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(denom == 0, 0.0, 2 * np.abs(t - p) / denom)
    return float(100 * np.mean(ratio))


def r2(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    t, p = _pair(y_true, y_pred)
    ss_res = np.sum((t - p) ** 2)
    ss_tot = np.sum((t - t.mean()) ** 2)
    return float(1 - ss_res / ss_tot) if ss_tot > 0 else float("nan")
