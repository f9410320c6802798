"""Where a sweep worker runs: find the project on this node and check it sees the sweep's shared stores.

joblib's workers start in the sweep's directory with its environment; a worker on a Ray cluster does not: it starts
in the directory `ray start` ran in (on this machine, or on another one), with the node's environment. Two ways
for the project (conf/, user_code/, data/) to reach it:
- the same path on every node (this machine, or a shared filesystem): the worker moves into the sweep's directory;
- Ray ships a copy (`hydra.launcher.ray.init.runtime_env.working_dir=.`): the worker runs in that copy, and the
  config search path, `hydra.runtime.cwd` (relative data paths) and sys.path (user_code) point into it.
Either way the results go where the sweep says (absolute URLs): its study storage and its MLflow store. A file
store that does not exist on this node would be created empty here and the results lost, so that is an error.
"""

from __future__ import annotations

import copy
import os
import socket
from pathlib import Path
from typing import Any

from hydra.types import HydraContext
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from flowork.errors import FloworkError

SHIPPED = "hydra.launcher.ray.init.runtime_env.working_dir"
SCALING_OUT = "the README section `Scaling out`"


def enter_project(hydra_context: HydraContext, config: DictConfig, plan: Any) -> tuple[HydraContext, DictConfig]:
    """Move this worker into the project and make the sweep's choices its own; returns the context and config
    that compose the project's configs on this node."""
    from flowork import instantiate

    origin = str(config.hydra.runtime.cwd)
    root = project_dir(origin, os.getcwd(), shipped=OmegaConf.select(config, SHIPPED, default=None) is not None)
    os.chdir(root)  # relative paths of the trials (hydra.sweep.dir, outputs) start at the project, as for joblib
    instantiate.ensure_importable(root)
    check_visible(plan.storage, "the study storage", "sweep.storage")
    if plan.service is None:  # else the sweep's tracking process writes (and may still be creating the store)
        check_visible(plan.tracking["uri"], "the MLflow store", "tracking.uri")
    # The trials' runs go to the sweep's store: a worker does not inherit $MLFLOW_TRACKING_URI from the shell that
    # started the sweep (`tracking.uri`, when set, is the same value and wins anyway).
    os.environ["MLFLOW_TRACKING_URI"] = plan.tracking["uri"]
    if root == origin:
        return hydra_context, config
    config = copy.deepcopy(config)
    with read_write(config), open_dict(config):
        config.hydra.runtime.cwd = root
    return HydraContext(
        config_loader=relocated(hydra_context.config_loader, origin, root), callbacks=hydra_context.callbacks
    ), config


def project_dir(origin: str, cwd: str, *, shipped: bool) -> str:
    """The project on this node: the copy Ray shipped (the worker's working directory), else the sweep's own."""
    root = cwd if shipped else origin
    if not Path(root, "conf").is_dir():
        how = (
            f"Ray's copy of the project ({SHIPPED}) has no conf/ at {root}"
            if shipped
            else f"the project {origin} does not exist on this node"
        )
        raise FloworkError(
            f"a sweep worker on {socket.gethostname()} cannot find the project: {how}",
            where=SHIPPED,
            fix=f"ship the project with `+{SHIPPED}=.` (run from the project directory), or mount it at the same "
            f"path on every node; see {SCALING_OUT}",
        )
    return root


def relocated(loader: Any, origin: str, root: str) -> Any:
    """The config loader with every search path under `origin` moved under `root` (Hydra keeps absolute paths)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    search_path = copy.deepcopy(loader.get_search_path())
    for element in search_path.get_path():
        for prefix in (f"file://{origin}", origin):
            if element.path == prefix or element.path.startswith(prefix + "/"):
                element.path = element.path.replace(origin, root, 1)
                break
    return ConfigLoaderImpl(config_search_path=search_path)


def check_visible(url: str, what: str, key: str) -> None:
    """A file-backed store (journal file, sqlite) must already exist here: the sweep created it before launching."""
    path = local_file(url)
    if path is not None and not os.path.exists(path):
        raise FloworkError(
            f"a sweep worker on {socket.gethostname()} does not see {what} {url}: it is a file on the machine "
            "that started the sweep",
            where=key,
            fix=f"several machines need a shared one: a database or server URL in `{key}`, or a shared filesystem; "
            f"see {SCALING_OUT}",
        )


def local_file(url: str) -> str | None:
    """The file behind a journal/sqlite/file URL, None for a server or database URL."""
    for scheme in ("journal:", "sqlite:///", "file://"):
        if url.startswith(scheme):
            path = url.removeprefix(scheme)
            return None if path in ("", ":memory:") else path
    return None if "://" in url else url
