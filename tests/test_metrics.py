import math

import pytest
from hydra import compose, initialize_config_dir

from flowork import metrics
from tests.conftest import CONF

Y, P = [1.0, 2.0, 4.0], [1.0, 3.0, 2.0]


@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        (metrics.mae, 1.0),
        (metrics.rmse, math.sqrt(5 / 3)),
        (metrics.mape, 100 * (0 + 0.5 + 0.5) / 3),
        (metrics.smape, 100 * (0 + 2 * 1 / 5 + 2 * 2 / 6) / 3),
        (metrics.r2, 1 - 5 / (14 / 3)),
    ],
)
def test_metric_values(fn, expected):
    assert fn(Y, P) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("option", "direction"),
    [("mae", "minimize"), ("rmse", "minimize"), ("mape", "minimize"), ("smape", "minimize"), ("r2", "maximize")],
)
def test_metric_config_direction(option, direction):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"metric={option}"])
    assert cfg.metric.direction == direction
    assert cfg.metric.name == option


def test_smape_both_zero_is_zero_error():
    assert metrics.smape([0.0, 1.0], [0.0, 1.0]) == 0.0
