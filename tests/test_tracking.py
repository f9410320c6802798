"""Tracking that loses nothing and leaks nothing: secrets redacted, parallel workers on a fresh embedded store."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from flowork.run import run
from flowork.tracking import REDACTED, flatten, redact
from tests.conftest import ROOT, sweep, sweep_args
from user_code.models import ridge


def train_with_token(X, y, alpha: float = 1.0, api_token: str = ""):
    return ridge(X, y, alpha=alpha)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"db": {"password": "pw"}}, {"db.password": REDACTED}),
        (
            {"model": {"params": {"api_key": "k", "alpha": 1}}},
            {"model.params.api_key": REDACTED, "model.params.alpha": "1"},
        ),
        (
            {"aws_secret_access_key": "s", "token": "t", "credentials": {"a": 1}},
            {"aws_secret_access_key": REDACTED, "token": REDACTED, "credentials": REDACTED},
        ),
        (
            {"tracking": {"uri": "postgresql://me:hunter2@db:5432/mlflow"}},
            {"tracking.uri": "postgresql://***@db:5432/mlflow"},
        ),
        ({"keyboard": "qwerty", "monkey": 1}, {"keyboard": "qwerty", "monkey": "1"}),  # not every *key* is a secret
    ],
)
def test_secret_looking_keys_are_redacted(config, expected):
    assert flatten(redact(config)) == expected


def test_a_run_logs_no_secret(make_cfg, store):
    cfg = make_cfg(
        "model=ridge", "model.train._target_=tests.test_tracking.train_with_token", "+model.params.api_token=hunter2"
    )
    result = run(cfg, root=str(ROOT))
    client = MlflowClient(store)
    r = client.get_run(result.run_id)
    assert r.data.params["model.params.api_token"] == REDACTED
    config_yaml = client.download_artifacts(result.run_id, "config.yaml")
    assert "hunter2" not in Path(config_yaml).read_text()


def test_four_workers_on_a_store_that_does_not_exist_yet(tmp_path, short_csv):
    assert not (tmp_path / "mlflow.db").exists()
    out = sweep(
        *sweep_args(tmp_path, short_csv, "c"),
        "model=ridge",
        "search.n_trials=12",
        "data.backtest.folds=2",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=4",
        "charts.trials=none",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("temperature")
    trials = client.search_runs([exp.experiment_id], "tags.`flowork.trial` != ''")
    assert len(trials) == 12
    for r in trials:
        assert r.info.status == "FINISHED"
        assert {"cv_mae", "cv_mae_std", "cv_mae_fold0", "cv_mae_fold1", "holdout_mae"} <= set(r.data.metrics)
        assert len(r.inputs.dataset_inputs) == 1
