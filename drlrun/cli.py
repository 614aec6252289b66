"""``drlrun``: the Hydra command line.

``drlrun algo=dqn env=CartPole-v1 seed=1`` composes ``conf/``, creates the run directory and
calls :func:`drlrun.runner.train`. User errors (:class:`DrlrunError`) print as one paragraph and
exit with status 2; ``debug=true`` or ``HYDRA_FULL_ERROR=1`` shows the traceback instead.
``drlrun resume=RUN_DIR [total_steps=N]`` continues a run in its own directory. Exit statuses: 0
done, 1 a sweep had failed jobs, 2 bad input, 3 diverged, 130/143 stopped by Ctrl-C/SIGTERM.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import hydra
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from drlrun import sweep
from drlrun.commands import (
    EXIT_DIVERGED,
    EXIT_ENVS_FAILED,
    EXIT_SWEEP_FAILURES,
    EXIT_USER_ERROR,
    console,
    print_error,
)
from drlrun.envs import slug
from drlrun.errors import DrlrunError
from drlrun.interrupt import EnvsFailed, Interrupted
from drlrun.loop import Diverged
from drlrun.pruning import Pruned

if not OmegaConf.has_resolver("slug"):
    OmegaConf.register_new_resolver("slug", slug)


def _wants_traceback(cfg: DictConfig | None = None) -> bool:
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        return True
    if cfg is not None:
        return bool(cfg.get("debug", False))
    return any(arg in ("debug=true", "debug=True", "++debug=true") for arg in sys.argv[1:])


@hydra.main(config_path="pkg://drlrun.conf", config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> float:
    """Hydra's task function; returns the final evaluation mean (what a sweeper optimises)."""
    from drlrun.build import resume_settings
    from drlrun.compose import to_settings
    from drlrun.runner import train
    from drlrun.telemetry import summary_table

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        settings = to_settings(cfg)
        resume = None
        if settings.resume:
            settings, resume = resume_settings(Path(settings.resume), HydraConfig.get().overrides.task)
        summary = train(settings, run_dir, resume=resume)
    except Exception as exc:
        if isinstance(exc, Interrupted):  # Ctrl-C or SIGTERM: the checkpoint is saved; a sweep stops too
            print_error(exc, title="[bold yellow]drlrun:[/]")
            sys.exit(128 + exc.signum)
        if multirun:  # one job's failure must not stop the sweep: record it and go on
            return _record_failed_job(cfg, run_dir, exc)
        if not isinstance(exc, DrlrunError) or _wants_traceback(cfg):
            raise
        print_error(exc)
        sys.exit(EXIT_DIVERGED if isinstance(exc, Diverged) else EXIT_ENVS_FAILED if isinstance(exc, EnvsFailed)
                 else EXIT_USER_ERROR)
    out = Console()
    if multirun:  # one line per job: a sweep's jobs (on Ray, many at once) must not interleave tables
        out.print(f"job {HydraConfig.get().job.num}: {summary['algo']} {summary['env']} seed {summary['seed']} "
                  f"{summary['status']}, final return {summary['final_return_mean']:.1f} in "
                  f"{summary['wall_seconds']:.0f} s -> {run_dir}", soft_wrap=True, highlight=False)
    else:
        out.print(summary_table(summary, run_dir))
        out.print(f"TensorBoard: tensorboard --logdir {run_dir}", soft_wrap=True, highlight=False)
    return float(summary["final_return_mean"])


def _record_failed_job(cfg: DictConfig, run_dir: Path, exc: Exception) -> float:
    """A failed multirun job: its summary.json says why (the runner writes one when training
    itself failed; a job that failed before training gets one here), the full traceback goes to
    the job's log, and the sweeper gets NaN (Optuna records the trial as failed)."""
    import logging

    from drlrun.summary import failure_summary, write_summary

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


# Environment options that stand for a whole namespace: its ids with no option of their own choose
# them (env.id=ALE/Seaquest-v5 -> env=atari: the Atari preprocessing, a CNN, clipped rewards).
NAMESPACE_OPTIONS = {"ALE": "atari"}


def _env_group_options() -> set[str]:
    from drlrun.compose import group_options

    return set(group_options("env"))


