"""What a run leaves behind: ``summary.json`` (completed or not, with ``tracking``: where its
loggers keep it), and the final logger entries (overall speed, HParams).

A run that diverges, fails or is interrupted while training still leaves a summary.json (status
``diverged``, ``failed``, ``pruned`` or ``interrupted``, with the error), so sweeps and reports
can account for it.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

from drlrun import checkpoint
from drlrun.config import RunConfig, flatten
from drlrun.errors import DrlrunError
from drlrun.listeners import SolvedStep
from drlrun.schedule import Counters
from drlrun.sidesteps import EvalHistory


def machine(device: torch.device) -> dict[str, str]:
    """Where a run's numbers come from: the CPU model and the numeric path torch takes on it (its
    vector instruction set, and MKL's where it is capped), plus the GPU for CUDA runs. The same
    seed follows another trajectory on another path, so results name it."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    path = torch.backends.cpu.get_cpu_capability()
    if os.environ.get("MKL_ENABLE_INSTRUCTIONS"):
        path += f", MKL {os.environ['MKL_ENABLE_INSTRUCTIONS']}"
    out = {"cpu": cpu, "numeric_path": path}
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
    return out


def completed(cfg: RunConfig, run_dir: Path, *, env_id: str, device: torch.device, counters: Counters,
              episodes: int, history: EvalHistory, solved: SolvedStep, early_stopped: bool) -> dict[str, Any]:
    """summary.json of a run that trained to its end (or stopped early, solved)."""
    wall = counters.elapsed()
    step, side = counters.step, counters.side_seconds
    final_step, final_mean, final_std = history.evals[-1]
    return {
        "algo": cfg.algo.name, "env": env_id, "seed": cfg.seed, "status": "completed",
        "early_stopped": early_stopped, "total_steps": step, "episodes": episodes,
        "wall_seconds": round(wall, 3), "steps_per_second": round(step / max(wall, 1e-9), 1),
        "train_seconds": round(wall - side, 3),
        "train_steps_per_second": round(step / max(wall - side, 1e-9), 1),
        "final_return_mean": final_mean, "final_return_std": final_std, "final_eval_step": final_step,
        "best_return_mean": history.best, "threshold": solved.threshold, "solved_at_step": solved.solved_at,
        "solved_at_seconds": solved.solved_at_seconds, "resumes": counters.resumes,
        "device": str(device), **machine(device), "run_dir": str(run_dir),
    }


def to_tensorboard(telemetry: Any, cfg: RunConfig, summary: dict[str, Any]) -> None:
    """The run's overall speed, and its hyperparameters against its results, for every logger
    (TensorBoard's HParams tab, MLflow's ``hparams/*`` metrics, the W&B run summary)."""
    telemetry.scalars(summary["total_steps"], {"charts/SPS": summary["steps_per_second"]})
    telemetry.hparams(flatten(cfg), {"hparams/final_return_mean": summary["final_return_mean"],
                                     "hparams/best_return_mean": summary["best_return_mean"],
                                     "hparams/steps_per_second": summary["steps_per_second"]})


def failure_summary(cfg: Any, run_dir: Path, status: str, error: BaseException, *, env_id: str | None = None,
                    threshold: float | None = None, counters: Counters | None = None,
                    history: EvalHistory | None = None) -> dict[str, Any]:
    """summary.json for a run that did not complete: its status, the error, and how far it got
    (``counters``, ``history``; none for a run that failed before training). ``cfg`` is the run's
    settings, or the composed Hydra config when they could not be built."""
    evals = history.evals if history is not None else []
    return {
        "algo": cfg.algo.name, "env": env_id if env_id is not None else cfg.env.id, "seed": cfg.seed,
        "status": status, "error": f"{type(error).__name__}: {error}" if not isinstance(error, DrlrunError)
        else str(error),
        "total_steps": counters.step if counters is not None else 0,
        "wall_seconds": round(counters.elapsed() if counters is not None else 0.0, 3),
        "final_return_mean": evals[-1][1] if evals else None,
        "final_eval_step": evals[-1][0] if evals else None,
        "best_return_mean": history.best if history is not None and evals else None,
        "threshold": threshold, "resumes": counters.resumes if counters is not None else 0, "run_dir": str(run_dir),
    }


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    checkpoint.write_json(run_dir / "summary.json", summary)
