"""Every option of every config group composes, validates against the schema, and every `_target_` imports."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from flowork import instantiate
from flowork.schema import validate
from tests.conftest import CONF

GROUPS = ["data", "features", "model", "search", "metric"]
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]
MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))


def targets(node, key=""):
    if isinstance(node, dict):
        if "_target_" in node:
            yield key, node
        for k, v in node.items():
            yield from targets(v, f"{key}.{k}" if key else k)


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_and_binds(group, option):
    overrides = [f"{group}={option}"]
    if group == "search":  # a search space belongs to the model of the same name
        overrides.append(f"model={option}")
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = validate(compose("config", overrides=overrides))
    container = OmegaConf.to_container(cfg, resolve=True)
    found = list(targets(container))
    assert found, "every config has at least the model, features and metric targets"
    for key, node in found:
        if key == "metric":
            instantiate.locate(node["_target_"], where=key)
        elif key == "model.train":
            instantiate.check_call(
                instantiate.bind(node, where=key, call_args=2), 2, container["model"]["params"], where=key
            )
        elif key.startswith("sweep."):  # sampler / pruner: called with no positional argument
            instantiate.bind(node, where=key, call_args=0)
        else:
            instantiate.bind(node, where=key)


@pytest.mark.parametrize("model", MODELS)
def test_every_model_has_a_search_space_and_its_own_name(model):
    assert (CONF / "search" / f"{model}.yaml").exists()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"model={model}"])
    assert cfg.model.name == model


def test_cached_interpolation_parses_resolve_as_omegaconf_does(monkeypatch):
    """flowork memoises OmegaConf's interpolation parser (a sweep reads the same strings every trial): values resolve
    the same, a changed referenced value shows, and a string that does not parse fails every time."""
    from omegaconf import _utils, base
    from omegaconf.errors import GrammarParseError

    from flowork.interpolations import cache_parses

    monkeypatch.setattr(base, "parse", base.parse)  # undone after the test
    monkeypatch.setattr(_utils, "parse", _utils.parse)
    monkeypatch.setenv("FLOWORK_TEST_UNIT", "°C")
    cfg = {"a": 1, "b": "${a}_lag${a}", "c": {"d": "${oc.env:FLOWORK_TEST_UNIT}", "e": "${c.d} ${b}"}, "bad": "${a"}
    good = OmegaConf.create({k: v for k, v in cfg.items() if k != "bad"})
    before = OmegaConf.to_container(good, resolve=True)
    cache_parses()
    cache_parses()  # idempotent: wrapped once
    assert hasattr(base.parse, "cache_info") and not hasattr(base.parse.__wrapped__, "cache_info")
    assert (
        OmegaConf.to_container(good, resolve=True)
        == before
        == {
            "a": 1,
            "b": "1_lag1",
            "c": {"d": "°C", "e": "°C 1_lag1"},
        }
    )
    good.a = 7
    assert good.c.e == "°C 7_lag7"
    for _ in range(2):
        with pytest.raises(GrammarParseError):
            OmegaConf.create(cfg)
