"""Hydra sweep grammar -> Optuna distributions, and how the command line fixes or replaces a key's space."""

from __future__ import annotations

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from flowork.errors import FloworkError
from flowork.search import build_space, check_space_keys, override_value, parse, split_arguments


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("interval(0.1, 1)", FloatDistribution(0.1, 1.0)),
        ("int(interval(2, 8))", IntDistribution(2, 8)),
        ("interval(2, 8)", FloatDistribution(2.0, 8.0)),  # Hydra's interval is float unless int(...)
        ("tag(log, interval(0.001, 1))", FloatDistribution(0.001, 1.0, log=True)),
        ("tag(log, int(interval(1, 1024)))", IntDistribution(1, 1024, log=True)),
        ("range(1, 10, 2)", IntDistribution(1, 9, step=2)),
        ("range(0, 5)", IntDistribution(0, 4)),
        ("choice(a, b)", CategoricalDistribution(["a", "b"])),
        ("a,b,c", CategoricalDistribution(["a", "b", "c"])),
        ("choice(32, 64)", CategoricalDistribution([32, 64])),
        ("5", ("fixed", 5)),
        ("additive", ("fixed", "additive")),
    ],
)
def test_grammar_to_distribution(expression, expected):
    assert parse("model.params.x", expression, where="conf/search/x.yaml") == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("interval(5, 1)", "empty interval"),
        ("tag(log, interval(0, 1))", "must start above 0"),
        ("interval(1,", r"cannot parse the search expression `model.params.x: interval\(1,`: `\(` is not closed"),
        # Hydra's reason in plain words, its marker under the expression, the grammar's docs
        ("interval(1,)", r"cannot read `interval\(1,\)` .*\n    interval\(1,\)\n               \^\n(?s:.*)extended/"),
        ("tag(log interval(1,5))", r"cannot read `tag\(log interval\(`.*\n    tag\(log interval\(1,5\)\)\n {20}\^"),
        ("choice()", r"`choice\(\)`: empty choice is not legal"),
        ("interval(1,x)", r"`interval\(1,x\)`: mismatch type argument end"),
        ("a;b", r"`;` cannot be there unquoted\n    a;b\n     \^"),
        ("[1,2", r"`\[` is not closed\n    \[1,2\n        \^"),
        ("1)", r"`\)` is not expected there\n    1\)\n     \^"),
        ("'abc", r"the quote ' is not closed\n    'abc\n    \^"),
        ("range(1, 10, 0)", "empty range"),
        ("range(10, 1)", "empty range"),
        ("range(1, 10, -1)", "empty range"),
        ("range(0.5, 0.1, 0.1)", "empty range"),
    ],
)
def test_grammar_errors(expression, message):
    with pytest.raises(FloworkError, match=message) as e:
        parse("model.params.x", expression, where="conf/search/x.yaml")
    assert "See https" not in str(e.value)  # Hydra's pointer to its 1.2 docs


SPACE = {"model.params.a": "interval(0, 1)", "model.params.b": "choice(x, y)", "features.build.lags": "7"}


@pytest.mark.parametrize(
    ("arguments", "params", "fixed", "plain"),
    [
        ([], {"model.params.a", "model.params.b"}, {"features.build.lags": 7}, []),
        (["model.params.a=0.5"], {"model.params.b"}, {"features.build.lags": 7}, ["model.params.a=0.5"]),
        (["model.params.a=interval(2,3)"], {"model.params.a", "model.params.b"}, {"features.build.lags": 7}, []),
        (
            ["features.build.lags=int(interval(7,30))"],
            {"model.params.a", "model.params.b", "features.build.lags"},
            {},
            [],
        ),
        (
            ["search.n_trials=5", "model=ridge,xgb"],
            {"model.params.a", "model.params.b"},
            {"features.build.lags": 7},
            ["search.n_trials=5"],
        ),
    ],
)
def test_command_line_fixes_or_replaces(arguments, params, fixed, plain):
    models, sweeps, plain_out = split_arguments(arguments)
    space = build_space(SPACE, sweeps, {a.split("=")[0] for a in plain_out}, where="x")
    assert set(space.params) == params
    assert space.fixed == fixed
    assert plain_out == plain
    if "model.params.a=interval(2,3)" in arguments:
        assert space.params["model.params.a"] == FloatDistribution(2.0, 3.0)


def test_model_sweep_is_the_outer_loop():
    models, sweeps, plain = split_arguments(["model=prophet,xgb,darts_nbeats"])
    assert models == ["prophet", "xgb", "darts_nbeats"] and not sweeps and not plain


@pytest.mark.parametrize(
    "value",
    [3, 0.001, 1e-7, True, None, "additive", "a,b", "it's", "1e-3", "null", [7, 30], [14], ["a,b", 1.5], {"a": [1]}],
)
def test_override_value_round_trips(value):
    (o,) = OverridesParser.create().parse_overrides([f"k={override_value(value)}"])
    assert o.value() == value


@pytest.mark.parametrize(
    ("keys", "unknown"),
    [
        (["model.params.alpha", "features.build.lags", "features"], None),
        (["model.prams.alpha", "model.params.alpha"], "['model.prams.alpha']"),
        (["features.build.exog_lags"], "['features.build.exog_lags']"),  # the univariate features take none
    ],
)
def test_search_keys_missing_from_the_models_config_are_refused_before_the_sweep(keys, unknown):
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"model": {"params": {"alpha": 1.0}}, "features": {"build": {"lags": 12}}})
    if unknown is None:
        check_space_keys(cfg, keys, "ridge", "conf/search/ridge.yaml")
        return
    with pytest.raises(FloworkError) as e:
        check_space_keys(cfg, keys, "ridge", "conf/search/ridge.yaml")
    assert unknown in e.value.what and "conf/search/ridge.yaml" in e.value.where
    assert "conf/model/ridge.yaml" in e.value.fix


def test_plugin_is_discovered():
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    assert "FloworkSweeper" in [p.__name__ for p in Plugins.instance().discover(Sweeper)]
