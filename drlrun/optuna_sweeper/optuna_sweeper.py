"""``hydra/sweeper=optuna``: hyperparameter search with current Optuna, including pruning.

Why our own plugin: the published ``hydra-optuna-sweeper`` (1.3.0) pins ``optuna<3`` and has no
pruning, while RL trials are expensive and RL Zoo-style median pruning on intermediate
evaluations is what users expect. This sweeper is small and uses Hydra's own pieces: the
search space is written in Hydra's override syntax, jobs go through whatever launcher is
configured (basic, joblib, Ray, SLURM), and each job is an ordinary drlrun run directory.

How a trial runs:
1. ``study.ask()`` proposes values for ``hydra.sweeper.params`` (and for any sweep given on the
   command line, e.g. ``algo.lr='tag(log, interval(1e-4, 1e-2))'``);
2. the trial becomes ``seeds_per_trial`` jobs (``seed=seed, seed+1, ...``) launched together;
3. every evaluation inside a job reports its mean return to the trial (the study lives in an
   SQLite file in the sweep directory, so jobs in other processes or on other Ray workers on a
   shared filesystem reach it), and the pruner may stop the job: status ``pruned``;
4. the trial's value is the mean over its seeds of the final evaluation; a pruned job makes the
   trial pruned, a trial whose jobs all failed is recorded as failed.
A proposal with exactly the values of an earlier completed or pruned trial (TPE proposes such
repeats often when the space is mostly choices) is not trained again: its runs would be the same
runs, seed for seed, so it takes that trial's outcome and records ``repeat_of`` (a user attribute).
More evidence per setting is what ``seeds_per_trial`` is for.
At the end, ``optimization_results.yaml`` in the sweep directory holds the best parameters.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

# The job side (drlrun/pruning.py) reads these; they reach the job through hydra.job.env_set,
# which every launcher applies where the job runs.
from drlrun.pruning import ENV_STORAGE, ENV_STUDY, ENV_TRIAL, PRUNER_ATTR, PRUNERS, make_pruner

log = logging.getLogger(__name__)


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.drlrun_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    direction: str = "maximize"  # of the final evaluation mean; or minimize
    n_trials: int = 20
    n_jobs: int = 1  # trials launched together (give the launcher that many workers)
    seeds_per_trial: int = 1  # the objective is the mean over this many seeds
    sampler: str = "tpe"  # tpe or random
    seed: int = 0  # the sampler's seed
    pruner: str = "median"  # median or none
    n_startup_trials: int = 5  # trials that run to the end before the median pruner may prune
    n_warmup_steps: int = 0  # env steps of a trial before it may be pruned
    study_name: str | None = None  # default: the sweep directory's name
    storage: str | None = None  # default: sqlite in the sweep directory
    params: dict[str, str] = field(default_factory=dict)  # key: Hydra sweep syntax


ConfigStore.instance().store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="drlrun")


class SweeperError(ValueError):
    """A search-space or sweeper setting that cannot work."""


def _primitive(value: Any) -> Any:
    """Optuna's categorical choices must be None, bool, int, float or str: lists such as
    network.hidden_sizes choices become their override text ([64,64])."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return "[" + ",".join(str(_primitive(v)) for v in value) + "]"
    return str(value)


