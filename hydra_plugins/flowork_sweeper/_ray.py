"""`hydra/launcher=ray` from the sweep's side: connect to the cluster once, with a clear error, and size the workers.

Hydra's Ray launcher calls `ray.init(**hydra.launcher.ray.init)` itself when it launches, and reuses a connection
that already exists. flowork connects first, before any study or MLflow run is created, because:
- `ray.init` at an address where nothing listens retries for minutes (measured: > 2 min) before failing;
- a missing Ray install would only surface as an ImportError deep inside the launcher;
- the launcher has no `n_jobs`: the number of long-lived workers comes from the cluster (its CPUs divided by the
  CPUs each worker task asks for, `hydra.launcher.ray.remote.num_cpus`, 1 by default).
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from omegaconf import DictConfig, OmegaConf

from flowork.errors import FloworkError

log = logging.getLogger("flowork.sweep")

RAY_LAUNCHER = "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"
# registered as hydra/launcher=ray when Hydra's Ray launcher is not installed (config.py), so that choosing it
# says how to install it instead of listing the launchers that exist
MISSING_RAY_LAUNCHER = "hydra_plugins.flowork_sweeper._ray.MissingRayLauncher"
INSTALL = "pip install -c constraints.txt -e '.[ray]'  (`make install` includes it)"


class MissingRayLauncher:
    """Stands in for hydra/launcher=ray when hydra-ray-launcher is not installed; the sweep stops before it is
    built (`connect`), this only covers a launcher built some other way."""

    def __init__(self, **_: Any) -> None:
        raise FloworkError("hydra/launcher=ray: Hydra's Ray launcher is not installed", fix=INSTALL)


def uses_ray(config: DictConfig) -> bool:
    target = OmegaConf.select(config, "hydra.launcher._target_", default=None)
    return target in (RAY_LAUNCHER, MISSING_RAY_LAUNCHER)


def connect(config: DictConfig) -> int:
    """Connect this process to the Ray cluster the launcher will use; returns how many workers fit on it."""
    try:
        import hydra_plugins.hydra_ray_launcher.ray_launcher  # noqa: F401
        import ray
    except ImportError as e:
        raise FloworkError(
            f"hydra/launcher=ray needs Ray and Hydra's Ray launcher, which are not installed ({e})", fix=INSTALL
        ) from None
    init: dict[str, Any] = dict(OmegaConf.to_container(config.hydra.launcher.ray.init, resolve=True) or {})  # type: ignore[arg-type]
    address = init.get("address") or os.environ.get("RAY_ADDRESS")
    if address:
        check_reachable(str(address))
    # No address: Ray joins the cluster running on this machine, else starts one for this sweep. (The launcher
    # would also set a small object_store_memory, which Ray refuses when it joins a running cluster.)
    if not ray.is_initialized():
        try:
            ray.init(**init)
        except Exception as e:
            raise FloworkError(
                f"could not connect to Ray ({address or 'a new local instance'}): {type(e).__name__}: {e}",
                where="hydra.launcher.ray.init",
                fix="check the cluster with `ray status --address ADDRESS`; see the README section on scaling out",
            ) from None
    cpus = float(ray.cluster_resources().get("CPU", 0))
    per_worker = float(OmegaConf.select(config, "hydra.launcher.ray.remote.num_cpus", default=None) or 1)
    slots = int(cpus // per_worker)
    log.info("Ray cluster: %g CPUs, %g per worker -> %d worker slots", cpus, per_worker, slots)
    if slots < 1:
        raise FloworkError(
            f"the Ray cluster has {cpus:g} CPUs; a worker asks for {per_worker:g}",
            where="hydra.launcher.ray.remote.num_cpus",
            fix="ask for fewer CPUs per worker, or add nodes to the cluster",
        )
    warm_workers(slots, per_worker)
    return slots


def warm_workers(slots: int, per_worker: float) -> None:
    """Start one task per worker slot that imports what every trial needs, and do not wait for them. Ray keeps a
    job's worker processes for its later tasks, so the launcher's workers find these imports done (~4 s a process
    here, most of a cold worker's start) and they overlap with the sweep's planning, as for joblib (`_joblib.py`)."""
    import ray

    task = ray.remote(num_cpus=per_worker)(_import_trial_modules)
    for _ in range(slots):
        task.remote()


def _import_trial_modules() -> int:
    import optuna  # noqa: F401

    import flowork.run  # noqa: F401

    return os.getpid()


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast when nothing answers at `host:port` or `ray://host:port`; `auto` and `local` are Ray's to find."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise FloworkError(
            f"Ray address {address!r} is not host:port, ray://host:port, auto or local",
            where="hydra.launcher.ray.init.address",
            fix="use the address `ray start --head` printed, e.g. hydra.launcher.ray.init.address=10.0.0.5:6379",
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise FloworkError(
            f"no Ray cluster answers at {address}: {e.strerror or type(e).__name__}",
            where="hydra.launcher.ray.init.address" + (" ($RAY_ADDRESS)" if os.environ.get("RAY_ADDRESS") else ""),
            fix="start one (`ray start --head --port 6379`) or fix the address; "
            "omit the address to let Ray start a local instance for this sweep",
        ) from None


def worker_overrides(config: DictConfig, sweep_dir: str) -> list[str]:
    """Overrides of the worker jobs the launcher starts. A Ray worker starts in the directory `ray start` ran in,
    where the launcher would create the worker's job directory (`multirun/...` relative to it): name the sweep's
    directory by its absolute path, unless Ray ships a copy of the project, whose relative paths are the copy's."""
    if OmegaConf.select(config, "hydra.launcher.ray.init.runtime_env.working_dir", default=None) is not None:
        return []
    return [f"hydra.sweep.dir={os.path.abspath(sweep_dir)}"]
