"""Tracking that loses nothing and leaks nothing: secrets redacted, parallel workers on a fresh embedded store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from flowork.run import run
from flowork.tracking import REDACTED, flatten, get_tracker, redact, redact_overrides, scrub
from tests.conftest import ROOT, flowork, sweep, sweep_args
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
        (
            {"storage_options": {"key": "AKIA", "secret": "s", "client_kwargs": {"region": "x"}}},
            {
                "storage_options.key": REDACTED,
                "storage_options.secret": REDACTED,
                "storage_options.client_kwargs.region": "x",
            },
        ),
        (
            {"accessKey": "a", "PGPASSWORD": "p", "db_pass": "p", "sas_token": "t", "AccountKey": "k", "auth": "b"},
            dict.fromkeys(["accessKey", "PGPASSWORD", "db_pass", "sas_token", "AccountKey", "auth"], REDACTED),
        ),
        (
            {"key_column": "id", "tokenizer": "bpe", "bypass": 1, "author": "me", "passes": 3},
            {"key_column": "id", "tokenizer": "bpe", "bypass": "1", "author": "me", "passes": "3"},
        ),
        (
            {"uri": "https://acct.blob.core.windows.net/c/x.csv?sv=2024&sig=abc%2F&se=1", "u": "s3://b/k?token=zz"},
            {"uri": "https://acct.blob.core.windows.net/c/x.csv?sv=2024&sig=***&se=1", "u": "s3://b/k?token=***"},
        ),
    ],
)
def test_secret_looking_keys_are_redacted(config, expected):
    assert flatten(redact(config)) == expected


def test_values_of_secret_environment_variables_are_scrubbed_wherever_they_appear(monkeypatch):
    """A config may interpolate a secret under an innocent key (`${oc.env:...}`): its value is scrubbed anyway."""
    monkeypatch.setenv("MY_DB_PASSWORD", "correct-horse")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEID")  # an identifier, not a secret: kept
    monkeypatch.setenv("SHORT_TOKEN", "ab")  # too short to scrub from text without mangling it
    monkeypatch.setenv("PWD", "/home/me/project")  # the shell's working directory, not a password: kept
    cfg = {"dsn": "postgresql://db/x?app=correct-horse", "who": "AKIAEXAMPLEID", "n": "ab"}
    cfg["data"] = "/home/me/project/data/x.csv"
    assert redact(cfg) == {**cfg, "dsn": "postgresql://db/x?app=***"}
    assert (
        scrub("Traceback ... connect(password='correct-horse') failed")
        == "Traceback ... connect(password='***') failed"
    )


@pytest.mark.parametrize(
    ("override", "shown"),
    [
        ("+model.params.api_token=hunter2", "+model.params.api_token=***"),
        ("data.read_options.storage_options.secret=s", "data.read_options.storage_options.secret=***"),
        ("tracking.uri=https://me:hunter2@mlflow.example.com", "tracking.uri=https://***@mlflow.example.com"),
        ("data.uri=s3://b/x.csv?token=zz&v=1", "data.uri=s3://b/x.csv?token=***&v=1"),
        ("model.params.max_depth=6", "model.params.max_depth=6"),
        ("~model.params.password", "~model.params.password"),  # a deletion names no value
        ("model=xgb", "model=xgb"),
    ],
)
def test_command_line_overrides_written_to_files_hide_credentials(override, shown):
    assert redact_overrides([override]) == [shown]


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


def test_a_sweep_keeps_a_command_line_credential_out_of_its_files_and_says_where_it_is(tmp_path, short_csv):
    """Only the Optuna storage keeps it (trials are rebuilt from their overrides), and the sweep says so."""
    out = sweep(
        *sweep_args(tmp_path, short_csv),
        "model=ridge",
        "search.n_trials=2",
        "model.train._target_=tests.test_tracking.train_with_token",
        "+model.params.api_token=hunter2",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "model.params.api_token: a credential on the command line" in out.stdout
    holding = {p.name for p in tmp_path.rglob("*") if p.is_file() and b"hunter2" in p.read_bytes()}
    assert holding == {"optuna.journal"}  # not best.yaml, the leaderboard, overrides.yaml, config.yaml, mlflow.db
    assert "api_token=***" in (tmp_path / "sweeps/s/best.yaml").read_text()


def test_a_single_run_keeps_a_command_line_credential_out_of_its_files(tmp_path, short_csv):
    """Hydra writes the run's `.hydra/` files before the job starts; flowork rewrites them redacted."""
    args = [a for a in sweep_args(tmp_path, short_csv) if not a.startswith(("hydra.sweep", "sweep."))]
    out = flowork(
        *args,
        f"hydra.run.dir={tmp_path}/run",
        "model=ridge",
        "model.train._target_=tests.test_tracking.train_with_token",
        "+model.params.api_token=hunter2",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    holding = {p.name for p in tmp_path.rglob("*") if p.is_file() and b"hunter2" in p.read_bytes()}
    assert holding == set()  # not .hydra/overrides.yaml, config.yaml or hydra.yaml, nor the MLflow store
    meta = tmp_path / "run/.hydra"
    assert "+model.params.api_token=***" in (meta / "overrides.yaml").read_text()
    assert "api_token=***" in (meta / "hydra.yaml").read_text()
    assert "data.uri" not in (meta / "config.yaml").read_text()  # the config, not the overrides, is kept there


def write_runs(uri: str, worker: int, n: int) -> None:
    """What one job process does to the store: open it (creating it if missing), then write complete runs."""
    tracker = get_tracker(uri, "race", None)
    for k in range(n):
        run_id = tracker.start(f"w{worker} #{k}", {"worker": str(worker)})
        tracker.log(run_id, params={"k": str(k)}, metrics={"m": float(k)})
        tracker.end(run_id)


@pytest.mark.slow
def test_independent_processes_race_to_create_a_fresh_store(tmp_path):
    """Four processes (not a sweep, whose main process creates the store first) open a store that does not exist.
    Unserialized, MLflow's schema migrations collide and 1 of 4 survived here; with flowork's lock all write."""
    uri = f"sqlite:///{tmp_path}/new/mlflow.db"
    code = f"from tests.test_tracking import write_runs; import sys; write_runs({uri!r}, int(sys.argv[1]), 5)"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(w)], cwd=ROOT, stderr=subprocess.PIPE) for w in range(4)]
    errors = [p.communicate(timeout=120)[1].decode()[-2000:] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    runs = MlflowClient(uri).search_runs([get_tracker(uri, "race").experiment_id], max_results=100)
    assert len(runs) == 20 and {r.info.status for r in runs} == {"FINISHED"}
    assert all(r.data.metrics.keys() == {"m"} for r in runs)


@pytest.mark.slow
def test_four_workers_on_a_store_that_does_not_exist_yet(tmp_path, short_csv):
    assert not (tmp_path / "mlflow.db").exists()
    out = sweep(
        *sweep_args(tmp_path, short_csv, "c", new_store=True),
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
