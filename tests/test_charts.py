"""Charts per model type, the sweep report in a real browser, and a chart that fails is only a warning."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from flowork import instantiate
from flowork.charts.explain import explain
from flowork.charts.style import safely
from flowork.data import set_time_index
from flowork.errors import FloworkError
from flowork.features import make_target
from flowork.run import pipeline_of
from flowork.schema import validate
from tests.conftest import CONF, ROOT, sweep, sweep_args
from tests.test_sweep import runs

SMALL_NBEATS = ["model.params.epochs=2", "model.params.layer_widths=16", "model.params.num_stacks=2"]
# model (+ overrides) -> charts it must get, charts it must not get
CASES = {
    "ridge": ([], {"permutation_importance.png", "shap.png"}, {"prophet_components.png"}),
    "xgb": ([], {"permutation_importance.png", "shap.png"}, {"prophet_components.png"}),
    "random_forest": ([], {"permutation_importance.png", "shap.png"}, {"prophet_components.png"}),
    "prophet": ([], {"permutation_importance.png", "prophet_components.png"}, {"shap.png", "decomposition.png"}),
    # the ensemble: its forecast split into each member's weighted share
    "ensemble": ([], {"permutation_importance.png", "decomposition.png"}, {"prophet_components.png"}),
    # generic N-BEATS: importance of each step of its input window, no decomposition
    "darts_nbeats": (SMALL_NBEATS, {"permutation_importance.png"}, {"decomposition.png", "shap.png"}),
    "darts_nbeats-interpretable": (
        [*SMALL_NBEATS, "model.params.interpretable=true"],
        {"permutation_importance.png", "decomposition.png"},
        {"shap.png"},
    ),
}


def fitted(model: str, overrides: list[str], weather):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"model={model}", *overrides])
    raw = set_time_index(weather.head(300), "date")
    pipeline = pipeline_of(cfg.features, model)
    X = pipeline(raw)
    y, _ = make_target(pipeline.cleaned(raw), "temp_max", 1)
    y = y.reindex(X.index)
    X, y = X[y.notna().to_numpy()], y.dropna()
    params = OmegaConf.to_container(cfg.model.params, resolve=True)
    model_ = instantiate.bind(cfg.model.train, where=model, call_args=2)(X.iloc[:-40], y.iloc[:-40], **params)
    return model_, X.iloc[-40:], y.iloc[-40:]


@pytest.mark.parametrize("case", sorted(CASES))
def test_explanations_by_model_type(case, weather, tmp_path):
    overrides, required, forbidden = CASES[case]
    model, X, y = fitted(case.split("-")[0], overrides, weather)
    files = {p.name: p for p in explain(model, X, y, tmp_path, case, "°C")}
    assert required <= set(files), f"{case}: got {sorted(files)}"
    assert not forbidden & set(files), f"{case}: got {sorted(files)}"
    assert all(p.stat().st_size > 5000 for p in files.values())


def test_interpretable_nbeats_components_add_up_to_its_forecast(weather):
    model, X, _ = fitted("darts_nbeats", [*SMALL_NBEATS, "model.params.interpretable=true"], weather)
    parts = model.components(X)
    assert list(parts.columns) == ["trend", "seasonality"]
    np.testing.assert_allclose(parts.sum(axis=1).to_numpy(), model.predict(X), atol=1e-4)
    generic, X, _ = fitted("darts_nbeats", SMALL_NBEATS, weather)
    assert generic.components(X) is None


def test_a_user_model_gets_permutation_importance_with_no_work(weather, tmp_path):
    class Persistence:  # a model flowork knows nothing about: only predict(X)
        def predict(self, X):
            return X.iloc[:, 0].to_numpy()  # "tomorrow = the first feature" (the target's latest value)

    _, X, y = fitted("ridge", [], weather)
    files = explain(Persistence(), X, y, tmp_path, "persistence", "°C")
    assert [p.name for p in files] == ["permutation_importance.png"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("charts.top_k=0", "charts.top_k must be at least 1, got 0"),
        ("charts.trials=some", "charts.trials"),
    ],
)
def test_chart_settings_are_checked(override, message):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["sweep.name=x", override])
    with pytest.raises(FloworkError, match=re.escape(message)):
        validate(cfg)


def test_a_failing_chart_is_a_warning(caplog):
    def broken():
        raise ValueError("no data to plot")

    with caplog.at_level(logging.WARNING, logger="flowork.charts"):
        assert safely("broken", broken) == []
    assert "chart broken not drawn: ValueError: no data to plot" in caplog.text


def study_of(states: str, name: str = "s/xgb"):
    """An in-memory study, one trial per letter: C complete (CV 2.0, 2.1, ...), P pruned (its last intermediate value,
    0.5: better than any CV score, as a validation tail's error can be), F failed."""
    import optuna
    from optuna.distributions import FloatDistribution, IntDistribution
    from optuna.trial import TrialState, create_trial

    study = optuna.create_study(study_name=name, direction="minimize")
    space = {"model.params.alpha": FloatDistribution(0.01, 10.0), "model.params.depth": IntDistribution(1, 8)}
    rng = np.random.default_rng(0)
    for k, letter in enumerate(states):
        alpha, depth = float(rng.uniform(0.01, 10.0)), int(rng.integers(1, 9))
        state = {"C": TrialState.COMPLETE, "P": TrialState.PRUNED, "F": TrialState.FAIL}[letter]
        value = {"C": 2.0 + alpha / 10 + depth / 100, "P": 0.5, "F": None}[letter]
        study.add_trial(
            create_trial(
                state=state,
                value=value,
                params={"model.params.alpha": alpha, "model.params.depth": depth},
                distributions=space,
                intermediate_values={} if value is None else {5: value},
                user_attrs={"seconds": 1.0 + k},
            )
        )
    return study


@pytest.fixture
def drawn(monkeypatch):
    """chart file -> what it shows: its title, the points of its scatter plots, its bars' lengths and the x ticks
    in view."""
    from flowork.charts import sweep as sweep_charts_module

    seen = {}
    save = sweep_charts_module.save

    def recording_save(fig, path):
        ax = fig.axes[0]
        seen[path.name] = {
            "title": fig.get_suptitle(),
            "points": [[tuple(xy) for xy in c.get_offsets()] for c in ax.collections],
            "bars": [p.get_width() for p in ax.patches],
            "x_ticks": [x for x in ax.get_xticks() if ax.get_xlim()[0] <= x <= ax.get_xlim()[1]],
        }
        return save(fig, path)

    monkeypatch.setattr(sweep_charts_module, "save", recording_save)
    return seen


ROW = {"model": "xgb", "best": 2.0, "std": 0.1, "holdout": 2.1}


@pytest.mark.parametrize(
    ("states", "plotted", "importance"),
    [
        ("CCCC", [0, 1, 2, 3], True),
        ("CPPP", [0], False),  # the pruner's repro: one CV score, three intermediate values
        ("CCCPP", [0, 1, 2], True),
        ("CCPPF", [0, 1], False),  # importance needs 3 CV scores: pruned and failed trials do not count
    ],
)
def test_sweep_charts_plot_cv_scores_of_complete_trials_only(states, plotted, importance, drawn, tmp_path):
    from flowork.charts.sweep import sweep_charts

    study = study_of(states)
    files = {p.name for p in sweep_charts([ROW], [study], tmp_path, "mae", "°C")}
    assert ("importance_xgb.png" in files) == importance, files
    trial_numbers, cv_scores = (
        [x for x, _ in drawn["history_xgb.png"]["points"][0]],
        [study.trials[k].value for k in plotted],
    )
    assert trial_numbers == plotted
    assert [y for _, y in drawn["metric_vs_duration.png"]["points"][0]] == cv_scores


@pytest.mark.parametrize("states", ["C", "FC", "CPPP", "CC", "C" * 12])
def test_the_history_chart_ticks_trial_numbers_as_integers(states, drawn, tmp_path):
    """A study with one complete trial spans no width on the x axis: its ticks were at 0.015 steps."""
    from flowork.charts.sweep import history

    history(study_of(states), tmp_path / "history.png", "mae", "°C")
    ticks = drawn["history.png"]["x_ticks"]
    assert ticks and all(float(x).is_integer() for x in ticks), ticks


def test_the_importance_chart_shows_fanova_importances(drawn, tmp_path):
    import optuna

    from flowork.charts.sweep import sweep_charts

    study = study_of("C" * 12)
    sweep_charts([ROW], [study], tmp_path, "mae", "°C", seed=7)
    chart = drawn["importance_xgb.png"]
    fanova = optuna.importance.get_param_importances(
        study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=7)
    )
    assert "fANOVA" in chart["title"]
    assert chart["bars"] == pytest.approx(list(fanova.values())[::-1])


