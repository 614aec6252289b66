"""Building an agent, and loading a trained one: for training, resume, drlrun-eval and drlrun-export.

A checkpoint carries a header (algorithm, environment, network and its settings, shapes) that
must match the agent it is loaded into (:func:`checkpoint_header`): a checkpoint made for another
run is refused naming both values, before the agent is touched. drlrun-eval and drlrun-export
rebuild the agent from the run's own saved settings, so it acts exactly as in training's
evaluations (normalisation statistics included, and frozen, since they act with
``explore=False``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from drlrun import checkpoint
from drlrun.agent import Agent, BuildContext, EnvSpec
from drlrun.buffers.frames import frame_storage
from drlrun.compose import to_settings
from drlrun.config import RunConfig, flatten
from drlrun.errors import DrlrunError
from drlrun.registry import ALGOS


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DrlrunError(f"device={name!r} was asked for, but torch sees no CUDA GPU here. "
                              "Use device=cpu or device=auto.")
        index = torch.device(name).index
        if index is not None and index >= torch.cuda.device_count():
            raise DrlrunError(f"device={name!r}: only {torch.cuda.device_count()} GPU(s) are visible.")
    return torch.device(name)


def build_agent(cfg: RunConfig, spec: EnvSpec, device: torch.device) -> Agent:
    """The configured algorithm's agent, before any training or checkpoint. (On ALE's frame stacks
    the replay buffer keeps each frame once: :func:`drlrun.buffers.frames.frame_storage`.)"""
    ctx = BuildContext(spec=spec, network=cfg.network, buffer=frame_storage(cfg.buffer, spec), device=device,
                       total_steps=cfg.total_steps, seed=cfg.seed)
    return ALGOS.get(cfg.algo.name)(cfg.algo, ctx)


def checkpoint_header(cfg: RunConfig, env_id: str, spec: EnvSpec) -> dict[str, Any]:
    """What a checkpoint must match to be loaded into an agent built from ``cfg``."""
    return {"algo": cfg.algo.name, "env": env_id, "network": cfg.network.name,
            "network_config": flatten(cfg.network), "obs_shape": list(spec.obs_shape),
            "action_kind": spec.action_kind, "action_dim": spec.action_dim}


# ---------------------------------------------------------------------------- resume
RESUME_KEYS = ("total_steps", "device", "torch_threads", "debug", "log.progress", "log.tensorboard",
               "log.interval", "checkpoint.interval",
               # where the env copies run changes nothing they compute: a resumed run may move to
               # another Ray cluster, actor count or timeout
               "env.ray.address", "env.ray.actors", "env.ray.timeout")


def resume_settings(run_dir: Path, overrides: list[str]) -> tuple[RunConfig, tuple[dict[str, Any], dict[str, Any]]]:
    """The settings a resumed run continues with: the ones saved in its latest checkpoint, plus
    the few ``overrides`` that may change on the way (``RESUME_KEYS``: a larger ``total_steps``
    extends the run; anything that would change the experiment is refused). Returns them with
    the loaded checkpoint."""
    path = run_dir / "checkpoints" / "latest.pt"
    header, state = checkpoint.load(path)
    if "settings" not in header:
        raise DrlrunError(f"Checkpoint {str(path)!r} does not record the run's settings (an earlier drlrun wrote "
                          "it), so the run cannot be resumed from it.")
    saved = OmegaConf.create(header["settings"])
    settings = to_settings(OmegaConf.merge(saved, OmegaConf.from_dotlist(_resume_changes(overrides))))
    settings.resume = str(run_dir)
    if header["step"] >= settings.total_steps:
        raise DrlrunError(f"The run in {str(run_dir)!r} already reached step {header['step']:,} of "
                          f"total_steps={settings.total_steps:,}. To train it further give a larger total_steps, "
                          f"e.g. drlrun resume={run_dir} total_steps={2 * settings.total_steps}.")
    return settings, (header, state)


def _resume_changes(overrides: list[str]) -> list[str]:
    """The ``key=value`` overrides a resume may take; any other key is refused."""
    changes = []
    for override in overrides:
        key, _, value = override.partition("=")
        key = key.lstrip("+~")
        if key == "resume":
            continue
        if key not in RESUME_KEYS:
            raise DrlrunError(f"{key!r} cannot change when resuming: the run goes on with the settings it was "
                              f"started with. Valid choices: {', '.join(RESUME_KEYS)}. To change {key}, start a "
                              "new run.")
        changes.append(f"{key}={value}")
    return changes


# ---------------------------------------------------------------------------- a trained agent
@dataclass
class Trained:
    """An agent rebuilt from a run and loaded from one of its checkpoints."""

    cfg: RunConfig
    env_id: str
    spec: EnvSpec
    agent: Agent
    path: Path
    header: dict[str, Any]


def run_settings(run_dir: Path) -> RunConfig:
    """The configuration a run was trained with."""
    saved = run_dir / ".hydra" / "config.yaml"
    if saved.is_file():
        return to_settings(OmegaConf.load(saved))
    for name in ("latest.pt", "best.pt"):
        path = run_dir / "checkpoints" / name
        if path.is_file():
            header, _ = checkpoint.load(path)
            if "settings" in header:
                return to_settings(OmegaConf.create(header["settings"]))
    raise DrlrunError(f"{str(run_dir)!r} is not a drlrun run directory: it has neither .hydra/config.yaml nor "
                      "a checkpoint that records its settings.")


def checkpoint_path(run_dir: Path, which: str) -> Path:
    if which == "best":
        path = run_dir / "checkpoints" / "best.pt"
        if not path.is_file() and (run_dir / "checkpoints" / "latest.pt").is_file():
            raise DrlrunError(f"{str(run_dir)!r} has no best checkpoint (it ran with checkpoint.save_best=false); "
                              "use checkpoint=last.")
        return path
    if which in ("last", "latest"):
        return run_dir / "checkpoints" / "latest.pt"
    return Path(which).expanduser()


def load_trained(run_dir: Path, which: str = "last", device: str = "cpu") -> Trained:
    """Rebuild the run's agent and load the checkpoint ``which`` (best, last, or a path) into it."""
    from drlrun.envs import describe, make_envs, resolve_env_id

    if not run_dir.is_dir():
        raise DrlrunError(f"{str(run_dir)!r}: no such directory. Give the directory of a drlrun run, "
                          "e.g. outputs/2026-01-31/12-00-00_ppo_CartPole-v1_seed0.")
    cfg = run_settings(run_dir)
    path = checkpoint_path(run_dir, which)
    header, state = checkpoint.load(path)
    env_id = resolve_env_id(cfg.env.id)
    envs = make_envs(cfg.env, env_id, 1)
    try:
        spec = dataclasses.replace(describe(envs, env_id), num_envs=cfg.env.num_envs)
    finally:
        envs.close()
    checkpoint.check_header(path, header, checkpoint_header(cfg, env_id, spec))
    agent = build_agent(cfg, spec, resolve_device(device))
    checkpoint.load_agent_state(agent, state, path, cfg.algo.name)
    return Trained(cfg, env_id, spec, agent, path, header)


def export_policy(agent: Any, algo: str) -> torch.nn.Module:
    """The agent's policy module for export (the optional ``export_policy``), or a DrlrunError
    naming the algorithm ``algo`` whose agent has none."""
    make = getattr(agent, "export_policy", None)
    if make is None:
        raise DrlrunError(f"algo={algo} does not provide a policy for export (its agent has no "
                          "export_policy method).")
    return make()
