"""The job side of ``hydra/sweeper=optuna``: report evaluations to the trial and stop when the
pruner says so.

The sweeper (``drlrun/optuna_sweeper``) puts the study's storage, its name and the trial's id in
the job's environment (``hydra.job.env_set``). Outside such a sweep :func:`trial_from_env`
returns None and nothing here runs.
"""

from __future__ import annotations

import os
from typing import Any

from drlrun.errors import DrlrunError

ENV_STORAGE, ENV_STUDY, ENV_TRIAL = "DRLRUN_OPTUNA_STORAGE", "DRLRUN_OPTUNA_STUDY", "DRLRUN_OPTUNA_TRIAL"
PRUNER_ATTR = "drlrun_pruner"  # the study's user attribute holding the pruner's settings
PRUNERS = ("median", "none")


def make_pruner(settings: dict[str, Any]) -> Any:
    """The Optuna pruner for ``hydra.sweeper.pruner`` and its settings (the sweeper and every
    job build the same one: Optuna keeps no pruner in its storage)."""
    import optuna

    if settings["name"] == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=settings["n_startup_trials"],
                                       n_warmup_steps=settings["n_warmup_steps"])


class Pruned(DrlrunError):
    """The Optuna pruner stopped this trial: its evaluations trail the other trials'."""


class TrialReporter:
    """Reports evaluation means to one Optuna trial, from the process that runs the job."""

    def __init__(self, storage: str, study_name: str, trial_id: int) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.load_study(study_name=study_name, storage=storage)
        study = optuna.load_study(study_name=study_name, storage=storage,
                                  pruner=make_pruner(study.user_attrs[PRUNER_ATTR]))
        self.trial = optuna.trial.Trial(study, trial_id)

    def should_stop(self, step: int, value: float) -> bool:
        """Report ``value`` at env step ``step``; True when the pruner prunes the trial. With
        several seeds per trial, the first job to report a step sets the trial's value there."""
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # 'step already reported' by another seed of the trial
            self.trial.report(value, step)
        return bool(self.trial.should_prune())


def trial_from_env() -> Any:
    """The :class:`TrialReporter` of the Optuna trial this job belongs to, or None."""
    if not os.environ.get(ENV_TRIAL):
        return None
    return TrialReporter(os.environ[ENV_STORAGE], os.environ[ENV_STUDY], int(os.environ[ENV_TRIAL]))