def rewrite_env_id(argv: list[str]) -> list[str]:
    """Let ``env.id=X`` pick the environment, with X's preset where one exists.

    Tuned presets are chosen by the ``env`` group option (``${algo}_${env}``). Overriding only
    ``env.id`` would otherwise keep the default group option (CartPole-v1) and apply its preset
    to another environment. So, when no ``env=`` is given, ``env.id=X`` also selects ``env=X``
    where conf/env/X.yaml exists, else the option of X's namespace (``NAMESPACE_OPTIONS``: any
    ``ALE/`` id gets ``env=atari``), and the neutral ``env=gym`` otherwise.
    """
    if any(a.split("=", 1)[0].lstrip("+~") == "env" for a in argv):
        return argv
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key.lstrip("+") == "env.id":
            simple = "," not in value and not value.startswith(("choice(", "range(", "glob("))
            name = value.replace("/", "-")  # (MinAtar/Breakout-v1's option: MinAtar-Breakout-v1)
            options = _env_group_options()
            family = NAMESPACE_OPTIONS.get(value.partition("/")[0]) if "/" in value else None
            option = name if simple and name in options else family if simple and family in options else "gym"
            return with_override(argv, f"env={option}")
    return argv


def choose_network(argv: list[str]) -> list[str]:
    """An environment option that names the network its observations need (``network: cnn`` in
    conf/env/X.yaml: frames) gets it when no ``network=`` is given. Hydra cannot let a group
    option choose another group's option, and the presets of such environments size that network.
    A sweep over a list of env options (``env=MinAtar-Breakout-v1,MinAtar-SpaceInvaders-v1``)
    gets the network they all name; options that name different networks get none (each job
    then says which networks fit)."""
    if any(a.split("=", 1)[0].lstrip("+~") == "network" for a in argv):
        return argv
    values = [a.partition("=")[2] for a in argv if a.split("=", 1)[0].lstrip("+") == "env"]
    options = values[0].split(",") if len(values) == 1 else []
    if not options or any(option not in _env_group_options() for option in options):
        return argv
    folder = resources.files("drlrun.conf") / "env"
    networks = {(yaml.safe_load((folder / f"{option}.yaml").read_text()) or {}).get("network") for option in options}
    network = networks.pop() if len(networks) == 1 else None
    return with_override(argv, f"network={network}") if network else argv


def with_override(argv: list[str], override: str) -> list[str]:
    """``argv`` with ``override`` beside the others: Hydra's argument parser takes the overrides
    as one run of words (``drlrun -m a=1 --cfg job`` would leave an override added at the end
    unparsed, and one added first would split ``-m`` from its own)."""
    first = next((i for i, a in enumerate(argv) if "=" in a and not a.startswith("-")), len(argv))
    return [*argv[:first], override, *argv[first:]]


def prepare_resume(argv: list[str]) -> list[str]:
    """``resume=RUN_DIR``: check that RUN_DIR is a run with a checkpoint, and make it Hydra's run
    directory again, without rewriting its ``.hydra/`` record of how the run was started. This
    happens before Hydra starts, so a wrong path creates no directory."""
    values = [a.partition("=")[2] for a in argv if a.partition("=")[0].lstrip("+") == "resume"]
    if not values or values[-1] in ("", "null", "None"):
        return argv
    given = values[-1]
    if any(a in ("-m", "--multirun") for a in argv):
        raise DrlrunError(f"resume={given!r} continues one run; it cannot be combined with -m (multirun). "
                          "Resume each run of a sweep with its own 'drlrun resume=JOB_DIR'.")
    path = Path(given).expanduser()
    if not path.is_dir():
        raise DrlrunError(f"resume={given!r}: no such directory. Give the directory of a drlrun run, "
                          "e.g. resume=outputs/2026-01-31/12-00-00_ppo_CartPole-v1_seed0.")
    if not (path / "checkpoints" / "latest.pt").is_file():
        if (path / "summary.json").is_file() or (path / "metrics.jsonl").is_file():
            raise DrlrunError(f"resume={given!r}: this run has no checkpoint to continue from "
                              "(checkpoints/latest.pt is missing: it stopped before its first evaluation, "
                              "or ran with checkpoint.enabled=false). Start it again instead.")
        raise DrlrunError(f"resume={given!r} is not a drlrun run directory: it has no checkpoints/latest.pt, "
                          "summary.json or metrics.jsonl.")
    quoted = str(path.resolve()).replace("\\", "\\\\").replace("'", "\\'")
    rest = [a for a in argv if a.partition("=")[0].lstrip("+") != "resume"]
    return [*rest, f"resume='{quoted}'", f"hydra.run.dir='{quoted}'", "hydra.output_subdir=null"]


