"""`flowork init`, `add-model` and `check` in a fresh directory, as a new user runs them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from flowork.errors import FloworkError
from flowork.scaffold import add_model, init
from tests.conftest import ROOT

FLOWORK = [sys.executable, "-m", "flowork.cli"]


def cli(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*FLOWORK, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )


def job(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flowork", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    out = cli("init", "proj", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    return tmp_path / "proj"


def test_init_example_add_model_check_and_sweep(project):
    for path in (
        "conf/config.yaml",
        "user_code/models.py",
        "data/seattle_weather_daily.csv",
        "Makefile",
        ".gitignore",
        "README.md",
    ):
        assert (project / path).exists(), path
    readme = (project / "README.md").read_text()
    assert "make run" in readme
    request = re.search(r'read_csv\("([^"]+)"\)', readme)  # the README's request to the served champion
    assert request and (project / request.group(1)).is_file()
    install = subprocess.run(["make", "-n", "install"], cwd=project, capture_output=True, text=True).stdout
    assert "pip install torch==2.13.0 && pip install -c constraints.txt -e '" in install  # this checkout, one word
    out = cli("add-model", "my_model", "--like", "xgb", cwd=project)
    assert out.returncode == 0, out.stderr
    assert "def my_model(" in (project / "user_code/models.py").read_text()
    assert cli("add-model", "my_model", cwd=project).returncode != 0  # no overwrite
    check = cli("check", "--rows", "300", cwd=project)
    assert check.returncode == 0, check.stdout[-3000:]
    assert "model my_model" in check.stdout and "FAIL" not in check.stdout
    sweep = job(
        "model=ridge,my_model", "search.n_trials=2", "data.backtest.folds=2", "sweep.name=first", "-m", cwd=project
    )
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    board = (project / "multirun/first/leaderboard.md").read_text()
    rows = {line.split("|")[2].strip(): line for line in board.splitlines()[2:]}
    assert set(rows) == {"ridge", "my_model"} and all("2 / 0 / 0" in line for line in rows.values())
    # on demand: a new version from the same sweep; no better than the champion, so the alias stays, unless forced
    again = cli("select", "--sweep", "first", cwd=project)
    assert again.returncode == 0 and "(version 2)" in again.stdout, again.stderr[-2000:]
    assert (
        "not champion: cv_mae" in again.stdout and "`flowork select --sweep first sweep.promote=always`" in again.stdout
    )
    elsewhere = cli("select", "--sweep", "first", f"tracking.uri=sqlite:///{project}/other.db", cwd=project)
    assert elsewhere.returncode == 2 and "sweep 'first' has no runs in the tracking store" in elsewhere.stderr
    forced = cli("select", "--sweep", "first", "sweep.promote=always", cwd=project)
    assert forced.returncode == 0 and "@champion (version 3)" in forced.stdout, forced.stderr[-2000:]
    assert "not champion" not in forced.stdout
    report = cli("report", cwd=project)  # the latest sweep by default
    assert report.returncode == 0 and (project / "multirun/first/report.html").stat().st_size > 100_000


@pytest.mark.parametrize("name", ["my-model", "MyModel", "1model", "class", "lambda", "_", "__init__", "_mine"])
def test_add_model_refuses_a_name_that_cannot_name_its_training_function(tmp_path, name):
    with pytest.raises(FloworkError, match="not a lowercase Python identifier"):
        add_model(tmp_path, name)


def test_init_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    out = cli("init", "busy", cwd=tmp_path)
    assert out.returncode != 0 and "not empty" in out.stderr and "--force" in out.stderr
    assert cli("init", "busy", "--force", cwd=tmp_path).returncode == 0
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


def test_init_force_replaces_only_files_of_the_same_names_and_lists_them(tmp_path):
    project = tmp_path / "p"
    assert cli("init", "p", cwd=tmp_path).returncode == 0
    (project / "data" / "mine.csv").write_text("date,y\n")  # the user's own files, in folders the blank example prunes
    (project / "conf" / "model" / "mine.yaml").write_text("name: mine\n")
    (project / "Makefile").write_text("edited\n")
    out = cli("init", "p", "--example", "blank", "--force", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (project / "data" / "mine.csv").read_text() == "date,y\n"
    assert (project / "conf" / "model" / "mine.yaml").exists()
    assert (project / "Makefile").read_text() != "edited\n"
    assert "replaced" in out.stdout and "Makefile" in out.stdout


def test_blank_project_points_at_what_to_fill(tmp_path):
    """... and `flowork check` says the ??? keys once, with their file (not once per check they fail: 24 times)."""
    assert cli("init", "blank", "--example", "blank", cwd=tmp_path).returncode == 0
    project = tmp_path / "blank"
    readme = (project / "README.md").read_text()
    for key in ("uri", "time_column", "freq", "target.column"):
        assert f"`{key}`" in readme
    out = job("model=ridge", cwd=project)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "still marked ???" in out.stderr and "conf/data/main.yaml" in out.stderr
    for key in ("data.uri", "data.time_column", "data.freq", "data.target.column"):
        assert key in out.stderr
    check = cli("check", cwd=project)
    assert check.returncode != 0 and check.stdout.count("still marked ???") == 1, check.stdout
    assert "where: conf/data/main.yaml" in check.stdout and "more check(s) with the same failure" in check.stdout


def test_a_blank_project_filled_in_sweeps_and_registers_its_champion(tmp_path):
    """Every search file the blank example keeps fits its model's features (xgb's once searched the lags of
    exogenous columns the univariate features do not have: its trials ran, its champion refit failed); a choice
    among lists reaches the refit as lists."""
    import numpy as np
    import pandas as pd

    assert cli("init", "b", "--example", "blank", cwd=tmp_path).returncode == 0
    project = tmp_path / "b"
    t = pd.date_range("2023-01-01", periods=600, freq="h")
    noise = np.random.default_rng(0).normal(size=len(t))
    load = pd.DataFrame({"ts": t.strftime("%Y-%m-%d %H:%M"), "load": 100 + 20 * np.sin(t.hour / 24 * 6.28) + noise})
    load.to_csv(project / "data" / "load.csv", index=False)
    data = project / "conf/data/main.yaml"
    filled = {"uri": "data/load.csv", "time_column": "ts", "freq": "h", "  column": "load"}
    data.write_text(
        re.sub(
            r"^(uri|time_column|freq|  column): \?\?\?",
            lambda m: f"{m[1]}: {filled[m[1]]}",
            data.read_text(),
            flags=re.M,
        )
    )
    out = job(
        "model=ridge,xgb",
        "search.n_trials=2",
        "charts.trials=none",
        "sweep.name=b",
        "features.build.windows=choice([3,12],[6])",
        f"tracking.uri=sqlite:///{tmp_path}/m.db",
        "-m",
        cwd=project,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    best = (project / "multirun/b/best.yaml").read_text()
    assert "champion" in best and re.search(r"features\.build\.windows=\[(3,12|6)\]", best), best


def features_of(conf: Path, freq: str, *overrides: str):
    """The features pipeline the ridge model of the project at `conf` runs on a series `v` spaced `freq`."""
    from hydra import compose, initialize_config_dir

    from flowork.run import pipeline_of

    with initialize_config_dir(str(conf), version_base="1.3"):
        cfg = compose("config", overrides=["model=ridge", f"data.freq={freq}", "data.target.column=v", *overrides])
    return pipeline_of(cfg.features, str(conf))


@pytest.mark.parametrize(
    ("freq", "terms"),
    [("h", ["dow", "hod"]), ("30min", ["dow", "hod"]), ("D", ["dow", "doy"])],
)
def test_a_blank_project_builds_calendar_terms_and_seasonal_lags_that_suit_the_datas_spacing(tmp_path, freq, terms):
    """Hourly data gets hour-of-day and day-of-week terms, and the same hour yesterday and last week, which a served
    request must then carry (its history: 168 rows); daily data gets day-of-week terms and needs no more history per
    request than with the features the blank project had (conf/features/univariate.yaml)."""
    import numpy as np
    import pandas as pd

    from flowork.serving import required_history

    init(tmp_path / "p", "blank")
    t = pd.date_range("2024-01-01", periods=500, freq=freq)
    raw = pd.DataFrame({"v": np.random.default_rng(0).normal(size=len(t))}, index=t)
    blank = features_of(tmp_path / "p" / "conf", freq)
    X = blank(raw)
    assert sorted({c.split("_")[0] for c in X.columns if c.endswith("_sin")}) == terms
    univariate = features_of(ROOT / "conf", freq, "features=univariate")
    history, before = required_history(raw, blank, X), required_history(raw, univariate, univariate(raw))
    if freq == "h":
        assert {"v_lag23", "v_lag167"} <= set(X.columns) and history == 168
    elif freq == "D":
        assert history <= before


def test_check_catches_leaky_features_and_broken_training(project):
    features = project / "user_code/features.py"
    features.write_text(
        features.read_text().replace(
            'cols[f"{target}_mean{w}"], cols[f"{target}_std{w}"] = _trailing(values[target], w)',
            'cols[f"{target}_mean{w}"], cols[f"{target}_std{w}"] = _trailing(values[target], w)\n'
            '        cols[f"{target}_mean{w}"] = df[target].rolling(w, center=True).mean().to_numpy()',
        )
    )
    models = project / "user_code/models.py"
    models.write_text(
        models.read_text().replace(  # N-BEATS uses other features, so its training is reached
            "    return NBeatsForecaster(model, horizon, freq, mean, scale)", "    return None"
        )
    )
    scores = "def no_args():\n    return 1.0\n\n\ndef text(y_true, y_pred):\n    return 'low'\n"
    (project / "user_code/scores.py").write_text(scores)
    for name in ("no_args", "text"):
        (project / f"conf/metric/{name}.yaml").write_text(
            f"_target_: user_code.scores.{name}\nname: {name}\ndirection: minimize\n"
        )
    out = cli("check", "--rows", "300", cwd=project)
    assert out.returncode == 1
    assert "leakage" in out.stdout and "temp_max_mean7" in out.stdout
    assert "has no predict" in out.stdout
    assert "`no_args` cannot be called with these arguments" in out.stdout
    assert "the metric `text` returned 'low', not a number" in out.stdout


def test_check_reports_a_yaml_syntax_error_once(project):
    (project / "conf/model/xgb.yaml").write_text("name: xgb\n  params: {max_depth: 3\n")
    out = cli("check", cwd=project)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "conf/model/xgb.yaml" in out.stdout and "not valid YAML" in out.stdout
    assert "1 check(s) failed" in out.stdout  # not one per option that composes the file


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["select", "--sweep", "nope"], "no sweep 'nope' under"),
        (["select", "--sweep", "../../etc"], "'../../etc' is not a sweep name"),
        (["report", "--sweep", "nope"], "use one of ['first']"),
        (["init", "notes.txt/project"], "cannot create the project in notes.txt/project"),
    ],
)
def test_cli_misuse_is_a_clear_error(tmp_path, args, message):
    shutil.copytree(ROOT / "conf", tmp_path / "conf")  # a project's root: select and report refuse to run elsewhere
    (tmp_path / "multirun/first").mkdir(parents=True)
    (tmp_path / "multirun/first/optuna.journal").touch()
    (tmp_path / "notes.txt").write_text("a file, not a directory")
    out = cli(*args, cwd=tmp_path, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert message in " ".join(out.stderr.split())  # the console wraps long lines
    assert sorted(p.name for p in (tmp_path / "multirun").iterdir()) == ["first"]  # nothing created


def test_init_force_backs_up_and_lists_every_file_the_user_changed(tmp_path):
    """`init --force` over a project: every file that differs from flowork's (the user's code first) is named, none
    cut from the list, and kept under flowork-backup/<time>/; files flowork would write unchanged are not named."""
    assert cli("init", "p", cwd=tmp_path).returncode == 0
    project = tmp_path / "p"
    models = project / "user_code/models.py"
    mine = models.read_text() + "\n\ndef my_model(X, y):\n    return None\n"
    models.write_text(mine)
    edited = ["user_code/models.py"]
    for path in [project / "Makefile", *sorted((project / "conf").glob("*/*.yaml"))[:12]]:  # > the 10 once printed
        path.write_text(path.read_text() + "# mine\n")
        edited.append(str(path.relative_to(project)))
    out = cli("init", "p", "--force", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    listed = re.findall(r"^  (\S+)$", out.stdout.split("created")[0], flags=re.M)
    assert sorted(listed) == sorted(edited)  # every changed file, and only those
    backups = list((project / "flowork-backup").iterdir())
    assert len(backups) == 1 and str(backups[0].relative_to(tmp_path)) in out.stdout
    assert (backups[0] / "user_code/models.py").read_text() == mine
    assert sorted(str(p.relative_to(backups[0])) for p in backups[0].rglob("*") if p.is_file()) == sorted(edited)
    assert "def my_model(" not in models.read_text()  # replaced by flowork's ...
    again = cli("init", "p", "--force", cwd=tmp_path)  # ... so nothing differs now: nothing to replace or back up
    assert again.returncode == 0 and "replaced" not in again.stdout
    assert len(list((project / "flowork-backup").iterdir())) == 1
    models.write_text(mine)  # a second backup does not overwrite the first, even within the same second
    assert cli("init", "p", "--force", cwd=tmp_path).returncode == 0
    assert len(list((project / "flowork-backup").iterdir())) == 2
    assert "flowork-backup/" in (project / ".gitignore").read_text().splitlines()


MODELS_PY = """\
import os.path
import numpy as np
import pandas as pd
from sklearn import linear_model as lm

