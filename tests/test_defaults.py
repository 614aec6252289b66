"""Defaults written once: a component's config dataclass holds its defaults, and its YAML file
under ``conf/`` holds only what differs from them.

Both checks are derived from what exists (every YAML file under ``conf/algo``, ``conf/network``
and ``conf/buffer``; every registered algorithm, network and buffer), so a new component is
covered with no edit here.
"""

from __future__ import annotations

import dataclasses
import re
from importlib import resources
from typing import Any

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from drlrun.registry import ALGOS, BUFFERS, NETWORKS, Registry

REGISTRIES: dict[str, Registry[type]] = {"algo": ALGOS, "network": NETWORKS, "buffer": BUFFERS}
SCHEMA = re.compile(r"^/schema/(?P<group>\w+)/(?P<name>[\w.-]+)@_here_$")


def yaml_files() -> list[tuple[str, str]]:
    """(group, file name) of every YAML file of the component groups."""
    conf = resources.files("drlrun.conf")
    return [(group, path.name) for group in REGISTRIES for path in sorted(
        (conf / group).iterdir(), key=lambda p: p.name) if path.name.endswith(".yaml")]


def components() -> list[tuple[str, str]]:
    """(group, name) of every registered component."""
    return [(group, name) for group, registry in REGISTRIES.items() for name, _cls in registry.items()]


def dataclass_defaults(cls: type) -> dict[str, Any]:
    """The fields of a config dataclass that have a default, with it."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def read_yaml(group: str, file_name: str) -> tuple[type, dict[str, Any]]:
    """The config dataclass a group's YAML file extends (its ``/schema/...@_here_`` default) and
    the values the file sets, read as Hydra reads them."""
    loaded = OmegaConf.to_container(OmegaConf.load(str(resources.files("drlrun.conf") / group / file_name)))
    assert isinstance(loaded, dict)
    schemas = [m for entry in loaded.pop("defaults", []) if isinstance(entry, str)
               for m in [SCHEMA.match(entry)] if m]
    assert len(schemas) == 1 and schemas[0]["group"] == group, (
        f"conf/{group}/{file_name} must extend its dataclass: defaults: [/schema/{group}/<name>@_here_, _self_]")
    return REGISTRIES[group].get(schemas[0]["name"]).Config, loaded


def composed(group: str, name: str) -> dict[str, Any]:
    """The ``group`` section of ``drlrun --cfg job group=name``, with no preset applied."""
    with initialize_config_module(config_module="drlrun.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"{group}={name}", "~preset"])
    section = OmegaConf.to_container(cfg[group], resolve=True)
    assert isinstance(section, dict)
    return section


@pytest.mark.parametrize(("group", "file_name"), yaml_files())
def test_no_yaml_repeats_a_default_of_its_dataclass(group, file_name):
    cls, values = read_yaml(group, file_name)
    defaults = dataclass_defaults(cls)
    repeated = sorted(k for k, v in values.items() if k in defaults and v == defaults[k])
    assert not repeated, (
        f"conf/{group}/{file_name} repeats {cls.__qualname__}'s defaults for {', '.join(repeated)}: "
        "delete them there (the dataclass is where defaults live; a YAML holds only what differs)")
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
    assert not unknown, f"conf/{group}/{file_name} sets {', '.join(unknown)}: not fields of {cls.__qualname__}"


@pytest.mark.parametrize(("group", "name"), components())
def test_the_composed_config_shows_every_field_of_the_dataclass(group, name):
    cls = REGISTRIES[group].get(name).Config
    section = composed(group, name)
    fields = [f.name for f in dataclasses.fields(cls)]
    assert sorted(section) == sorted(fields), (
        f"`drlrun --cfg job {group}={name}` shows {sorted(section)}; {cls.__qualname__} has {sorted(fields)}")
    # each value is the dataclass's default unless the component's YAML file (if any) sets it
    has_yaml = (resources.files("drlrun.conf") / group / f"{name}.yaml").is_file()
    expected = {**dataclass_defaults(cls), **(read_yaml(group, f"{name}.yaml")[1] if has_yaml else {})}
    assert {k: section[k] for k in expected} == expected, (
        f"`drlrun --cfg job {group}={name}` differs from {cls.__qualname__}'s defaults"
        + (f" and conf/{group}/{name}.yaml" if has_yaml else ""))
