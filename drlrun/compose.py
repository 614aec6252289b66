"""Hydra composition: the schemas in Hydra's ConfigStore, and a composed config turned into
plain, range-checked dataclasses (``drlrun/config.py``) before anything is built.

Hydra composes the YAML files under ``conf/``; every group option extends a typed schema stored
in Hydra's ConfigStore (``/schema/<group>/<name>``), so a misspelt key or a value of the wrong
type fails while the configuration is composed. The runner then works with plain dataclass
instances: OmegaConf access is slow and never happens inside the training loop.
"""

from __future__ import annotations

import dataclasses
import re
from importlib import resources
from typing import Any

from omegaconf import DictConfig, MissingMandatoryValue, OmegaConf

from drlrun.config import EnvConfig, RunConfig, check_ranges
from drlrun.errors import DrlrunError, choices_hint
from drlrun.registry import ALGOS, BUFFERS, NETWORKS

GROUPS = ("algo", "env", "network", "buffer")



def group_options(group: str) -> list[str]:
    """The options a config group ships as YAML files in conf/<group>/ (plug-ins without a file
    are options too, but only in Hydra's ConfigStore)."""
    folder = resources.files("drlrun.conf") / group
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def network_options(networks: list[str] | tuple[str, ...]) -> list[str]:
    """The ``network=`` options that build one of ``networks`` (registry names; ``cnn_small`` is
    an option of ``cnn``, found through the schema its YAML extends), and any of ``networks``
    with no option of its own (a plug-in network given by its registry name)."""
    folder = resources.files("drlrun.conf") / "network"
    options = []
    for option in group_options("network"):
        base = re.search(r"/schema/network/(\w+)@", (folder / f"{option}.yaml").read_text())
        if base and base.group(1) in networks:
            options.append(option)
    return options + [name for name in networks if name not in options]

def register_configs() -> None:
    """Store the root schema and one schema per registered component in Hydra's ConfigStore.

    Plug-in algorithms, networks and buffers that ship no YAML file become group options
    directly from their config dataclass, so ``algo=<plugin>`` works with no file in ``conf/``.
    A plug-in that failed to load or to pass its contract check becomes an option too, holding
    only its name: choosing it reaches :func:`to_settings`, whose registry lookup raises the
    reason (exit 2, one paragraph) instead of Hydra's "could not find algo/NAME".
    """
    from hydra.core.config_store import ConfigStore

    conf = resources.files("drlrun.conf")
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=RunConfig)
    cs.store(group="schema/env", name="env", node=EnvConfig, package="env")
    for group, registry in (("algo", ALGOS), ("network", NETWORKS), ("buffer", BUFFERS)):
        for name, cls in registry.items():
            cs.store(group=f"schema/{group}", name=name, node=cls.Config, package=group)
            if not (conf / group / f"{name}.yaml").is_file():
                cs.store(group=group, name=name, node=cls.Config)
        for name in registry.broken:  # composes, so that building it reports why it cannot be used
            cs.store(group=group, name=name, node={"name": name})
    register_sweeper_plugin()


def register_sweeper_plugin() -> None:
    """Make ``hydra/sweeper=optuna`` (drlrun's plugin) available in every kind of install.

    Hydra finds plugins by listing the ``hydra_plugins`` namespace package. A regular install
    puts ours there; an editable install maps it through an import hook that the listing does
    not see. Importing it registers its config, and the class is added to the plugin table
    Hydra has already built (a no-op when the scan found it).
    """
    import hydra_plugins.drlrun_optuna_sweeper.optuna_sweeper as plugin
    from hydra.core.plugins import Plugins

    name = f"{plugin.__name__}.{plugin.OptunaSweeper.__name__}"
    Plugins.instance().class_name_to_class.setdefault(name, plugin.OptunaSweeper)


def to_settings(cfg: DictConfig) -> RunConfig:
    """Turn the composed configuration into plain, range-checked dataclass instances."""

    try:
        container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as exc:
        key = getattr(exc, "full_key", "") or "a key"
        hint = " (e.g. env.id=MountainCarContinuous-v0 or env.id=my_module:MyEnv)" if key == "env.id" else ""
        raise DrlrunError(f"{key} is required but was not given{hint}.") from exc
    assert isinstance(container, dict)
    container.pop("hydra", None)
    sections: dict[str, Any] = {}
    for group, registry in (("algo", ALGOS), ("network", NETWORKS), ("buffer", BUFFERS)):
        node = container.pop(group) or {}
        name = node.get("name")
        if not name:
            raise DrlrunError(f"The '{group}' config has no 'name'. Valid choices: {', '.join(registry.names())}.")
        sections[group] = build_section(registry.get(name).Config, node, group)
    sections["env"] = build_section(EnvConfig, container.pop("env") or {}, "env")
    run = build_section(RunConfig, container, "")
    for key, value in sections.items():
        setattr(run, key, value)
    check_ranges(run, "")
    _check_device(run.device)
    return run


def build_section(cls: type, values: dict[str, Any], prefix: str) -> Any:
    """Merge ``values`` into the schema ``cls``; unknown keys and wrong types name the key."""
    names = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in names:
            full = f"{prefix}.{key}" if prefix else key
            raise DrlrunError(f"Unknown key {full!r}. {choices_hint(key, names)}")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(cls), values)
        return OmegaConf.to_object(merged)
    except Exception as exc:  # OmegaConf's ValidationError and friends
        key = getattr(exc, "full_key", "") or ""
        full = f"{prefix}.{key}" if prefix and key else (key or prefix)
        msg = str(exc).splitlines()[0]
        raise DrlrunError(f"Invalid value for {full!r}: {msg}") from exc


def _check_device(device: str) -> None:
    if device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit()):
        return
    raise DrlrunError(f"device={device!r} is not valid. Valid choices: auto, cpu, cuda, cuda:N.")
