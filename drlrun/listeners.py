"""What listens to training's evaluations: the solved step, the best checkpoint, video, Optuna
pruning and early stop.

The loop hands each :class:`Evaluation` to every listener twice: :meth:`Listener.evaluated` as
soon as it is made, before the step's checkpoint (so a best checkpoint is saved first and the
``latest`` one records what the listeners did), and :meth:`Listener.stop` after that checkpoint,
where a listener may end the run (so a stopped run's last checkpoint holds its last step). The
loop does not know what they do. Nothing here may change what is learned: video runs with the
global RNG states put back afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drlrun.pruning import Pruned
from drlrun.rng import rng_untouched


@dataclass(frozen=True)
class Evaluation:
    """One of training's evaluations."""

    step: int
    mean: float
    std: float
    number: int  # 1 for the run's first evaluation (counting those before a resume)
    improved: bool  # its mean is higher than every earlier evaluation's
    train_seconds: float  # wall seconds of training before it, side time excluded
    final: bool  # at total_steps


@dataclass(frozen=True)
class Stop:
    """A listener ends training after this step's checkpoint: by raising ``error``, or (without
    one) as an early stop that completes the run, with ``message`` for the user."""

    message: str = ""
    error: Exception | None = None


class Listener:
    """Does nothing by default; a listener overrides what it needs."""

    def evaluated(self, ev: Evaluation) -> None:
        """The evaluation was just made; the step's checkpoint follows."""

    def stop(self, ev: Evaluation) -> Stop | None:
        """After the step's checkpoint: whether training ends here."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """What the ``latest`` checkpoint keeps of this listener (entries of its ``loop``)."""
        return {}

    def load_state_dict(self, loop: dict[str, Any]) -> None:
        pass


class SolvedStep(Listener):
    """The first evaluation whose mean reaches the env's reward threshold: its step and the
    training seconds before it."""

    def __init__(self, threshold: float | None) -> None:
        self.threshold = threshold
        self.solved_at: int | None = None
        self.solved_at_seconds: float | None = None

    def evaluated(self, ev: Evaluation) -> None:
        if self.threshold is not None and ev.mean >= self.threshold and self.solved_at is None:
            self.solved_at, self.solved_at_seconds = ev.step, round(ev.train_seconds, 3)

    def state_dict(self) -> dict[str, Any]:
        return {"solved_at": self.solved_at, "solved_at_seconds": self.solved_at_seconds}

    def load_state_dict(self, loop: dict[str, Any]) -> None:
        self.solved_at, self.solved_at_seconds = loop["solved_at"], loop["solved_at_seconds"]


class BestCheckpoint(Listener):
    """``checkpoints/best.pt`` (without the buffer) whenever an evaluation beats every earlier one."""

    def __init__(self, save: Callable[[], None]) -> None:
        self.save = save

    def evaluated(self, ev: Evaluation) -> None:
        if ev.improved:
            self.save()


class Video(Listener):
    """Every ``every``-th evaluation, one evaluation episode (the first evaluation seed) to
    ``videos/eval-step<N>.mp4`` and to TensorBoard as ``eval/video``."""

    def __init__(self, agent: Any, env: Any, seed: int, deterministic: bool, every: int, folder: Path,
                 telemetry: Any) -> None:
        self.agent, self.env, self.seed, self.deterministic = agent, env, seed, deterministic
        self.every, self.folder, self.telemetry = every, folder, telemetry

    def evaluated(self, ev: Evaluation) -> None:
        if ev.number % self.every == 0:
            from drlrun.video import record

            with rng_untouched():  # (a stochastic policy samples from torch's global generator)
                record(self.agent, self.env, self.seed, self.deterministic,
                       self.folder / f"eval-step{ev.step}.mp4", self.telemetry.writer, "eval/video", ev.step)


class Pruning(Listener):
    """Inside an Optuna sweep: report each evaluation to the trial, and stop (:class:`Pruned`)
    where the pruner says so, except at the last step, where the trial completes."""

    def __init__(self, trial: Any) -> None:
        self.trial = trial

    def stop(self, ev: Evaluation) -> Stop | None:
        if self.trial.should_stop(ev.step, ev.mean) and not ev.final:
            return Stop(error=Pruned(f"The Optuna pruner stopped this trial at step {ev.step:,} (evaluation "
                                     f"{ev.mean:.1f}): its evaluations trail the median of earlier trials at "
                                     "this step."))
        return None


class EarlyStop(Listener):
    """``eval.early_stop=true``: the run completes at the first evaluation that reaches the threshold."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def stop(self, ev: Evaluation) -> Stop | None:
        if ev.mean >= self.threshold:
            return Stop(message=f"[green]Early stop at step {ev.step:,}: evaluation {ev.mean:.1f} >= "
                                f"{self.threshold:g}.")
        return None
