"""Registers `hydra/sweeper=flowork`. The sweep's settings live in the job config (`sweep:` in conf/config.yaml,
typed in flowork/schema.py) so that they sit next to the search spaces and can be overridden like any other key."""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore


@dataclass
class FloworkSweeperConf:
    _target_: str = "hydra_plugins.flowork_sweeper.flowork_sweeper.FloworkSweeper"


ConfigStore.instance().store(group="hydra/sweeper", name="flowork", node=FloworkSweeperConf, provider="flowork")
