"""Registers `hydra/sweeper=flowork`. The sweep's settings live in the job config (`sweep:` in conf/config.yaml,
typed in flowork/schema.py) so that they sit next to the search spaces and can be overridden like any other key."""

from dataclasses import dataclass, field
from importlib.util import find_spec
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class FloworkSweeperConf:
    _target_: str = "hydra_plugins.flowork_sweeper.flowork_sweeper.FloworkSweeper"


@dataclass
class MissingRayLauncherConf:
    """hydra/launcher=ray without Hydra's Ray launcher installed: the sweep stops with the install command
    (`_ray.connect`) instead of Hydra listing the launchers that exist. `ray.init` mirrors the real launcher's
    shape so that overrides such as hydra.launcher.ray.init.address=... still compose."""

    _target_: str = "hydra_plugins.flowork_sweeper._ray.MissingRayLauncher"
    ray: dict[str, Any] = field(default_factory=lambda: {"init": {"address": None}, "remote": {}})


ConfigStore.instance().store(group="hydra/sweeper", name="flowork", node=FloworkSweeperConf, provider="flowork")
if find_spec("hydra_plugins.hydra_ray_launcher") is None:
    ConfigStore.instance().store(group="hydra/launcher", name="ray", node=MissingRayLauncherConf, provider="flowork")
