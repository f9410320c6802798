"""Charts per model type, the sweep report in a real browser, and a chart that fails is only a warning."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess

import pytest
from hydra import compose, initialize_config_dir

from flowork.charts.explain import explain
from flowork.charts.style import safely
from flowork.data import set_time_index
from flowork.features import make_target
from flowork.run import pipeline_of
from tests.conftest import CONF, ROOT, sweep, sweep_args

EXPECTED = {
    "ridge": {"permutation_importance.png", "shap.png"},
    "xgb": {"permutation_importance.png", "shap.png"},
    "random_forest": {"permutation_importance.png", "shap.png"},
    "prophet": {"permutation_importance.png", "prophet_components.png"},
    "darts_nbeats": {"permutation_importance.png"},  # generic N-BEATS: importance over its input window
}


@pytest.mark.parametrize("model", sorted(EXPECTED))
def test_explanations_by_model_type(model, weather, tmp_path):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"model={model}"])
    raw = set_time_index(weather.head(300), "date", "D")
    pipeline = pipeline_of(cfg, model)
    X = pipeline(raw)
    y, _ = make_target(pipeline.cleaned(raw), "temp_max", 1)
    y = y.reindex(X.index)
    X, y = X[y.notna().to_numpy()], y.dropna()
    from omegaconf import OmegaConf

    from flowork import instantiate

    params = OmegaConf.to_container(cfg.model.params, resolve=True)
    fitted = instantiate.bind(cfg.model.train, where=model, call_args=2)(X.iloc[:-40], y.iloc[:-40], **params)
    files = explain(fitted, X.iloc[-40:], y.iloc[-40:], tmp_path, model, "°C")
    assert {p.name for p in files} == EXPECTED[model]
    assert all(p.stat().st_size > 5000 for p in files)


def test_a_failing_chart_is_a_warning(caplog):
    def broken():
        raise ValueError("no data to plot")

    with caplog.at_level(logging.WARNING, logger="flowork.charts"):
        assert safely("broken", broken) == []
    assert "chart broken not drawn: ValueError: no data to plot" in caplog.text


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.slow
def test_sweep_report_renders_in_chromium(tmp_path, short_csv):
    out = sweep(
        *sweep_args(tmp_path, short_csv, "r"),
        "model=ridge,xgb",
        "search.n_trials=3",
        "data.backtest.folds=2",
        "charts.trials=all",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    page = tmp_path / "sweeps" / "r" / "report.html"
    html = page.read_text()
    assert html.count("<img ") >= 20 and "http" not in re.sub(r"data:image/png;base64,[^\"]+", "", html)
    trials = list((tmp_path / "sweeps" / "r" / "charts" / "trials").iterdir())
    assert len(trials) == 6  # charts.trials=all: every trial got its charts
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
