"""A trivial model for the scale benchmark: fitting costs nothing, so what is measured is flowork's own cost."""

from __future__ import annotations

import numpy as np


class LastValue:
    def predict(self, X):
        return np.asarray(X.iloc[:, 0], dtype=float)


def last_value(X, y, alpha: float = 1.0):
    return LastValue()