scale = 2.0
low, (mid, high) = 1, (2, 3)
try:
    import xgboost
except ImportError as error:
    xgboost = None
if scale > 1:
    threshold = 3
for step in range(2):
    pass
squares = [k * k for k in range(3)]


class wrapper:
    inner = 1


def helper(alpha):
    local = alpha
    return local


def ridge(X, y, alpha=1.0):
    return lm.Ridge(alpha=alpha * scale).fit(np.asarray(X), y)
"""


def small_project(root: Path, models_py: str | None = MODELS_PY) -> Path:
    """A project of one model (ridge) and the given user_code/models.py (none: no such file)."""
    for path in ("conf/config.yaml", "conf/model/ridge.yaml", "conf/search/ridge.yaml"):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text((ROOT / path).read_text())
    (root / "user_code").mkdir()
    (root / "user_code/__init__.py").touch()  # a package, as in a real project (else the tests' user_code wins)
    if models_py is not None:
        (root / "user_code/models.py").write_text(models_py)
    return root


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("np", "import numpy as np"),  # `add-model np` once replaced numpy for every model
        ("pd", "import pandas as pd"),
        ("os", "import os.path"),
        ("lm", "from sklearn import linear_model as lm"),
        ("scale", "scale = 2.0"),
        ("mid", "low, (mid, high) = 1, (2, 3)"),
        ("xgboost", "import xgboost"),
        ("threshold", "threshold = 3"),
        ("step", "for step in range(2):"),
        ("squares", "squares = [k * k for k in range(3)]"),
        ("wrapper", "class wrapper:"),
        ("helper", "def helper(alpha):"),
        ("sum", None),  # a builtin: every model using sum() would call the training function
        ("ridge", None),  # a model already
    ],
)
def test_add_model_refuses_a_name_already_bound_in_models_py(tmp_path, name, line):
    project = small_project(tmp_path)
    before = sorted(p.relative_to(project) for p in project.rglob("*"))
    with pytest.raises(FloworkError) as refused:
        add_model(project, name)
    message = refused.value.render()
    if line:
        assert f"{name!r} is already a name in user_code/models.py" in message and f"`{line}`" in message
        assert f"line {[t.strip() for t in MODELS_PY.splitlines()].index(line) + 1}" in message
    assert "fix:   pick another name" in message
    assert sorted(p.relative_to(project) for p in project.rglob("*")) == before  # nothing written
    assert (project / "user_code/models.py").read_text() == MODELS_PY


@pytest.mark.parametrize("name", ["k", "local", "inner", "alpha", "error"])
def test_add_model_accepts_a_name_bound_only_inside_a_function_class_or_comprehension(tmp_path, name):
    project = small_project(tmp_path)
    add_model(project, name)
    assert f"def {name}(X, y, **params):" in (project / "user_code/models.py").read_text()


@pytest.mark.parametrize(
    ("models_py", "like", "extra"),
    [
        # no pandas, no typing import, no `from __future__ import annotations`: the stub once needed all three
        (
            "def ridge(X, y, alpha=1.0):\n    from sklearn.linear_model import Ridge\n\n"
            "    return Ridge(alpha=alpha).fit(X, y)\n",
            "ridge",
            {},
        ),
        (
            "",
            "lib",
            {
                "conf/model/lib.yaml": "name: lib\ntrain:\n  _target_: user_code.library.fit\nparams: {}\n",
                "user_code/library.py": "def fit(X, y):\n    from sklearn.linear_model import Ridge\n\n"
                "    return Ridge().fit(X, y)\n",
            },
        ),
    ],
)
def test_the_model_stub_runs_in_any_models_py(tmp_path, models_py, like, extra):
    project = small_project(tmp_path, models_py)
    for path, text in extra.items():
        (project / path).write_text(text)
    add_model(project, "mine", like=like)
    fit = (
        "import pandas as pd; from user_code.models import mine; "
        "X = pd.DataFrame({'a': [1.0, 2, 3, 4]}); print(mine(X, X['a'] * 2).predict(X).round(1).tolist())"
    )
    out = subprocess.run([sys.executable, "-c", fit], cwd=project, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("[")


@pytest.mark.parametrize(
    ("layout", "messages"),
    [
        ("empty", ["is not a flowork project's root", "conf/config.yaml and user_code/ expected", "flowork init"]),
        ("conf only", ["is not a flowork project's root", "cd", "flowork init"]),
        ("no models.py", ["no user_code/models.py", "user_code/models.py", "touch user_code/models.py"]),
    ],
)
def test_add_model_outside_a_project_says_so(tmp_path, layout, messages):
    if layout == "conf only":
        (tmp_path / "conf").mkdir()
        (tmp_path / "conf/config.yaml").write_text("defaults: []\n")
    elif layout == "no models.py":
        small_project(tmp_path, models_py=None)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    out = cli("add-model", "foo", cwd=tmp_path, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    error = " ".join(out.stderr.split())
    assert all(m in error for m in messages), error
    assert "--like" not in error  # not "no model 'ridge' to start from"
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("example", ["temperature", "blank"])
def test_init_names_the_experiment_and_leaves_comments_alone(tmp_path, example):
    init(tmp_path / "p1", example)
    config = (tmp_path / "p1/conf/config.yaml").read_text()
    assert config.splitlines()[0] == (ROOT / "conf/config.yaml").read_text().splitlines()[0]
    tracking = OmegaConf.load(tmp_path / "p1/conf/config.yaml").tracking
    assert (tracking.experiment, tracking.model_name) == ("p1", "p1-forecaster")


def test_a_new_project_installs_under_floworks_constraints(tmp_path):
    """Without the pins pip picks hydra-core/omegaconf release candidates and pandas 3."""
    import tomllib

    init(tmp_path / "p", "blank")
    project = tmp_path / "p"
    assert (project / "constraints.txt").read_text() == (ROOT / "constraints.txt").read_text()
    install = subprocess.run(["make", "-n", "install"], cwd=project, capture_output=True, text=True).stdout
    assert re.search(r"pip install torch==2\.13\.0 && pip install -c constraints\.txt ", install), install
    # and a wheel carries it where flowork finds the example project when installed (scaffold.example_source)
    data_files = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    assert data_files["share/flowork/example"] == ["constraints.txt"]


def test_a_check_that_fails_loading_the_data_names_the_data_file(tmp_path):
    """Loading the data knows only conf/data/<option>.yaml: the check names the option it composed."""
    from flowork.check import run_checks

    for folder in ("conf", "user_code", "data"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    data_cfg = tmp_path / "conf/data/seattle_weather.yaml"
    data_cfg.write_text(data_cfg.read_text().replace("column: temp_max", "column: temp_maxx", 1))
    failed = [r for r in run_checks(tmp_path) if not r.ok]
    assert failed and "target column 'temp_maxx' is not in the data" in failed[0].detail
    assert "conf/data/seattle_weather.yaml, key `data.target.column`" in failed[0].detail
    assert "<option>" not in "".join(r.detail for r in failed)