def check_output_dir(argv: list[str]) -> None:
    """Fail before Hydra starts where the run (or sweep) directory cannot be created: Hydra
    would otherwise stop with a traceback while making it."""
    given = {key: value for key, _, value in (a.partition("=") for a in argv)
             if key.lstrip("+") in ("hydra.run.dir", "hydra.sweep.dir")}
    for key, value in (given or {"hydra.run.dir": "outputs"}).items():
        static = value.strip("'\"").split("${", 1)[0]  # the part before any interpolation
        target = Path(static or ".").expanduser()
        existing = target
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise DrlrunError(f"{key}={value!r} cannot be created: {str(existing)!r} is a file, not a directory. "
                              "Choose another output directory.")
        try:  # (permissions alone do not tell: /proc is 'writable' for root, yet takes no directory)
            os.rmdir(tempfile.mkdtemp(prefix=".drlrun-probe-", dir=existing))
        except OSError as exc:
            raise DrlrunError(f"{key}={value!r} cannot be created: {str(existing)!r} takes no new directory "
                              f"({exc.strerror}). Run from a writable directory or set hydra.run.dir=<a writable "
                              "path>.") from exc


def hydra_message(exc: BaseException) -> str:
    """Hydra's report of a bad override or config option as one paragraph: its lines joined, the
    available options as a list, without the config search path."""
    lines = str(exc).splitlines()
    override = getattr(exc, "override", None)  # (OverrideParseException: the override it could not read)
    if override and override not in str(exc):
        lines.insert(0, f"Cannot read the override {override!r}")
    if exc.__cause__ is not None and str(exc.__cause__).strip():
        lines.append(str(exc.__cause__).splitlines()[0])
    kept: list[str] = []
    for line in lines:
        if line.startswith("Config search path"):
            break
        if line.startswith("\t") and kept and kept[-1].endswith(":"):
            kept[-1] += " " + line.strip()
        elif line.startswith("\t") and kept:
            kept[-1] += ", " + line.strip()
        elif line.strip() and not line.strip().startswith(("full_key:", "object_type=")):
            kept.append(line.strip())
    return ". ".join(line[:1].upper() + line[1:].rstrip(".") for line in kept) + "."


@contextmanager
def hydra_errors_as_user_errors() -> Iterator[None]:
    """Hydra reports a bad override (``total_steps=abc``) or an unknown option (``algo=nope``)
    itself, over several lines, with exit status 1. drlrun's promise for bad input is exit 2 and
    one paragraph, so Hydra's compact errors (composition, overrides, missing options) become a
    :class:`DrlrunError` here; any other exception keeps Hydra's own report. (Hydra calls its
    ``run_and_report`` by module lookup; where a Hydra version has none, nothing changes.)"""
    import hydra._internal.utils as hydra_utils
    from hydra.errors import CompactHydraException

    original: Callable[[Any], Any] | None = getattr(hydra_utils, "run_and_report", None)
    if original is None:
        yield
        return

    def run_and_report(func: Any) -> Any:
        try:
            return func()
        except CompactHydraException as exc:
            if _wants_traceback():
                raise
            raise DrlrunError(hydra_message(exc)) from exc
        except Exception as exc:  # Hydra's own report, traceback and all
            error = exc
            return original(lambda: _raise(error))

    hydra_utils.run_and_report = run_and_report
    try:
        yield
    finally:
        hydra_utils.run_and_report = original


def _raise(exc: BaseException) -> None:
    raise exc


def main() -> None:
    """Console-script entry point."""
    try:
        sys.argv = [sys.argv[0], *prepare_resume(choose_network(rewrite_env_id(sys.argv[1:])))]
        check_output_dir(sys.argv[1:])
        from drlrun.compose import register_configs

        register_configs()
    except DrlrunError as exc:
        if _wants_traceback():
            raise
        print_error(exc)
        sys.exit(EXIT_USER_ERROR)
    try:
        with hydra_errors_as_user_errors():
            _hydra_main()
    except DrlrunError as exc:  # (only Hydra's: a run's own errors are handled inside it)
        print_error(exc)
        sys.exit(EXIT_USER_ERROR)
    except ValueError as exc:  # Hydra's plain check of its mode flags (-m with --cfg, ...)
        if _wants_traceback() or not str(exc).startswith("Only one of"):
            raise
        print_error(DrlrunError(f"{exc}; keep one of them (drlrun --help)."))
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:  # a second Ctrl-C: stopped at once, no checkpoint of this moment
        if _wants_traceback():
            raise
        console.print("[bold yellow]drlrun:[/] stopped at once (second Ctrl-C); the last saved checkpoint "
                      "is unchanged.", highlight=False)
        sys.exit(130)
    if sweep.FAILED_JOBS:  # the sweep ran to the end; say so in the exit status too
        sys.exit(EXIT_SWEEP_FAILURES)


if __name__ == "__main__":
    main()
