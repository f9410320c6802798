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
