"""When a sweep's best model takes the alias `champion` from the one being served (flowork/select.py: promotion)."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from flowork.select import ALIAS, promotion

NAME = "forecaster"


def scored(client: MlflowClient, cv: float, *, horizon: int = 1, digest: str = "d1", direction: str = "minimize"):
    """A run as run() logs it: how it was evaluated (params, data digest) and its CV metric."""
    exp = client.get_experiment_by_name("e") or client.get_experiment(client.create_experiment("e"))
    run = client.create_run(exp.experiment_id)
    params = {
        "data.target.column": "temp_max",
        "data.target.horizon": str(horizon),
        "data.freq": "D",
        "data.backtest.folds": "3",
        "data.backtest.min_train": "0.5",
        "data.holdout": "0.2",
        "metric.name": "mae",
        "metric.direction": direction,
    }
    for k, v in params.items():
        client.log_param(run.info.run_id, k, v)
    client.set_tag(run.info.run_id, "flowork.data_digest", digest)
    client.log_metric(run.info.run_id, "cv_mae", cv)
    return run.info.run_id


def serve(client: MlflowClient, run_id: str) -> None:
    if not client.search_registered_models(f"name='{NAME}'"):
        client.create_registered_model(NAME)
    version = client.create_model_version(NAME, f"runs:/{run_id}/model", run_id)
    client.set_registered_model_alias(NAME, ALIAS, version.version)


CASES = [
    # (champion's run, or None; the new run; promote) -> (takes the alias, why contains)
    (None, {"cv": 2.5}, "better", True, "had no champion"),
    ({"cv": 2.0}, {"cv": 1.9}, "better", True, "cv_mae 1.9000 vs 2.0000"),
    ({"cv": 2.0}, {"cv": 2.1}, "better", False, "cv_mae 2.1000 vs 2.0000"),
    ({"cv": 2.0}, {"cv": 2.0}, "better", False, "vs 2.0000"),  # a tie keeps the one being served
    ({"cv": 2.0}, {"cv": 1.5, "horizon": 7}, "better", False, "data.target.horizon 1 -> 7"),
    ({"cv": 2.0}, {"cv": 1.5, "digest": "d2"}, "better", False, "data (digest) d1 -> d2"),
    ({"cv": 2.0}, {"cv": 2.9}, "always", True, "sweep.promote=always"),
    ({"cv": 0.7, "direction": "maximize"}, {"cv": 0.8, "direction": "maximize"}, "better", True, "0.8000 vs 0.7000"),
]


@pytest.mark.parametrize(("old", "new", "promote", "takes", "why"), CASES)
def test_the_champion_moves_only_to_a_model_that_beats_it_on_the_same_evaluation(
    tmp_path, old, new, promote, takes, why
):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    if old is not None:
        serve(client, scored(client, **old))
    moved, reason = promotion(client, NAME, scored(client, **new), promote)
    assert (moved, why in reason) == (takes, True), reason
