"""``drlrun-export RUN_DIR [format=export|torchscript|onnx] [checkpoint=last|best|PATH]
[output=PATH]``: the trained policy as one standalone file, usable without drlrun.

The file maps a float32 batch of raw observations ``[batch, *obs_shape]`` to the actions a
deterministic evaluation takes (discrete: int64 ``[batch]``; continuous: float32
``[batch, *action_shape]`` within the bounds), with observation normalisation baked in. Frames
(``network=cnn``) go in as the env gives them, uint8 or bool, and are scaled inside. Formats:
a ``torch.export`` program (``torch.export.load``, the default), TorchScript (``torch.jit.load``,
also from C++; torch now marks it deprecated), or ONNX (the ``onnx`` extra; runs in onnxruntime). Before it reports success, the command loads
the file back and checks that it picks the agent's actions on 100 observations from the
environment; ``<file>.json`` beside it says how to call it.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch import nn

from drlrun import checkpoint
from drlrun.buffers.replay import observation_dtype
from drlrun.build import Trained, export_policy, load_trained
from drlrun.commands import run_command
from drlrun.config import param
from drlrun.errors import DrlrunError
from drlrun.policy import portable

SUFFIX = {"torchscript": ".pt", "export": ".pt2", "onnx": ".onnx"}
USAGE = {
    "torchscript": "policy = torch.jit.load(PATH); actions = policy(torch.as_tensor(obs, dtype=torch.float32))",
    "export": "policy = torch.export.load(PATH).module(); actions = policy(torch.as_tensor(obs, dtype=torch.float32))",
    "onnx": "session = onnxruntime.InferenceSession(PATH); actions = session.run(None, {'obs': obs.astype('float32')})[0]",
}
CHECK_OBSERVATIONS = 100


@dataclass
class ExportArgs:
    """The ``key=value`` arguments of drlrun-export."""

    format: str = param("export", choices=("export", "torchscript", "onnx"),
                        help="export: a torch.export program (.pt2); torchscript: TorchScript (.pt, also for "
                             "LibTorch in C++; deprecated by torch); onnx: ONNX (.onnx)")
    checkpoint: str = param("last", help="last (the policy training ended with, which the run's final "
                             "evaluation scored), best (its best evaluation), or a checkpoint file")
    output: str | None = param(None, help="the file to write; default RUN_DIR/export/policy.<pt|pt2|onnx>")
    debug: bool = param(False, help="show Python tracebacks for errors")


def policy_module(trained: Trained) -> nn.Module:
    """The agent's policy, made to depend on torch alone (``policy.portable``)."""
    return portable(export_policy(trained.agent, trained.cfg.algo.name))


def sample_observations(trained: Trained, n: int = CHECK_OBSERVATIONS) -> np.ndarray:
    """``n`` observations the trained agent meets: its own deterministic play on 4 envs."""
    from drlrun.envs import make_envs

    envs = make_envs(trained.cfg.env, trained.env_id, 4)
    try:
        obs, _ = envs.reset(seed=trained.cfg.seed + 7)
        seen = []
        while sum(len(o) for o in seen) < n:
            seen.append(np.array(obs, dtype=observation_dtype(trained.spec)))  # frames: as the env gives them
            obs, *_ = envs.step(trained.agent.act(obs, explore=False, deterministic=True))
    finally:
        envs.close()
    return np.concatenate(seen)[:n]


def write(policy: nn.Module, fmt: str, path: Path, example: torch.Tensor) -> None:
    """Write ``policy`` as ``fmt`` to ``path``."""
    batch = torch.export.Dim("batch", min=1, max=1_000_000)
    if fmt == "torchscript":
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # chosen on purpose: see ExportArgs
            torch.jit.trace(policy, example).save(str(path))
    elif fmt == "export":
        program = torch.export.export(policy, (example,), dynamic_shapes=({0: batch},))
        torch.export.save(program, str(path))
    else:
        try:
            import onnx  # noqa: F401
            import onnxscript  # noqa: F401
        except ImportError as exc:
            raise DrlrunError("format=onnx needs the onnx and onnxscript packages. Install the extra: "
                              "pip install 'drlrun[onnx]'.") from exc
        torch.onnx.export(policy, (example,), str(path), input_names=["obs"], output_names=["action"],
                          dynamic_shapes=({0: batch},), dynamo=True, external_data=False, verbose=False)


