"""Shared fixtures: compose the real conf/ with a short data slice and a throwaway MLflow store."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
DATA = ROOT / "data" / "seattle_weather_daily.csv"


@pytest.fixture(autouse=True)
def warnings_not_shown_yet(monkeypatch):
    """flowork shows a warning about the data once per process (flowork/notices.py): each test starts afresh."""
    from flowork import notices

    monkeypatch.setattr(notices, "SHOWN", set())


@pytest.fixture(scope="session")
def weather() -> pd.DataFrame:
    return pd.read_csv(DATA)


@pytest.fixture
def short_csv(tmp_path: Path, weather: pd.DataFrame) -> Path:
    """The first 400 days: enough for 5 folds of 30-lag features, small enough to fit in milliseconds."""
    path = tmp_path / "short.csv"
    weather.head(400).to_csv(path, index=False)
    return path


@functools.cache
def empty_store_template() -> Path:
    """An MLflow sqlite store with nothing in it yet, made once per test session (removed at exit)."""
    import atexit
    import shutil
    import tempfile

    from mlflow import MlflowClient

    folder = Path(tempfile.mkdtemp(prefix="flowork-test-store-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    MlflowClient(f"sqlite:///{folder}/mlflow.db").search_experiments()  # runs MLflow's schema migrations
    return folder / "mlflow.db"


def empty_store(folder: Path) -> str:
    """The URI of a new store folder/mlflow.db, copied from an empty one: MLflow creates a new sqlite store by running
    its ~50 schema migrations, seconds a store here, paid by nearly every test otherwise. Tests of how a store is
    created (locks, errors) let MLflow create theirs."""
    import shutil

    db = folder / "mlflow.db"
    if not db.exists():
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(empty_store_template(), db)
    return f"sqlite:///{db}"


@pytest.fixture
def store(tmp_path: Path) -> str:
    return empty_store(tmp_path)


@pytest.fixture
def make_cfg(tmp_path: Path, short_csv: Path, store: str):
    """compose(overrides) -> the project's config on the short slice, tracking into tmp_path."""

    def _make(*overrides: str) -> DictConfig:
        base = [
            f"data.uri={short_csv}",
            f"tracking.uri={store}",
            f"tracking.artifact_location=file://{tmp_path}/artifacts",
            "tracking.log_model=false",
        ]
        with initialize_config_dir(str(CONF), version_base="1.3"):
            return compose("config", overrides=[*base, *overrides])

    return _make


def sweep_args(tmp_path: Path, short_csv: Path, name: str = "s", new_store: bool = False) -> list[str]:
    """A sweep on the short slice: store tmp_path/mlflow.db (`new_store`: one MLflow creates, else a copy of an empty
    one), output tmp_path/sweeps/<name>."""
    return [
        f"data.uri={short_csv}",
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db" if new_store else f"tracking.uri={empty_store(tmp_path)}",
        f"tracking.artifact_location=file://{tmp_path}/artifacts",
        f"hydra.sweep.dir={tmp_path}/sweeps/{name}",
        f"sweep.name={name}",
    ]


def flowork(*args: str, cwd=ROOT, timeout: int = 300, **env: str) -> subprocess.CompletedProcess:
    """`python -m flowork ARGS` (a single run unless ARGS has -m), as a user runs it, Hydra's short errors on."""
    return subprocess.run(
        [sys.executable, "-m", "flowork", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HYDRA_FULL_ERROR": "", **env},
    )


def sweep_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "flowork", *args, "-m"]


def sweep(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python -m flowork ARGS -m` from the project root, as a user runs it."""
    return subprocess.run(sweep_command(*args), cwd=ROOT, capture_output=True, text=True, timeout=timeout)
