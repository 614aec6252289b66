"""Starting a run's telemetry: the loggers of ``log.backends`` (registry ``LOGGERS``, entry-point
group ``drlrun.loggers``), told which run they record (its settings, its sweep and job, its Optuna
trial, where it resumes), and ``drlrun/telemetry.py`` around them.

A logger name that is not installed fails before anything is built; a logger that cannot start
(a tracking server that does not answer, a bad URI, a missing extra) fails before training. Both
are user errors: exit 2, one paragraph.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from drlrun.config import LogConfig, RunConfig, flatten
from drlrun.errors import DrlrunError, choices_hint
from drlrun.pruning import ENV_STORAGE, ENV_TRIAL
from drlrun.registry import LOGGERS
from drlrun.sink import SinkContext, read_state
from drlrun.telemetry import Telemetry


def backends(log: LogConfig) -> list[str]:
    """The loggers a run starts, in order: ``log.backends`` (each once) less TensorBoard where
    ``log.tensorboard=false``."""
    names = list(dict.fromkeys(log.backends))
    return [n for n in names if n != "tensorboard" or log.tensorboard]


def check_backends(log: LogConfig) -> None:
    """Every name of ``log.backends`` is an installed, working logger."""
    for name in log.backends:
        if name in LOGGERS:
            continue
        if name in LOGGERS.broken:
            raise LOGGERS.broken[name]
        raise DrlrunError(f"log.backends has {name!r}, which is not a logger. {choices_hint(name, LOGGERS.names())}")


def sweep_job() -> tuple[Path, int] | None:
    """(sweep directory, job number) inside a Hydra multirun job; None otherwise."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if not HydraConfig.initialized():
            return None
        hydra = HydraConfig.get()
        if hydra.mode != RunMode.MULTIRUN:
            return None
        return Path(str(hydra.sweep.dir)), int(hydra.job.num)
    except Exception:  # (a Hydra without these fields: treated as a single run)
        return None


def trial_number() -> int | None:
    """The Optuna trial number of this job inside ``hydra/sweeper=optuna`` (the sweeper gives jobs
    the trial's storage id; its number is what Optuna shows)."""
    trial_id = os.environ.get(ENV_TRIAL)
    if not trial_id:
        return None
    try:
        import optuna

        storage = optuna.storages.get_storage(os.environ[ENV_STORAGE])
        return int(storage.get_trial_number_from_id(int(trial_id)))
    except Exception:
        return None


def logger_settings(log: LogConfig, name: str) -> Any:
    """A logger's section: ``log.<name>`` for the built-ins, ``log.options.<name>`` for plug-ins."""
    if name in ("mlflow", "wandb"):
        return getattr(log, name)
    return log.options.get(name, {})


def open_telemetry(cfg: RunConfig, run_dir: Path, *, title: str, progress: bool,
                   resume_step: int | None, seconds: float) -> Telemetry:
    """Start the loggers of ``log.backends`` and the telemetry around them. A logger that cannot
    start raises :class:`DrlrunError` (the ones started before it are closed again)."""
    from rich.console import Console

    console = Console(stderr=True)
    job = sweep_job()
    sweep_dir, job_num = job if job is not None else (None, None)
    config, trial = flatten(cfg), trial_number()
    sinks: dict[str, Any] = {}
    try:
        for name in backends(cfg.log):
            run_name = title if job_num is None else f"job {job_num}: {title}"
            ctx = SinkContext(name=name, run_dir=run_dir, run_name=run_name, config=config, settings=logger_settings(cfg.log, name), resume_step=resume_step,
                              sweep_dir=sweep_dir, job=job_num, trial=trial,
                              message=lambda text: console.print(text, highlight=False, soft_wrap=True))
            sinks[name] = LOGGERS.build(name, ctx)
    except BaseException:
        for sink in sinks.values():
            with contextlib.suppress(Exception):
                sink.close(status="failed", artifacts=[])
        raise
    return Telemetry(run_dir, total_steps=cfg.total_steps, title=title, progress=progress, console=console,
                     resume_step=resume_step, seconds=seconds, sinks=sinks)


def attach(run_dir: Path, files: list[Path]) -> None:
    """Files a run gets after it ended (``drlrun-eval``'s ``eval.json`` and videos) go to the
    trackers that keep files, into the run's own tracked run (MLflow: its artifacts)."""
    if read_state(run_dir).get("mlflow"):
        from drlrun.sink_mlflow import attach as attach_mlflow

        attach_mlflow(run_dir, [f for f in files if f.is_file()])
