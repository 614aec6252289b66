"""``drlrun``: the Hydra command line.

``drlrun algo=dqn env=CartPole-v1 seed=1`` composes ``conf/``, creates the run directory and
calls :func:`drlrun.runner.train`. User errors (:class:`DrlrunError`) print as one paragraph and
exit with status 2; ``debug=true`` or ``HYDRA_FULL_ERROR=1`` shows the traceback instead.
"""

from __future__ import annotations

import math
import os
import sys
from importlib import resources
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from drlrun import sweep
from drlrun.envs import slug
from drlrun.errors import DrlrunError
from drlrun.pruning import Pruned
from drlrun.runner import Diverged

EXIT_USER_ERROR = 2
EXIT_DIVERGED = 3
EXIT_SWEEP_FAILURES = 1
console = Console(stderr=True)

if not OmegaConf.has_resolver("slug"):
    OmegaConf.register_new_resolver("slug", slug)


def print_error(exc: BaseException) -> None:
    console.print(f"[bold red]drlrun error:[/] {exc}", highlight=False, soft_wrap=True)


def _wants_traceback(cfg: DictConfig | None = None) -> bool:
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        return True
    if cfg is not None:
        return bool(cfg.get("debug", False))
    return any(arg in ("debug=true", "debug=True", "++debug=true") for arg in sys.argv[1:])


@hydra.main(config_path="pkg://drlrun.conf", config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> float:
    """Hydra's task function; returns the final evaluation mean (what a sweeper optimises)."""
    from drlrun.config import to_settings
    from drlrun.runner import train
    from drlrun.telemetry import summary_table

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        settings = to_settings(cfg)
        summary = train(settings, run_dir)
    except Exception as exc:
        if multirun:  # one job's failure must not stop the sweep: record it and go on
            return _record_failed_job(cfg, run_dir, exc)
        if not isinstance(exc, DrlrunError) or _wants_traceback(cfg):
            raise
        print_error(exc)
        sys.exit(EXIT_DIVERGED if isinstance(exc, Diverged) else EXIT_USER_ERROR)
    out = Console()
    out.print(summary_table(summary, run_dir))
    out.print(f"TensorBoard: tensorboard --logdir {run_dir}", soft_wrap=True, highlight=False)
    return float(summary["final_return_mean"])


def _record_failed_job(cfg: DictConfig, run_dir: Path, exc: Exception) -> float:
    """A failed multirun job: its summary.json says why (the runner writes one when training
    itself failed; a job that failed before training gets one here), the full traceback goes to
    the job's log, and the sweeper gets NaN (Optuna records the trial as failed)."""
    import logging

    from drlrun.runner import failure_summary, write_summary

    job = HydraConfig.get().job.num
    if isinstance(exc, Pruned):  # an expected outcome of a search, not a failure
        logging.getLogger("drlrun").info("job pruned: %s", exc)
        console.print(f"[yellow]job {job} pruned:[/] {exc}", highlight=False, soft_wrap=True)
        return math.nan
    logging.getLogger("drlrun").error("job failed: %s", exc, exc_info=not isinstance(exc, DrlrunError))
    console.print(f"[bold red]job {job} failed:[/] {exc}", highlight=False, soft_wrap=True)
    if not (run_dir / "summary.json").exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        write_summary(run_dir, failure_summary(cfg, run_dir, "failed", exc))
    return math.nan


def _env_group_options() -> set[str]:
    folder = resources.files("drlrun.conf") / "env"
    return {p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml")}


def rewrite_env_id(argv: list[str]) -> list[str]:
    """Let ``env.id=X`` pick the environment, with X's preset where one exists.

    Tuned presets are chosen by the ``env`` group option (``${algo}_${env}``). Overriding only
    ``env.id`` would otherwise keep the default group option (CartPole-v1) and apply its preset
    to another environment. So, when no ``env=`` is given, ``env.id=X`` also selects ``env=X``
    where conf/env/X.yaml exists, and the neutral ``env=gym`` otherwise.
    """
    if any(a.split("=", 1)[0].lstrip("+~") == "env" for a in argv):
        return argv
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key.lstrip("+") == "env.id":
            simple = "," not in value and not value.startswith(("choice(", "range(", "glob("))
            option = value if simple and value in _env_group_options() else "gym"
            return [*argv, f"env={option}"]
    return argv


def main() -> None:
    """Console-script entry point."""
    sys.argv = [sys.argv[0], *rewrite_env_id(sys.argv[1:])]
    try:
        from drlrun.config import register_configs

        register_configs()
    except DrlrunError as exc:
        if _wants_traceback():
            raise
        print_error(exc)
        sys.exit(EXIT_USER_ERROR)
    _hydra_main()
    if sweep.FAILED_JOBS:  # the sweep ran to the end; say so in the exit status too
        sys.exit(EXIT_SWEEP_FAILURES)


if __name__ == "__main__":
    main()
