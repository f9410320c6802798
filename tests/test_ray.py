"""hydra/launcher=ray: flowork's sweep on a real local Ray cluster (started and stopped here), the errors a user
sees when Ray is missing or unreachable, and how a worker finds the project and the shared stores on its node."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from flowork.errors import FloworkError
from hydra_plugins.flowork_sweeper import _project, _ray
from hydra_plugins.flowork_sweeper.config import MissingRayLauncherConf
from tests.conftest import ROOT, sweep_args, sweep_command
from tests.ray_cluster import ENV, LocalRayCluster, free_port


def run_cli(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        sweep_command(*args),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **ENV, **(env or {})},
    )


# ---- errors a user sees -------------------------------------------------------------------------------------------


def test_unreachable_address_is_a_clear_error(tmp_path):
    pytest.importorskip("ray", reason="the `ray` extra is not installed")
    port = free_port()  # nothing listens there
    out = run_cli("model=ridge", "hydra/launcher=ray", f"hydra.launcher.ray.init.address=127.0.0.1:{port}",
                  *sweep_args(tmp_path, tmp_path / "unused.csv", new_store=True))  # fmt: skip
    assert out.returncode == 2, out.stderr[-2000:]
    assert f"no Ray cluster answers at 127.0.0.1:{port}" in out.stderr
    assert "hydra.launcher.ray.init.address" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "mlflow.db").exists()  # stopped before any store or run was created


def test_ray_not_installed_is_a_clear_error(tmp_path):
    fake = tmp_path / "fake" / "ray"
    fake.mkdir(parents=True)
    fake.joinpath("__init__.py").write_text("raise ImportError('No module named ray')\n")  # as if not installed
    out = run_cli("model=ridge", "hydra/launcher=ray", *sweep_args(tmp_path, tmp_path / "unused.csv"),
                  env={"PYTHONPATH": str(fake.parent)})  # fmt: skip
    assert out.returncode == 2, out.stderr[-2000:]
    assert "needs Ray and Hydra's Ray launcher" in out.stderr and "pip install" in out.stderr
    assert "Traceback" not in out.stderr


def test_without_the_launcher_hydra_launcher_ray_still_composes_and_says_how_to_install(monkeypatch):
    cfg = OmegaConf.create({"hydra": {"launcher": OmegaConf.structured(MissingRayLauncherConf)}})
    cfg.hydra.launcher.ray.init.address = "10.0.0.5:6379"  # the overrides a user passes still compose
    assert _ray.uses_ray(cfg)
    monkeypatch.setitem(sys.modules, "hydra_plugins.hydra_ray_launcher.ray_launcher", None)  # import fails
    with pytest.raises(FloworkError, match=r"not installed(.|\n)*pip install"):
        _ray.connect(cfg)
    with pytest.raises(FloworkError, match="pip install"):
        _ray.MissingRayLauncher()


@pytest.mark.parametrize(
    "address, error",
    [
        ("auto", None),
        ("local", None),
        ("10.0.0.5", "is not host:port"),
        ("ray://head", "is not host:port"),
        ("127.0.0.1:{free}", "no Ray cluster answers"),
        ("ray://127.0.0.1:{free}", "no Ray cluster answers"),
        ("no-such-host.invalid:6379", "no Ray cluster answers"),
    ],
)
def test_check_reachable(address, error):
    address = address.format(free=free_port())
    if error is None:
        _ray.check_reachable(address)
    else:
        with pytest.raises(FloworkError, match=error):
            _ray.check_reachable(address, timeout=2)


def test_check_reachable_accepts_a_listening_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        _ray.check_reachable(f"127.0.0.1:{s.getsockname()[1]}")


@pytest.mark.parametrize(
    "configured, slots, n_jobs, expected",
    [
        (None, 6, None, 6),  # Ray: the cluster's worker slots
        (3, 6, None, 3),  # sweep.workers wins
        (None, None, 2, 2),  # joblib's n_jobs
        (None, None, None, 1),  # basic launcher
        (None, 64, None, 10),  # never more workers than trials
    ],
)
def test_worker_count(configured, slots, n_jobs, expected):
    from hydra_plugins.flowork_sweeper._impl import FloworkSweeperImpl

    impl = FloworkSweeperImpl()
    impl.config = OmegaConf.create({"sweep": {"workers": configured}, "hydra": {"launcher": {"n_jobs": n_jobs}}})
    plan = type("Plan", (), {"studies": [type("S", (), {"n_trials": 5})(), type("S", (), {"n_trials": 5})()]})()
    assert impl.worker_count(plan, slots) == expected


# ---- a worker on its node -----------------------------------------------------------------------------------------


def test_project_dir(tmp_path):
    origin, copy = tmp_path / "project", tmp_path / "ray_copy"
    (origin / "conf").mkdir(parents=True)
    (copy / "conf").mkdir(parents=True)
    assert _project.project_dir(str(origin), "/tmp", shipped=False) == str(origin)  # same path on every node
    assert _project.project_dir(str(origin), str(copy), shipped=True) == str(copy)  # Ray's working_dir copy
    with pytest.raises(FloworkError, match="does not exist on this node(.|\n)*working_dir=."):
        _project.project_dir(str(tmp_path / "elsewhere"), "/tmp", shipped=False)
    with pytest.raises(FloworkError, match="has no conf/"):
        _project.project_dir(str(origin), str(tmp_path), shipped=True)


@pytest.mark.parametrize(
    "url, path",
    [
        ("journal:/sweeps/s/optuna.journal", "/sweeps/s/optuna.journal"),
        ("sqlite:////data/mlflow.db", "/data/mlflow.db"),
        ("sqlite:///:memory:", None),
        ("file:///data/mlruns", "/data/mlruns"),
        ("/data/mlruns", "/data/mlruns"),
        ("postgresql://flowork@db:5432/optuna", None),
        ("http://127.0.0.1:5000", None),
        ("grpc://127.0.0.1:13000", None),
    ],
)
def test_local_file(url, path):
    assert _project.local_file(url) == path


def test_a_store_missing_on_the_node_is_a_clear_error(tmp_path):
    (tmp_path / "mlflow.db").touch()
    _project.check_visible(f"sqlite:///{tmp_path}/mlflow.db", "the MLflow store", "tracking.uri")
    _project.check_visible("postgresql://db/optuna", "the study storage", "sweep.storage")
    with pytest.raises(FloworkError, match=r"does not see the study storage(.|\n)*sweep.storage"):
        _project.check_visible(f"journal:{tmp_path}/gone/optuna.journal", "the study storage", "sweep.storage")


def test_relocated_config_loader_composes_from_the_copy(tmp_path):
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    copy = tmp_path / "copy"
    shutil.copytree(ROOT / "conf", copy / "conf")
    (copy / "conf" / "metric" / "only_in_copy.yaml").write_text((ROOT / "conf" / "metric" / "mae.yaml").read_text())
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        moved = _project.relocated(loader, str(ROOT), str(copy))
        paths = [e.path for e in moved.get_search_path().get_path()]
        assert any(p.endswith(f"{copy}/conf") for p in paths) and not any(f"{ROOT}/conf" in p for p in paths)
        assert "only_in_copy" in moved.get_group_options("metric")
        assert "only_in_copy" not in loader.get_group_options("metric")  # the original is left alone


# ---- a real sweep on a local cluster ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("ray", reason="the `ray` extra is not installed")
    with LocalRayCluster(num_cpus=2) as c:
        yield c


def mlflow_client(tmp_path: Path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")


@pytest.mark.slow
def test_sweep_on_a_ray_cluster(cluster, tmp_path, short_csv):
    """Two models, 3 trials each, through hydra/launcher=ray on a 2-CPU cluster: 2 workers, the MLflow tree,
    every trial once, the champion registered."""
    out = run_cli("model=ridge,xgb", "search.n_trials=3", "charts.trials=none", "hydra/launcher=ray",
                  f"hydra.launcher.ray.init.address={cluster.address}", *sweep_args(tmp_path, short_csv))  # fmt: skip
    assert out.returncode == 0, out.stderr[-4000:]
    assert "2 CPUs, 1 per worker -> 2 worker slots" in out.stderr + out.stdout
    sweep_dir = tmp_path / "sweeps" / "s"
    assert sorted(p.name for p in (sweep_dir / ".workers").iterdir()) == ["0_0", "0_1"]
    assert not Path(cluster.temp_dir, "multirun").exists()  # nothing landed where the cluster was started

    client = mlflow_client(tmp_path)
    exp = client.get_experiment_by_name("temperature")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`flowork.sweep` = 's'")
    by_role = {}
    for r in runs:
        by_role.setdefault(r.data.tags.get("flowork.role", "trial"), []).append(r)
    (sweep_run,) = by_role["sweep"]
    studies = {r.data.tags["flowork.study"]: r for r in by_role["study"]}
    assert set(studies) == {"s/ridge", "s/xgb"}
    assert all(r.data.tags["mlflow.parentRunId"] == sweep_run.info.run_id for r in studies.values())
    trials = [r for r in runs if "flowork.trial" in r.data.tags]
    for name, study_run in studies.items():
        mine = [r for r in trials if r.data.tags["mlflow.parentRunId"] == study_run.info.run_id]
        numbers = sorted(int(r.data.tags["flowork.trial"]) for r in mine)
        assert numbers == [0, 1, 2], (name, numbers)  # every trial once: none lost, none duplicated
        assert all(r.info.status == "FINISHED" and "cv_mae" in r.data.metrics for r in mine)
    version = client.get_model_version_by_alias("temperature-forecaster", "champion")
    champion_run = client.get_run(version.run_id)
    assert champion_run.data.tags["mlflow.parentRunId"] == sweep_run.info.run_id

    import optuna

    from flowork.studies import counted, open_storage

    storage = open_storage(f"journal:{sweep_dir}/optuna.journal")
    for name in studies:
        trials = optuna.load_study(study_name=name, storage=storage).trials
        states = [t.state.name for t in trials if counted(t)]  # (not a number a worker took with the budget spent)
        assert states == ["COMPLETE"] * 3, (name, states)


@pytest.mark.slow
def test_a_trial_that_kills_its_ray_worker(cluster, tmp_path, short_csv):
    """Trial 1 exits its process. Ray restarts the worker's task (its own retry of a task whose process died), which
    goes on pulling trials; the dead trial is FAIL in Optuna and FAILED in MLflow, the other trials complete."""
    import optuna

    from flowork.studies import open_storage

    out = run_cli("model=ridge", "model.train._target_=tests.sweep_helpers.scripted", "data.backtest.folds=2",
                  "+model.params.script='ok,die,ok,ok'", "search.n_trials=4", "sweep.max_failure_rate=1.0",
                  "charts.trials=none", "hydra/launcher=ray", f"hydra.launcher.ray.init.address={cluster.address}",
                  *sweep_args(tmp_path, short_csv))  # fmt: skip
    assert out.returncode == 0, out.stderr[-4000:]
    storage = open_storage(f"journal:{tmp_path}/sweeps/s/optuna.journal")
    trials = optuna.load_study(study_name="s/ridge", storage=storage).get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert trials[1].user_attrs["error"] == "its worker process died"
    client = mlflow_client(tmp_path)
    runs = client.search_runs(
        [client.get_experiment_by_name("temperature").experiment_id], filter_string="tags.`flowork.trial` != ''"
    )
    status = {r.data.tags["flowork.trial"]: r.info.status for r in runs}
    assert status == {"0": "FINISHED", "1": "FAILED", "2": "FINISHED", "3": "FINISHED"}


@pytest.fixture
def grpc_storage(tmp_path):
    """Optuna's gRPC storage proxy in front of a study database, as the README tells a user to run it."""
    port = free_port()
    db = tmp_path / "optuna.db"
    code = (
        "from optuna.storages import get_storage, run_grpc_proxy_server; "
        f"run_grpc_proxy_server(get_storage('sqlite:///{db}'), host='127.0.0.1', port={port})"
    )
    server = subprocess.Popen([sys.executable, "-c", code])
    try:
        yield f"grpc://127.0.0.1:{port}", f"sqlite:///{db}"
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_ray_ships_the_project_to_its_workers(cluster, tmp_path, grpc_storage):
    """The set-up for several machines, on one: `runtime_env.working_dir=.` ships conf/, user_code/ and data/ (the
    trials compose, import and read the copy; their relative output dirs land in it, inside the cluster's temp dir),
    the studies live behind Optuna's gRPC proxy, the runs in the sweep's MLflow store."""
    import optuna

    project = tmp_path / "project"
    for part in ("conf", "user_code", "data"):
        shutil.copytree(ROOT / part, project / part, ignore=shutil.ignore_patterns("__pycache__", "local"))
    proxy_url, database = grpc_storage
    store = f"sqlite:///{tmp_path}/mlflow.db"
    out = run_cli("model=ridge", "search.n_trials=2", "charts.trials=none", "charts.top_k=5", "sweep.name=shipped",
                  f"sweep.storage={proxy_url}",
                  f"tracking.uri={store}", f"tracking.artifact_location=file://{tmp_path}/artifacts",
                  "hydra/launcher=ray", f"hydra.launcher.ray.init.address={cluster.address}",
                  "+hydra.launcher.ray.init.runtime_env.working_dir=.", cwd=project)  # fmt: skip
    assert out.returncode == 0, out.stderr[-4000:]
    assert (project / "multirun" / "shipped" / "leaderboard.md").exists()  # the sweep's own outputs
    assert not list((project / "multirun" / "shipped").glob("ridge/[0-9]*"))  # ...but no trial ran in the project
    # the study's config is saved with the sweep, as under joblib: `flowork report` draws with its chart settings
    saved = OmegaConf.load(project / "multirun" / "shipped" / "ridge" / ".hydra" / "config.yaml")
    assert (saved.charts.trials, saved.charts.top_k, saved.model.name) == ("none", 5, "ridge")
    shipped_trials = list(Path(cluster.temp_dir).glob("**/working_dir_files/*/multirun/shipped/ridge/0"))
    assert shipped_trials, "the trials did not run in Ray's copy of the project"
    study = optuna.load_study(study_name="shipped/ridge", storage=database)  # behind the proxy
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    client = mlflow_client(tmp_path)
    trials = client.search_runs(
        [client.get_experiment_by_name("temperature").experiment_id], filter_string="tags.`flowork.trial` != ''"
    )
    assert sorted(r.data.tags["flowork.trial"] for r in trials) == ["0", "1"]
    assert all(r.info.status == "FINISHED" for r in trials)


def test_grpc_storage_errors():
    from flowork.studies import open_storage

    with pytest.raises(FloworkError, match="is not grpc://host:port"):
        open_storage("grpc://db-without-port")
    with pytest.raises(FloworkError, match="no Optuna gRPC storage proxy answers"):
        from flowork.studies import grpc_storage

        grpc_storage(f"grpc://127.0.0.1:{free_port()}", timeout=0.5)
