"""Tracking beyond the embedded store, against real servers on loopback: a full sweep into an `mlflow server` (SQL
backend + proxied artifacts), its resume, serving the champion from the server's registry, an existing experiment
reused, a server outage in the middle of a sweep, and artifacts in an S3 bucket."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from flowork import tracking
from flowork.run import run
from tests.conftest import ROOT, sweep, sweep_command
from tests.servers import MlflowServer, S3Server, free_port, wait_for
from user_code.models import ridge

pytestmark = pytest.mark.slow
MODEL_NAME = "temperature-forecaster"  # conf/config.yaml tracking.model_name


def slow_ridge(X, y, alpha: float = 1.0, delay: float = 0.0, **ignored):
    """ridge, slowed down so a sweep spans a server outage; ignores the test's extra (secret) params."""
    time.sleep(delay)
    return ridge(X, y, alpha=alpha)


def server_sweep_args(tmp_path: Path, short_csv: Path, uri: str, name: str, *extra: str) -> list[str]:
    """A small sweep on the short slice into `uri` (no artifact_location: the server decides where they go)."""
    return [
        f"data.uri={short_csv}",
        f"tracking.uri={uri}",
        f"hydra.sweep.dir={tmp_path}/sweeps/{name}",
        f"sweep.name={name}",
        "data.backtest.folds=2",
        "charts.trials=none",
        *extra,
    ]


def client_of(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(uri)


def trial_runs(client, sweep: str, experiment: str = "temperature") -> list:
    exp = client.get_experiment_by_name(experiment)
    query = f"tags.`flowork.sweep` = '{sweep}' and tags.`flowork.trial` != ''"
    return client.search_runs([exp.experiment_id], query, max_results=1000)


def everything_stored(server: MlflowServer) -> bytes:
    """Every byte the server keeps: its database and its artifact files."""
    blobs = [Path(server.backend.removeprefix("sqlite:///")).read_bytes()]
    blobs += [p.read_bytes() for p in server.artifacts.rglob("*") if p.is_file()]
    return b"\n".join(blobs)


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    """One server for the module (it takes 15-30 s to start here); tests keep apart by experiment or sweep name."""
    server = MlflowServer(tmp_path_factory.mktemp("server"))
    yield server
    server.stop()


@pytest.fixture
def mlflow_server(shared_server):
    if not shared_server.running():  # a test that stopped it and failed before restarting
        shared_server.start()
    return shared_server


def serve(model_name: str, tracking_uri: str, cwd: Path) -> tuple[subprocess.Popen, int]:
    """`make serve-best`'s command: flowork serve, MLflow's server of models:/<name>@champion from the server's
    registry, with the PATH make gives it (flowork serve puts its own interpreter's tools first)."""
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}  # as make passes it: not on a command line ps shows
    command = [sys.executable, "-m", "flowork.cli", "serve", "--model-name", model_name, "--port", str(port)]
    log = cwd / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(f"http://127.0.0.1:{port}/ping", 120, proc, log)
    except RuntimeError:
        proc.terminate()
        raise
    return proc, port


