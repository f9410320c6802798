"""The real command line: `python -m flowork ...` as a user runs it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time

import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.conftest import ROOT, empty_store, flowork

HEAVY = ("torch", "darts", "prophet", "xgboost", "lightning", "pytorch_lightning")


def store_args(tmp_path, short_csv) -> list[str]:
    return [
        f"data.uri={short_csv}",
        f"tracking.uri={empty_store(tmp_path)}",
        f"tracking.artifact_location=file://{tmp_path}/artifacts",
        f"hydra.run.dir={tmp_path}/out",
        f"hydra.sweep.dir={tmp_path}/multirun",
    ]


def test_help_is_fast():
    flowork("--help")  # warm the file cache
    t0 = time.perf_counter()
    out = flowork("--help")
    assert out.returncode == 0 and "model: " in out.stdout
    assert time.perf_counter() - t0 < 2.0  # ~0.5 s here; generous for a loaded CI machine


def test_ridge_job_imports_no_heavy_library(tmp_path, short_csv):
    code = (
        "import atexit, sys, runpy\n"  # at exit: flowork ends its process without returning here
        f"atexit.register(lambda: print('HEAVY', sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r})))\n"
        f"sys.argv = ['flowork', *{store_args(tmp_path, short_csv)!r}, 'model=ridge', 'tracking.log_model=false']\n"
        "runpy.run_module('flowork', run_name='__main__')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "HEAVY []" in out.stdout
    assert f"experiment 'temperature', in sqlite:///{tmp_path}/mlflow.db" in out.stdout  # where to find the run


@pytest.mark.parametrize(("worker_thread", "ends_at_once"), [(False, True), (True, False)])
def test_the_command_ends_without_teardown_after_its_exit_handlers(tmp_path, worker_thread, ends_at_once):
    code = (
        "import atexit, threading, time\n"
        "from flowork.shutdown import exit_without_teardown\n"
        "atexit.register(lambda: print('exit handler ran'))\n"
        "print('output of the job')\n"  # block-buffered into the pipe: flushed before the process ends
        f"left_open = open({str(tmp_path / 'notes.txt')!r}, 'w')\n"  # user code that never closes its file
        "left_open.write('written, never closed')\n"
        f"if {worker_thread}:\n    threading.Thread(target=time.sleep, args=(0.5,)).start()\n"
        "exit_without_teardown()\n"
        "print('normal exit')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "output of the job"
    assert "exit handler ran" in out.stdout
    assert ("normal exit" not in out.stdout) == ends_at_once
    assert (tmp_path / "notes.txt").read_text() == "written, never closed"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["model=nope"], "no model option 'nope': conf/model/nope.yaml does not exist"),
        (["model=ridge,nope", "-m"], "no model option 'nope'"),  # checked before a sweep starts
        (["metric=maee"], "use one of: mae, mape, r2, rmse, smape"),
        (["data.target.column=temp"], "target column 'temp' is not in the data"),
        (["data.target.horizon=0"], "horizon must be >= 1"),
        (["metric.direction=up"], "expected one of [minimize, maximize]\n  where: conf/metric/mae.yaml"),
        # the file of the chosen option, though the check deep down only knows the config group
        (["data.holdout=1.5"], "where: conf/data/seattle_weather.yaml, key `data.holdout`"),
        # a misspelt key: what the section (or the user's function) has, not Hydra's "use +key=value"
        (["data.target.horizn=3"], "unknown config key `data.target.horizn`: `data.target` has column, horizon, unit"),
        (["model.nmae=x"], "`model` has name, train, params"),
        (["seedd=3"], "unknown config key `seedd`"),
        (["model.params.alpah=3"], "unexpected keyword argument 'alpah'\n  where: conf/model/ridge.yaml"),
        (["features.build.lagz=3"], "unexpected keyword argument 'lagz'"),
    ],
)
def test_user_errors_print_without_traceback(tmp_path, short_csv, args, message):
    out = flowork(*store_args(tmp_path, short_csv), *args)
    assert out.returncode != 0
    assert message in out.stderr
    assert "Traceback" not in out.stderr and "full_key" not in out.stderr  # no OmegaConf internals either
    if args == ["model=nope"]:  # the available options, and how to add one
        assert "ridge" in out.stderr and "darts_nbeats" in out.stderr and "flowork add-model" in out.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: ridge\n  alpha: [1, 2\n", "conf/model/ridge.yaml, line 2, column"),
        ("name: ridge\nparams: {alpha: 1\n", "conf/model/ridge.yaml, line 3, column"),
        ('name: "ridge\n', "conf/model/ridge.yaml, line"),
        ("name: ridge\nparams: {alpha: 1}\nname: ridge2\n", "the key 'name' appears twice in one mapping"),
    ],
)
def test_a_yaml_syntax_error_names_the_file_line_and_column(tmp_path, text, message):
    shutil.copytree(ROOT / "conf", tmp_path / "conf")
    (tmp_path / "conf/model/ridge.yaml").write_text(text)
    out = flowork("model=xgb", cwd=tmp_path, timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert "is not valid YAML" in out.stderr and message in out.stderr


@pytest.mark.parametrize("command", ["select", "report"])
def test_sweep_commands_outside_a_project_say_where_to_run_from(tmp_path, command):
    (tmp_path / "multirun/s").mkdir(parents=True)  # e.g. run from inside the project's multirun/
    (tmp_path / "multirun/s/optuna.journal").write_text("")
    out = subprocess.run(
        [sys.executable, "-m", "flowork.cli", command], cwd=tmp_path / "multirun", capture_output=True, text=True
    )
    assert out.returncode == 2 and "not a flowork project's root" in out.stderr, out.stderr[-2000:]


def test_outside_a_project_says_where_to_run_from(tmp_path):
    out = flowork(cwd=tmp_path, timeout=60)
    assert out.returncode == 2 and "not a flowork project's root" in out.stderr and "flowork init" in out.stderr


def test_traceback_flag(tmp_path, short_csv):
    out = flowork(*store_args(tmp_path, short_csv), "data.target.horizon=0", FLOWORK_TRACEBACK="1")
    assert out.returncode != 0 and "Traceback" in out.stderr


@pytest.mark.slow
def test_five_model_multirun(tmp_path, short_csv):
    models = ["ridge", "random_forest", "xgb", "prophet", "darts_nbeats"]
    # one trial per model with its default params (an empty search space): one job per model family
    out = flowork(
        *store_args(tmp_path, short_csv),
        f"model={','.join(models)}",
        "data.backtest.folds=2",
        "search.n_trials=1",
        "~search.space",
        "-m",
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("temperature")
    runs = client.search_runs([exp.experiment_id], "tags.`flowork.trial` = '0'")
    assert sorted(r.data.tags["flowork.model"] for r in runs) == sorted(models)
    for r in runs:
        assert r.info.status == "FINISHED"
        assert {"cv_mae", "cv_mae_std", "cv_mae_fold0", "cv_mae_fold1", "holdout_mae"} <= set(r.data.metrics)
        assert 0.5 < r.data.metrics["holdout_mae"] < 6
        assert {"config.yaml", "predictions.csv"} <= {a.path for a in client.list_artifacts(r.info.run_id)}
    assert len(client.search_logged_models([exp.experiment_id])) == 1  # the champion's
    assert client.get_model_version_by_alias("temperature-forecaster", "champion")


@pytest.mark.parametrize(
    ("override", "refused"),
    [
        ("model=xgb", False),
        ("model=ridge,xgb", False),
        ("model=ridge,xbg", True),
        ("features=windowz", True),
        ("model=null", False),  # no option: Hydra's rules
        ("model=choice(ridge,xgb)", False),  # sweep grammar: Hydra checks it
        ("model.params.alpha=3", False),  # a key, not a group
        ("hydra/launcher=joblib", False),  # Hydra's own groups
        ("+model.params.x=1", False),
        ("local=default", False),  # a group the project does not have: Hydra's rules (optional)
    ],
)
def test_command_line_group_choices_are_checked(override, refused):
    from flowork.errors import FloworkError
    from flowork.schema import check_choices

    if refused:
        with pytest.raises(FloworkError, match="does not exist"):
            check_choices(ROOT / "conf", [override])
    else:
        check_choices(ROOT / "conf", [override])


def test_a_cli_command_given_to_python_m_flowork_says_where_it_belongs():
    """`python -m flowork select --help`: Hydra would take `select` for a malformed override, with a traceback."""
    from flowork.__main__ import CLI_COMMANDS
    from flowork.cli import app

    named = {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands}
    assert set(CLI_COMMANDS) == named
    out = subprocess.run([sys.executable, "-m", "flowork", "select", "--help"], capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "run `flowork select --help`" in out.stderr


def test_multirun_flag_may_come_before_more_overrides(tmp_path, short_csv):
    """`-m` between overrides (Hydra's parser took none after it: "unrecognized arguments"); this sweep is then
    refused by flowork's own check, before any trial."""
    out = flowork("model=ridge", "-m", *store_args(tmp_path, short_csv), "data.target.horizon=1,7")
    assert out.returncode == 2 and "unrecognized arguments" not in out.stderr
    assert "['data.target.horizon'] would be searched" in out.stderr


def test_an_interpolation_typo_on_the_command_line_is_a_config_error(tmp_path, short_csv):
    out = flowork(*store_args(tmp_path, short_csv), "model=ridge", "features.build.target=${data.target.colum}")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "Interpolation key 'data.target.colum' not found" in out.stderr and "features.build.target" in out.stderr


GRAMMAR_DOCS = "https://hydra.cc/docs/advanced/override_grammar/basic/"


@pytest.mark.parametrize("multirun", [False, True])
@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ("model.params.alpha=choice()", "`choice()`: empty choice is not legal"),
        (
            "model.params.alpha=1;2",
            "`;` cannot be there unquoted\n    model.params.alpha=1;2\n                        ^",
        ),
        ("model.params.alpha=interval(1", "`(` is not closed\n    model.params.alpha=interval(1\n"),
        ("model.params.alpha=[1,2", "`[` is not closed\n    model.params.alpha=[1,2\n                           ^"),
        ("+foo", "no `=` in it: an override is key=value"),
        ("model==ridge", "`=` is not expected there\n    model==ridge\n          ^"),
        ("model.params.alpha=interval(1,)", "cannot read `interval(1,)`"),
    ],
)
def test_an_override_that_does_not_parse_is_a_config_error(tmp_path, short_csv, override, reason, multirun):
    """Named as typed (not with the ++ flowork gives Hydra), Hydra's reason and marker, how to quote it."""
    out = flowork(*store_args(tmp_path, short_csv), "model=ridge", override, *(["-m"] if multirun else []), timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert f"flowork: error: the override `{override}` does not parse: {reason}" in out.stderr
    assert f"where: the command line, `{override}`" in out.stderr
    assert "'key=value'" in out.stderr and GRAMMAR_DOCS in out.stderr
    assert "HYDRA_FULL_ERROR" not in out.stderr and not (tmp_path / "out").exists()  # no job started


def test_an_override_of_flowork_select_that_does_not_parse_is_a_config_error():
    out = subprocess.run(
        [sys.executable, "-m", "flowork.cli", "select", "model.params.alpha=[1,2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert "the override `model.params.alpha=[1,2` does not parse: `[` is not closed" in out.stderr
    assert "where: the overrides given to this command" in out.stderr and GRAMMAR_DOCS in out.stderr


def test_a_search_space_that_does_not_parse_names_its_file_and_key(tmp_path, short_csv):
    """In a sweep and in `flowork check`: the key, the file, Hydra's reason with its marker, the sweep grammar's docs
    (tests/test_search.py has more expressions)."""
    from flowork.check import checks

    for folder in ("conf", "user_code", "data"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    search = tmp_path / "conf/search/ridge.yaml"
    search.write_text(re.sub(r"(model\.params\.alpha:) [^\n#]*", r"\1 interval(1,)", search.read_text(), count=1))
    what = (
        "cannot parse the search expression `model.params.alpha: interval(1,)`: cannot read `interval(1,)` (at the "
        "marked character: a missing argument, comma or bracket?)\n    interval(1,)\n               ^"
    )
    where = "where: conf/search/ridge.yaml, key `search.space.model.params.alpha`"
    docs = "https://hydra.cc/docs/advanced/override_grammar/extended/"

    # this checkout's flowork, from the copy (an installed one may be another checkout's)
    out = flowork(*store_args(tmp_path, short_csv), "model=ridge", "-m", cwd=tmp_path, PYTHONPATH=str(ROOT))
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert what in out.stderr and where in out.stderr and docs in out.stderr and "See https" not in out.stderr
    checked = next(r for r in checks(tmp_path, rows=100) if r.check == "compose search=ridge")
    assert not checked.ok and what in checked.detail and where in checked.detail


def test_a_deprecated_pandas_alias_in_data_freq_is_one_flowork_warning(tmp_path, weather):
    """data.freq: H printed pandas' FutureWarning at each use, flowork's and the example user code's (~40 a run)."""
    hourly = weather.head(400).assign(date=pd.date_range("2020-01-01", periods=400, freq="h").astype(str))
    hourly.drop(index=[50]).to_csv(tmp_path / "hourly.csv", index=False)  # a gap: the data is put on the grid
    out = flowork(*store_args(tmp_path, tmp_path / "hourly.csv"), "model=ridge", "data.freq=H", "data.backtest.folds=2")
    assert out.returncode == 0, out.stderr[-3000:]
    shown = out.stdout + out.stderr
    assert "FutureWarning" not in shown, shown[-3000:]
    assert shown.count("data.freq 'H' is a pandas alias deprecated since pandas 2.2") == 1
    assert "write data.freq: h in the data config" in shown