def load(fmt: str, path: Path) -> Any:
    """A callable numpy -> numpy over the exported file, or None where its runtime is missing."""
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path))
        return lambda obs: module(torch.from_numpy(obs)).numpy()
    if fmt == "export":
        module = torch.export.load(str(path)).module()
        return lambda obs: module(torch.from_numpy(obs)).detach().numpy()
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda obs: session.run(None, {"obs": obs})[0]


def compare(trained: Trained, exported: Any, obs: np.ndarray) -> float:
    """The largest difference between the agent's and the exported policy's actions (0 for
    identical discrete choices); raises if a discrete action differs."""
    agent_actions = trained.agent.act(obs, explore=False, deterministic=True)
    actions = np.asarray(exported(obs))
    if actions.shape != np.asarray(agent_actions).shape:
        raise DrlrunError(f"The exported policy returns actions of shape {actions.shape}, the agent "
                          f"{np.asarray(agent_actions).shape}.")
    if trained.spec.action_kind == "discrete":
        mismatches = int((actions != agent_actions).sum())
        if mismatches:
            raise DrlrunError(f"The exported policy chose other actions than the agent on {mismatches} of "
                              f"{len(obs)} observations.")
        return 0.0
    return float(np.abs(actions - agent_actions).max())


def export_run(run_dir: Path, args: ExportArgs) -> dict[str, Any]:
    """Export, load back and check; write ``policy.json``; return its content."""

    trained = load_trained(run_dir, args.checkpoint, "cpu")
    policy = policy_module(trained)
    path = Path(args.output).expanduser() if args.output else run_dir / "export" / f"policy{SUFFIX[args.format]}"
    obs = sample_observations(trained)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")  # checked before it takes the final name
    try:
        write(policy, args.format, tmp, torch.from_numpy(obs[:4].copy()))  # (a view would be traced as one)
        exported = load(args.format, tmp)
        max_diff = None if exported is None else compare(trained, exported, obs)
        if max_diff is not None and max_diff > 1e-4:
            raise DrlrunError(f"The exported policy's actions differ from the agent's by up to {max_diff:.2g}.")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    spec = trained.spec
    dtype = observation_dtype(spec).name
    info = {
        "file": str(path), "format": args.format, "algo": trained.cfg.algo.name, "env": trained.env_id,
        "checkpoint": str(trained.path), "checkpoint_step": int(trained.header.get("step", 0)),
        "input": {"name": "obs", "dtype": dtype, "shape": ["batch", *spec.obs_shape]},
        "output": ({"name": "action", "dtype": "int64", "shape": ["batch"], "n_actions": spec.n_actions}
                   if spec.action_kind == "discrete" else
                   {"name": "action", "dtype": "float32", "shape": ["batch", *spec.action_shape],
                    "low": np.asarray(spec.action_low).tolist(), "high": np.asarray(spec.action_high).tolist()}),
        "observation_normalization": "included" if dtype == "float32" else "frames scaled to [0, 1] inside",
        "usage": USAGE[args.format].replace("PATH", repr(str(path))).replace("float32", dtype),
        "checked_observations": None if max_diff is None else len(obs), "max_action_difference": max_diff,
    }
    checkpoint.write_json(path.with_name(f"{path.name}.json"), info)
    return info


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    console = Console()
    _, info = run_command(argv, ExportArgs, "drlrun-export RUN_DIR [key=value ...]", export_run)
    console.print(f"[bold green]Exported[/] {info['algo']} on {info['env']} (checkpoint step "
                  f"{info['checkpoint_step']:,}) to {info['file']}", highlight=False, soft_wrap=True)
    if info["checked_observations"]:
        console.print(f"Loaded back: the same actions as the agent on {info['checked_observations']} observations "
                      f"(largest difference {info['max_action_difference']:.2g}).", highlight=False)
    else:
        console.print("onnxruntime is not installed, so the file was not loaded back to check it.", highlight=False)
    console.print(f"Use it: {info['usage']}", highlight=False, soft_wrap=True)


if __name__ == "__main__":
    main()