def predict(port: int, rows: pd.DataFrame) -> dict:
    body = json.dumps({"dataframe_split": rows.to_dict(orient="split", index=False)}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def test_sweep_resume_and_serve_the_champion_from_a_tracking_server(mlflow_server, tmp_path, short_csv, weather):
    """Sweep 2 models into the server (a password in its URI, the study in an RDB storage), resume it with a bigger
    budget, then serve the champion from the server's registry like `make serve-best`."""
    import mlflow

    password = "hunter2-in-uri"
    uri = f"http://flowork:{password}@127.0.0.1:{mlflow_server.port}"
    # the study in an RDB storage through SQLAlchemy (sqlite here; postgresql:// or mysql:// on several machines)
    storage = f"sqlite:///{tmp_path}/optuna.db"
    args = server_sweep_args(tmp_path, short_csv, uri, "srv", "model=ridge,random_forest", f"sweep.storage={storage}")
    first = sweep(*args, "search.n_trials=2", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = sweep(*args, "search.n_trials=3")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    client = client_of(mlflow_server.url)
    trials = trial_runs(client, "srv")
    by_study = {}
    for r in trials:
        by_study.setdefault(r.data.tags["flowork.study"], []).append(int(r.data.tags["flowork.trial"]))
        assert r.info.status == "FINISHED"
        assert {"cv_mae", "cv_mae_std", "cv_mae_fold0", "cv_mae_fold1", "holdout_mae"} <= set(r.data.metrics)
        assert r.info.artifact_uri.startswith("mlflow-artifacts:/")  # the server's destination, not this machine's
    import optuna
    from optuna.trial import TrialState

    # each study's complete trials have their runs (a number may have gone to a worker that found the budget spent)
    complete = {
        name: sorted(
            t.number
            for t in optuna.load_study(study_name=name, storage=storage).trials
            if t.state == TrialState.COMPLETE
        )
        for name in ("srv/ridge", "srv/random_forest")
    }
    assert {k: sorted(v) for k, v in by_study.items()} == complete and all(len(v) == 3 for v in complete.values())
    exp = client.get_experiment_by_name("temperature")
    runs = client.search_runs([exp.experiment_id], "tags.`flowork.sweep` = 'srv'", max_results=1000)
    roles = [r.data.tags.get("flowork.role") for r in runs]
    assert roles.count("sweep") == 1 and roles.count("study") == 2  # the resume reused its runs
    study_runs = {
        r.data.tags["flowork.study"]: r.info.run_id for r in runs if r.data.tags.get("flowork.role") == "study"
    }
    for r in trials:  # the parallel workers' runs too (they write to the server themselves)
        assert r.data.tags["mlflow.parentRunId"] == study_runs[r.data.tags["flowork.study"]]
    assert list((mlflow_server.artifacts).rglob("config.yaml"))  # artifacts proxied to --artifacts-destination

    assert password.encode() not in everything_stored(mlflow_server)
    assert trials[0].data.params["tracking.uri"] == f"http://***@127.0.0.1:{mlflow_server.port}"

    version = client.get_model_version_by_alias(MODEL_NAME, "champion")
    model_uri = f"models:/{MODEL_NAME}@champion"
    mlflow.set_tracking_uri(mlflow_server.url)
    pyfunc = mlflow.pyfunc.load_model(model_uri)
    rows = weather.iloc[400 - pyfunc.metadata.metadata["history"] - 2 : 400].reset_index(drop=True)
    offline = pyfunc.predict(rows)
    proc, port = serve(MODEL_NAME, mlflow_server.url, tmp_path)
    try:
        served = predict(port, rows)["predictions"][0]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert served["date"].startswith("2013-02-04")  # the day after the last row (2013-02-03)
    assert served["temp_max_forecast"] == pytest.approx(offline["temp_max_forecast"].iloc[0], rel=1e-6)
    assert version.run_id in {
        r.info.run_id for r in client.search_runs([exp.experiment_id], "tags.`flowork.role` = 'champion'")
    }


def test_rerunning_into_an_existing_experiment_reuses_it_and_logs_no_secret(
    mlflow_server, make_cfg, caplog, monkeypatch
):
    """Upsert: an experiment that exists on the server (here created by someone else, with its own artifact
    location) is reused by name from a new process, never duplicated; flowork says where the artifacts go.
    Secrets in a param, in the environment (interpolated under an innocent key) and in the URI reach no byte the
    server stores."""
    secrets = {"param": "hunter2-in-param", "env": "hunter2-in-env", "uri": "hunter2-in-uri"}
    monkeypatch.setenv("FLOWORK_TEST_DB_PASSWORD", secrets["env"])
    client = client_of(mlflow_server.url)
    existing = client.create_experiment("shared", artifact_location="mlflow-artifacts:/team/shared")
    ids = []
    for _ in range(2):
        tracking._TRACKERS.clear()  # what a new process sees: no cached Tracker
        cfg = make_cfg(
            "model=ridge",
            f"tracking.uri=http://flowork:{secrets['uri']}@127.0.0.1:{mlflow_server.port}",
            "tracking.experiment=shared",
            "model.train._target_=tests.test_tracking_server.slow_ridge",
            f"+model.params.db_password={secrets['param']}",
            "+model.params.note=${oc.env:FLOWORK_TEST_DB_PASSWORD}",
        )
        ids.append(run(cfg, root=str(ROOT)).run_id)
    runs = client.search_runs([existing], max_results=10)
    assert {r.info.run_id for r in runs} == set(ids) and len(ids) == 2
    assert [e.name for e in client.search_experiments() if e.name == "shared"] == ["shared"]
    assert all(r.info.artifact_uri.startswith("mlflow-artifacts:/team/shared/") for r in runs)
    assert "exists with artifact location mlflow-artifacts:/team/shared" in caplog.text  # make_cfg set another one

    params = runs[0].data.params
    assert params["model.params.db_password"] == tracking.REDACTED and params["model.params.note"] == "***"
    stored = everything_stored(mlflow_server)
    for where, secret in secrets.items():
        assert secret.encode() not in stored, f"the secret from the {where} reached the tracking server"


def test_a_sweep_survives_the_tracking_server_going_down_for_ten_seconds(mlflow_server, tmp_path, short_csv):
    """The server stops mid-sweep and comes back ~10 s later on the same port and store: MLflow's REST client
    retries with backoff (MLFLOW_HTTP_REQUEST_MAX_RETRIES=7, BACKOFF_FACTOR=2: ~4 min of retrying per request)
    so every trial's writes land when it returns; no trial fails, none is lost or duplicated."""
    n = 8
    args = server_sweep_args(
        tmp_path,
        short_csv,
        mlflow_server.url,
        "outage",
        "model=ridge",
        f"search.n_trials={n}",
        "model.train._target_=tests.test_tracking_server.slow_ridge",
        "+model.params.delay=0.5",  # 3 fits per trial: ~1.5 s each, so trials keep writing through the outage
    )
    with open(tmp_path / "sweep.log", "w") as log:
        proc = subprocess.Popen(sweep_command(*args), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        client = client_of(mlflow_server.url)
        deadline = time.time() + 120
        finished = lambda: sum(r.info.status == "FINISHED" for r in trial_runs_or_none(client, "outage"))  # noqa: E731
        while time.time() < deadline and not finished():
            assert proc.poll() is None, (tmp_path / "sweep.log").read_text()[-3000:]
            time.sleep(0.5)
        done_before = finished()
        mlflow_server.stop()
        time.sleep(10)
        assert proc.poll() is None, "the sweep ended while the server was down"
        mlflow_server.start()
        proc.wait(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = (tmp_path / "sweep.log").read_text()
    assert proc.returncode == 0, output[-3000:]
    trials = trial_runs(client, "outage")
    assert sorted(int(r.data.tags["flowork.trial"]) for r in trials) == list(range(n))
    assert {r.info.status for r in trials} == {"FINISHED"}
    assert all({"cv_mae", "cv_mae_std", "holdout_mae"} <= set(r.data.metrics) for r in trials)
    assert done_before < n  # the outage hit the sweep while trials were left...
    assert "Retrying" in output and "Failed to establish a new connection" in output  # ...and writes were retried
    # the sweep's best is registered (the champion alias moves only if it beats an earlier sweep's on this server)
    newest = max(client.search_model_versions(f"name='{MODEL_NAME}'"), key=lambda v: int(v.version))
    assert client.get_run(newest.run_id).data.tags["flowork.sweep"] == "outage"


def test_a_sweep_stops_with_a_clear_message_when_the_server_stays_down_and_resumes(mlflow_server, tmp_path, short_csv):
    """Past MLflow's retries (cut to none here, so the test need not wait ~4 min), the sweep stops with a message
    that names the tracking server, not a traceback; once the server is back the same command resumes it: every
    trial ends complete or recorded as failed, no run is left RUNNING, none is duplicated."""
    import optuna

    n = 6
    args = server_sweep_args(
        tmp_path,
        short_csv,
        mlflow_server.url,
        "down",
        "model=ridge",
        f"search.n_trials={n}",
        "model.train._target_=tests.test_tracking_server.slow_ridge",
        "+model.params.delay=0.3",
    )
    env = {**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    with open(tmp_path / "sweep.log", "w") as log:
        proc = subprocess.Popen(sweep_command(*args), cwd=ROOT, env=env, stdout=log, stderr=subprocess.PIPE, text=True)
    try:
        client = client_of(mlflow_server.url)
        deadline = time.time() + 120
        while time.time() < deadline and not any(
            r.info.status == "FINISHED" for r in trial_runs_or_none(client, "down")
        ):
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            time.sleep(0.3)
        mlflow_server.stop()
        _, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "the MLflow tracking server did not answer" in stderr and "run the same command again" in stderr, stderr
    assert "Traceback" not in stderr, stderr[-3000:]

    mlflow_server.start()
    resumed = sweep(*args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    study = optuna.load_study(
        study_name="down/ridge",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(tmp_path / "sweeps/down/optuna.journal"))
        ),
    )
    from flowork.studies import counted

    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) + sum(t.state.name == "FAIL" and counted(t) for t in study.trials) == n
    assert len(complete) >= n - 2  # at most the trial that was running and the one that found the server gone
    runs = {r.info.run_id: r for r in trial_runs(client, "down")}
    for t in complete:  # every complete trial has its complete run on the server
        r = runs[t.user_attrs["run_id"]]
        assert r.info.status == "FINISHED" and {"cv_mae", "holdout_mae"} <= set(r.data.metrics)
    assert "RUNNING" not in {r.info.status for r in runs.values()}
    numbers = [r.data.tags["flowork.trial"] for r in runs.values()]
    assert len(numbers) == len(set(numbers))  # no trial has two runs


def trial_runs_or_none(client, sweep: str) -> list:
    """The trial runs so far (none before the sweep created the experiment)."""
    try:
        return trial_runs(client, sweep) if client.get_experiment_by_name("temperature") else []
    except Exception:
        return []


def test_artifacts_and_champion_in_an_s3_bucket(tmp_path, short_csv, monkeypatch, weather):
    """tracking.artifact_location=s3://... through MLflow's own S3 artifact repository, credentials only from the
    environment (AWS_*, MLFLOW_S3_ENDPOINT_URL): trial artifacts and the champion land in the bucket and the
    champion loads back from the registry."""
    import mlflow

    s3 = S3Server().start()
    try:
        env = {
            "MLFLOW_S3_ENDPOINT_URL": s3.url,
            "AWS_ACCESS_KEY_ID": "flowork-test-id",
            "AWS_SECRET_ACCESS_KEY": "flowork-test-secret-value",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        s3.client().create_bucket(Bucket="flowork-test")
        store = f"sqlite:///{tmp_path}/mlflow.db"
        out = sweep(
            f"data.uri={short_csv}",
            f"tracking.uri={store}",
            "tracking.artifact_location=s3://flowork-test/mlflow",
            f"hydra.sweep.dir={tmp_path}/sweeps/s3",
            "sweep.name=s3",
            "model=ridge",
            "search.n_trials=2",
            "data.backtest.folds=2",
            "charts.trials=none",
        )
        assert out.returncode == 0, out.stderr[-3000:]
        objects = s3.objects("flowork-test")
        client = client_of(store)
        trials = trial_runs(client, "s3")
        assert len(trials) == 2
        for r in trials:
            prefix = r.info.artifact_uri.removeprefix("s3://flowork-test/")
            assert r.info.artifact_uri.startswith("s3://flowork-test/mlflow/")
            assert {f"{prefix}/config.yaml", f"{prefix}/predictions.csv"} <= set(objects)
        assert any(k.endswith("/MLmodel") for k in objects)  # the champion's model
        assert not list(tmp_path.rglob("MLmodel"))  # ...and nothing of it on local disk
        for blob in [*(p.read_bytes() for p in tmp_path.glob("mlflow.db*")), *objects.values()]:  # WAL too
            assert b"flowork-test-secret-value" not in blob

        mlflow.set_tracking_uri(store)
        pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
        rows = weather.iloc[400 - pyfunc.metadata.metadata["history"] - 2 : 400].reset_index(drop=True)
        forecast = pyfunc.predict(rows)
        assert len(forecast) == 1 and pd.notna(forecast["temp_max_forecast"].iloc[0])
    finally:
        s3.stop()
