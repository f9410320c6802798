"""flowork's Hydra sweeper: one Optuna study per model, workers that never wait for a batch.

A thin facade: every Hydra app on the machine scans the `hydra_plugins` namespace, so the heavy logic (Optuna,
MLflow) lives in `_impl` and is imported only when a flowork sweep actually starts.
"""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from .config import FloworkSweeperConf  # noqa: F401  (registers hydra/sweeper=flowork)


class FloworkSweeper(Sweeper):
    def __init__(self) -> None:
        from ._impl import FloworkSweeperImpl

        self.sweeper = FloworkSweeperImpl()

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.sweeper.sweep(arguments)