def distribution(override: Override) -> Any:
    """The Optuna distribution of one sweep override: choice(...) -> categorical,
    range(a, b[, step]) -> integers a..b-1 on that step, interval(a, b) -> uniform (integers if
    both ends are ints), with tag(log, ...) for a log scale."""
    import optuna

    value = override.value()
    key = override.get_key_element()
    if isinstance(value, ChoiceSweep):
        return optuna.distributions.CategoricalDistribution([_primitive(v) for v in value.list])
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step
        if not all(isinstance(v, int) for v in (start, stop, step)):
            return optuna.distributions.CategoricalDistribution(
                [_primitive(v) for v in OverridesParser.create().parse_override(override.input_line).sweep_iterator()])
        last = start + ((stop - 1 - start) // step) * step
        return optuna.distributions.IntDistribution(start, last, step=step, log="log" in value.tags)
    if isinstance(value, IntervalSweep):
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return optuna.distributions.IntDistribution(value.start, value.end, log=log)
        return optuna.distributions.FloatDistribution(float(value.start), float(value.end), log=log)
    raise SweeperError(f"hydra.sweeper.params: {key}={override.get_value_element_as_str()} is not a search "
                       "space. Use choice(a, b, ...), range(a, b), interval(a, b) or tag(log, interval(a, b)).")


def _override_value(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


class OptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        settings.pop("_target_", None)
        self.settings = OptunaSweeperConf(**settings)
        self.launcher: Any = None
        self.config: DictConfig | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        try:
            import optuna  # noqa: F401
        except ImportError:
            raise SweeperError("hydra/sweeper=optuna needs Optuna: pip install 'drlrun[optuna]'.") from None
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    # ------------------------------------------------------------------ the search space
    def search_space(self, arguments: list[str]) -> tuple[dict[str, Any], list[str]]:
        parser = OverridesParser.create()
        params = self.settings.params or {}
        from_config = parser.parse_overrides([f"{key}={value}" for key, value in params.items()])
        from_command_line = parser.parse_overrides(arguments)
        space: dict[str, Any] = {}
        fixed: list[str] = []
        for override in from_command_line:
            if override.is_sweep_override():
                space[override.get_key_element()] = distribution(override)
            else:
                fixed.append(override.input_line)
        for override in from_config:
            key = override.get_key_element()
            if key in space or any(line.split("=", 1)[0].lstrip("+~") == key for line in fixed):
                continue  # the command line wins
            space[key] = distribution(override)
        if not space:
            raise SweeperError("hydra/sweeper=optuna has nothing to search: give hydra.sweeper.params (or "
                               "+search=<algo>_<env>) or a sweep such as algo.lr='interval(1e-4, 1e-2)'.")
        if self.settings.seeds_per_trial > 1 and "seed" in space:
            raise SweeperError("hydra.sweeper.seeds_per_trial > 1 sets the seeds itself; do not search over seed.")
        return space, fixed

    # ------------------------------------------------------------------ the loop
    def sweep(self, arguments: list[str]) -> Any:
        try:
            return self._sweep(arguments)
        except SweeperError as exc:  # bad settings: one paragraph and exit 2, like drlrun's own errors
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            Console(stderr=True).print(f"[bold red]drlrun error:[/] {exc}", highlight=False, soft_wrap=True)
            sys.exit(2)

    def _sweep(self, arguments: list[str]) -> Any:
        import optuna
        from hydra.core.utils import JobStatus

        s = self.settings
        assert self.config is not None
        if s.direction not in ("maximize", "minimize") or s.n_trials < 1 or s.n_jobs < 1 or s.seeds_per_trial < 1:
            raise SweeperError(f"hydra.sweeper: direction={s.direction!r} (maximize or minimize), n_trials="
                               f"{s.n_trials}, n_jobs={s.n_jobs} and seeds_per_trial={s.seeds_per_trial} (>= 1).")
        space, fixed = self.search_space(arguments)
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).resolve()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        storage = s.storage or f"sqlite:///{sweep_dir / 'optuna.db'}"
        study_name = s.study_name or sweep_dir.name
        samplers = {"tpe": lambda: optuna.samplers.TPESampler(seed=s.seed),
                    "random": lambda: optuna.samplers.RandomSampler(seed=s.seed)}
        if s.sampler not in samplers or s.pruner not in PRUNERS:
            raise SweeperError(f"hydra.sweeper.sampler={s.sampler!r} (valid: {', '.join(samplers)}) or "
                               f"hydra.sweeper.pruner={s.pruner!r} (valid: {', '.join(PRUNERS)}).")
        pruner_settings = {"name": s.pruner, "n_startup_trials": s.n_startup_trials, "n_warmup_steps": s.n_warmup_steps}
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(study_name=study_name, storage=storage, direction=s.direction,
                                    sampler=samplers[s.sampler](), pruner=make_pruner(pruner_settings),
                                    load_if_exists=True)
        # Optuna does not store the pruner; the jobs rebuild it from this (drlrun/pruning.py).
        study.set_user_attr(PRUNER_ATTR, pruner_settings)
        base_seed = int(self.config.get("seed", 0))
        TrialState = optuna.trial.TrialState
        # What each setting already gave: (trial number, state, value), keyed by its values; from a
        # study continued in the same sweep directory only where the seeds and the fixed overrides
        # were the same too.
        context = {"seeds": [base_seed + k for k in range(s.seeds_per_trial)], "overrides": sorted(fixed)}
        outcomes = {_setting(t.params): (t.number, t.state, t.value) for t in study.trials
                    if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.user_attrs.get("context") == context}
        job_index = 0
        done = 0
        while done < s.n_trials:
            asked = [study.ask(space) for _ in range(min(s.n_jobs, s.n_trials - done))]
            trials: list[Any] = []  # those that train
            repeats: list[Any] = []  # those whose setting an earlier (or this batch's) trial has
            training: set[tuple[tuple[str, str], ...]] = set()
            for trial in asked:
                trial.set_user_attr("context", context)
                setting = _setting(trial.params)
                if setting in outcomes or setting in training:
                    repeats.append(trial)
                else:
                    training.add(setting)
                    trials.append(trial)
            batch: list[list[str]] = []
            batch_outcomes: dict[tuple[tuple[str, str], ...], tuple[int, Any, float | None]] = {}
            for trial in trials:
                params = [f"{key}={_override_value(value)}" for key, value in trial.params.items()]
                link = [f"++hydra.job.env_set.{ENV_STORAGE}='{storage}'", f"++hydra.job.env_set.{ENV_STUDY}='{study_name}'",
                        f"++hydra.job.env_set.{ENV_TRIAL}={trial._trial_id}"]
                for k in range(s.seeds_per_trial):
                    seeds = [f"seed={base_seed + k}"] if s.seeds_per_trial > 1 else []
                    batch.append([*fixed, *params, *seeds, *link])
            returns = self.launcher.launch(batch, initial_job_idx=job_index) if batch else []
            job_index += len(batch)
            for i, trial in enumerate(trials):
                jobs = returns[i * s.seeds_per_trial:(i + 1) * s.seeds_per_trial]
                statuses = [_job_status(job) for job in jobs]
                values = [float(job.return_value) for job, status in zip(jobs, statuses, strict=True)
                          if job.status == JobStatus.COMPLETED and status == "completed"
                          and math.isfinite(float(job.return_value))]
                if "pruned" in statuses:
                    outcome = (TrialState.PRUNED, None)
                elif values:
                    outcome = (TrialState.COMPLETE, sum(values) / len(values))
                else:
                    outcome = (TrialState.FAIL, None)
                study.tell(trial, outcome[1], state=outcome[0])
                batch_outcomes[_setting(trial.params)] = (trial.number, *outcome)
            for trial in repeats:  # (a failure is tried again in a later batch, not reused there)
                number, state, value = outcomes.get(_setting(trial.params)) or batch_outcomes[_setting(trial.params)]
                trial.set_user_attr("repeat_of", number)
                study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
                log.info(f"Trial {trial.number} repeats trial {number}'s values: not trained again "
                         f"({state.name.lower()}{'' if value is None else f', {value:g}'}).")
            outcomes.update({k: v for k, v in batch_outcomes.items() if v[1] != TrialState.FAIL})
            done += len(asked)
        self._write_results(study, sweep_dir)
        return None

    def _write_results(self, study: Any, sweep_dir: Path) -> None:
        import optuna

        states = [t.state for t in study.trials]
        counts = {state.name.lower(): states.count(state) for state in optuna.trial.TrialState if state in states}
        results: dict[str, Any] = {"name": "optuna", "direction": self.settings.direction, "trials": counts}
        repeats = sum("repeat_of" in t.user_attrs for t in study.trials)
        if repeats:
            results["repeats"] = repeats  # trials that took an earlier trial's outcome
        completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if completed:
            results["best_params"] = study.best_params
            results["best_value"] = study.best_value
            results["best_trial"] = study.best_trial.number
        OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")


def _setting(params: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """A trial's values as a hashable key (the seeds are the same for every trial of a sweep)."""
    return tuple(sorted((key, repr(value)) for key, value in params.items()))


def _job_status(job: Any) -> str:
    """The drlrun status of a launched job: its summary.json's, or failed without one."""
    try:
        run_dir = Path(str(job.hydra_cfg.hydra.runtime.output_dir))
        return str(json.loads((run_dir / "summary.json").read_text()).get("status", "failed"))
    except (AttributeError, OSError, ValueError):
        return "failed"
