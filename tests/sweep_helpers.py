"""Training functions for sweep tests: behaviour chosen per trial number, so failures are deterministic."""

from __future__ import annotations

import os
import time

from flowork.run import TRIAL
from user_code.models import ridge


def scripted(X, y, alpha: float = 1.0, script: str = "ok", sleep: float = 0.0):
    """Trial k does `script.split(',')[k % n]`: ok | raise | nan | die (the process exits at once) | die_once (dies
    unless it is a rerun: a crash that does not come back) | ctrl_c_unguarded (a Ctrl-C that came while a run was
    being created: a run of the trial's study starts, then KeyboardInterrupt, with nothing to end that run). A rerun
    (its worker process died) does what the trial it reruns did, as a crash of its params would."""
    trial = TRIAL.get()
    steps = script.split(",")
    number = trial.tags.get("flowork.rerun_of", trial.tags["flowork.trial"]) if trial else 0
    step = steps[int(number) % len(steps)] if trial else "ok"
    time.sleep(sleep)
    if step == "raise":
        raise RuntimeError("scripted failure")
    if step == "ctrl_c_unguarded":
        from flowork.tracking import _TRACKERS

        (tracker,) = _TRACKERS.values()
        tracker.start("unguarded", trial.tags, trial.parent_run_id)
        raise KeyboardInterrupt
    if step == "die" or (step == "die_once" and "flowork.rerun_of" not in trial.tags):
        os._exit(3)
    model = ridge(X, y, alpha=alpha)
    if step == "nan":
        model.predict = lambda X: [float("nan")] * len(X)
    return model


def reporting(X, y, alpha: float = 1.0, reporter=None):
    """Trial 0 reports 1.0 at every step, later trials 10.0: a median pruner stops them at their first report."""
    trial = TRIAL.get()
    number = int(trial.tags["flowork.trial"]) if trial else 0
    for step in range(5):
        reporter(1.0 if number == 0 else 10.0, step)
    return ridge(X, y, alpha=alpha)


def recording(X, y, **params):
    """Writes what the trial sees of Hydra's config (its model choice) into its own output dir."""
    from pathlib import Path

    from hydra.core.hydra_config import HydraConfig

    hydra = HydraConfig.get()
    Path(hydra.runtime.output_dir, "seen_model.txt").write_text(hydra.runtime.choices["model"])
    return ridge(X, y)


def imports(X, y, alpha: float = 1.0):
    """Writes which process ran the trial (its pid, its parent's) and whether it had imported MLflow into the trial's
    own output dir."""
    import sys
    from pathlib import Path

    from hydra.core.hydra_config import HydraConfig

    seen = f"{os.getpid()} {os.getppid()} {'mlflow' in sys.modules}"
    Path(HydraConfig.get().runtime.output_dir, "imports.txt").write_text(seen)
    return ridge(X, y, alpha=alpha)


def temp_until_exit(X, y, alpha: float = 1.0):
    """Makes a temp folder removed only when the process exits, as cmdstanpy (Prophet's backend) does."""
    import atexit
    import shutil
    import tempfile

    atexit.register(shutil.rmtree, tempfile.mkdtemp(prefix="until-exit-"), True)
    return ridge(X, y, alpha=alpha)