def test_a_run_whose_charts_cannot_be_drawn_is_a_warning(tmp_path, store, caplog):
    from flowork.charts.draw import run_charts
    from flowork.tracking import get_tracker

    tracker = get_tracker(store, "charts", f"file://{tmp_path}/artifacts")
    run_id = tracker.start("no predictions", {}, None)  # a run without predictions.csv: nothing to draw from
    with caplog.at_level(logging.WARNING, logger="flowork.charts"):
        assert run_charts(tracker, run_id, tmp_path / "charts", "empty", "°C") == []
    assert "chart predictions not drawn" in caplog.text


@pytest.mark.slow
def test_charts_that_fail_in_a_sweep_fail_no_trial(tmp_path, short_csv):
    """Every chart fails (its folder cannot be created): the trials, the champion and the sweep still succeed."""
    sweep_dir = tmp_path / "sweeps" / "f"
    sweep_dir.mkdir(parents=True)
    (sweep_dir / "charts").write_text("a file where the charts folder should be")
    out = sweep(*sweep_args(tmp_path, short_csv, "f"), "model=ridge", "search.n_trials=3", "charts.trials=all")
    assert out.returncode == 0, out.stderr[-3000:]
    board = json.loads((sweep_dir / "leaderboard.json").read_text())
    assert (board[0]["ok"], board[0]["failed"]) == (3, 0)
    assert (sweep_dir / "best.yaml").exists()
    assert "not drawn" in out.stderr + out.stdout
    logs = "".join(p.read_text() for p in sweep_dir.rglob("*.log"))
    assert "chart forecast_vs_actual not drawn" in logs + out.stderr  # the workers' per-trial charts: warnings


@pytest.mark.slow
def test_parallel_workers_chart_every_trial_through_the_sweeps_tracking_process(tmp_path, short_csv):
    parallel = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "sweep.select=false", "search.n_trials=4"]
    out = sweep(*sweep_args(tmp_path, short_csv, "p"), "model=ridge", "charts.trials=all", *parallel)
    assert out.returncode == 0, out.stderr[-3000:]
    client, trial_runs = runs(tmp_path, "tags.`flowork.trial` != ''")
    assert len(trial_runs) == 4
    for run in trial_runs:
        charts = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "charts")}
        assert {"forecast_vs_actual.png", "error_by_fold.png"} <= charts, charts


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.slow
def test_sweep_report_renders_in_chromium(tmp_path, short_csv):
    out = sweep(
        *sweep_args(tmp_path, short_csv, "r"),
        "model=ridge,xgb",
        "search.n_trials=3",
        "data.backtest.folds=2",
        "charts.trials=top",
        "charts.top_k=2",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    charts = tmp_path / "sweeps" / "r" / "charts"
    for model in ("ridge", "xgb"):  # each study's best: performance and explanations
        drawn = {p.name for p in (charts / model).iterdir()}
        assert {"holdout_forecast.png", "residuals.png", "error_by_fold.png", "shap.png"} <= drawn, drawn
        assert "permutation_importance.png" in drawn
    sweep_charts = {p.name for p in (charts / "sweep").iterdir()}
    assert {"leaderboard.png", "history_ridge.png", "importance_xgb.png", "metric_vs_duration.png"} <= sweep_charts
    assert len(list((charts / "trials").iterdir())) == 2  # top_k=2: the runner-up of each study
    page = tmp_path / "sweeps" / "r" / "report.html"
    html = page.read_text()
    assert html.count("<img ") >= 25 and "http" not in re.sub(r"data:image/png;base64,[^\"]+", "", html)
    assert "Champion: " in html and "±" in html
    from flowork.tracking import get_tracker

    tracker = get_tracker(f"sqlite:///{tmp_path}/mlflow.db", "temperature", f"file://{tmp_path}/artifacts")
    best = json.loads((tmp_path / "sweeps" / "r" / "leaderboard.json").read_text())[0]
    logged = {a.path for a in tracker.client.list_artifacts(best["run_id"], "charts")}
    assert {"charts/shap.png", "charts/holdout_forecast.png"} <= logged  # in MLflow too
    browser = chromium()
    if browser is None:
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        "--disable-sync",
        "--disable-component-update",
        f"--user-data-dir={tmp_path}/profile",
    ]
    dom = subprocess.run(
        [browser, *flags, "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert 'data-images-ok="true"' in dom.stdout, dom.stderr[-2000:]
    assert "Uncaught" not in dom.stderr and "CONSOLE" not in dom.stderr
    shot = ROOT / "tests" / ".screenshots" / "report.png"
    shot.parent.mkdir(exist_ok=True)
    subprocess.run(
        [browser, *flags, "--window-size=1200,2400", f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 20_000


def in_project(project: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m ARGS` in `project`, running this checkout's flowork (not another install of it)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HYDRA_FULL_ERROR": ""}
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=project, capture_output=True, text=True, timeout=600, env=env
    )


@pytest.fixture(scope="module")
def swept(tmp_path_factory, weather) -> Path:
    """A project (this conf/ and user_code/) with one finished ridge sweep `s`: charts.trials=top, top_k=2, no page."""
    project = tmp_path_factory.mktemp("project")
    for part in ("conf", "user_code"):
        shutil.copytree(ROOT / part, project / part, ignore=shutil.ignore_patterns("__pycache__", "local"))
    weather.head(400).to_csv(project / "short.csv", index=False)
    settings = ["charts.trials=top", "charts.top_k=2", "charts.report=false"]
    args = ["model=ridge", "search.n_trials=2", "data.backtest.folds=2", "data.uri=short.csv", "sweep.name=s"]
    out = in_project(project, "flowork", *args, *settings, "-m")
    assert out.returncode == 0, out.stderr[-3000:]
    assert not (project / "multirun" / "s" / "report.html").exists()
    return project


@pytest.mark.slow
def test_the_sweep_charts_are_logged_to_the_sweeps_run_also_without_the_page(swept):
    from flowork.tracking import get_tracker

    tracker = get_tracker(f"sqlite:///{swept}/mlflow.db", "temperature", None)
    (run,) = tracker.client.search_runs([tracker.experiment_id], "tags.`flowork.role` = 'sweep'")
    logged = {Path(a.path).name for a in tracker.client.list_artifacts(run.info.run_id, "charts")}
    assert {"leaderboard.png", "history_ridge.png", "metric_vs_duration.png"} <= logged, logged


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "said"),
    [
        ([], "charts.trials=top"),  # the sweep's own setting, not the project's default (best)
        (["charts.trials=champion"], "charts.trials=champion"),
        (["charts.trials=some"], "charts.trials"),  # refused: exit 2, the key named
    ],
)
def test_report_draws_with_the_sweeps_chart_settings_unless_given(swept, overrides, said):
    page = swept / "multirun" / "s" / "report.html"
    page.unlink(missing_ok=True)
    out = in_project(swept, "flowork.cli", "report", "--sweep", "s", *overrides)
    if overrides == ["charts.trials=some"]:
        assert out.returncode == 2 and "flowork: error:" in out.stderr and said in out.stderr, out.stderr[-3000:]
        return
    assert out.returncode == 0, out.stderr[-3000:]
    assert said in page.read_text()


@pytest.mark.slow
def test_report_of_a_sweep_whose_config_changed_since_draws_what_it_can(swept):
    """conf/ edited after the sweep: the trials' configs no longer compose. Their explanations are lost (a warning
    each), the rest of the report is drawn."""
    ridge = swept / "conf" / "model" / "ridge.yaml"
    original = ridge.read_text()
    ridge.write_text(original.replace("\n  alpha:", "\n  alphaa:"))
    try:
        page = swept / "multirun" / "s" / "report.html"
        page.unlink(missing_ok=True)
        out = in_project(swept, "flowork.cli", "report", "--sweep", "s")
    finally:
        ridge.write_text(original)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "chart step config of ridge trial" in out.stderr
    html = page.read_text()
    assert "leaderboard" in html and "holdout forecast" in html


def test_a_trial_config_composes_outside_the_sweeper():
    """`flowork report` redraws a sweep from its trials' overrides, with no Hydra app running."""
    from flowork.charts.draw import composer, resolved

    with initialize_config_dir(str(CONF), version_base="1.3"):
        base = compose("config", overrides=["sweep.name=x"])
    cfg = composer(base, str(ROOT))(["sweep.name=x", "model=xgb", "model.params.max_depth=5"])
    plain = resolved(cfg)
    assert (plain["model"]["name"], plain["model"]["params"]["max_depth"]) == ("xgb", 5)
    assert "hydra" not in plain


@pytest.mark.parametrize("mode", ["additive", "multiplicative"])
def test_prophet_components_add_up_to_its_forecast(mode, weather):
    from flowork.charts.explain import prophet_frame, prophet_of

    model, X, _ = fitted("prophet", [f"model.params.seasonality_mode={mode}"], weather)
    parts = prophet_frame(prophet_of(model), X)
    assert "trend" in parts and "yearly" in parts
    np.testing.assert_allclose(parts.sum(axis=1).to_numpy(), model.predict(X), atol=1e-6)


def estimator(path: str, *args, **kwargs):
    """A factory for an estimator class named by its import path: imports stay inside the test."""

    def make():
        import importlib

        module, name = path.rsplit(".", 1)
        return getattr(importlib.import_module(module), name)(*[a() if callable(a) else a for a in args], **kwargs)

    return make


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (estimator("sklearn.ensemble.RandomForestRegressor", n_estimators=3), "tree"),
        (estimator("sklearn.ensemble.GradientBoostingRegressor", n_estimators=3), "tree"),
        (estimator("xgboost.XGBRegressor", n_estimators=3), "tree"),
        (estimator("sklearn.linear_model.Ridge"), "linear"),
        (estimator("sklearn.linear_model.Lasso", alpha=0.01), "linear"),
        (estimator("sklearn.neighbors.KNeighborsRegressor", n_neighbors=3), None),  # permutation importance only
        (
            estimator("sklearn.ensemble.BaggingRegressor", estimator("sklearn.neighbors.KNeighborsRegressor")),
            None,  # an ensemble, but not of trees
        ),
    ],
)
def test_shap_goes_to_tree_and_linear_models_whatever_their_name(make, kind):
    from flowork.charts.explain import shap_kind

    rng = np.random.default_rng(0)
    assert shap_kind(make().fit(rng.random((40, 3)), rng.random(40))) == kind
