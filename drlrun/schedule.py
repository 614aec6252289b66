"""Where a run is, and when its next log row, evaluation and checkpoint are due.

One place computes all three, for a fresh run and for a resumed one: the schedule is saved in
every ``latest`` checkpoint, so a resumed run logs, evaluates and checkpoints at exactly the steps
an uninterrupted one would, and its summary (from :class:`Counters`) covers the whole run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from drlrun.config import RunConfig


def every(interval: int) -> float:
    """An interval setting as a step period: 0 means never."""
    return float(interval) if interval > 0 else math.inf


@dataclass
class Counters:
    """The run's step and clock, saved in every checkpoint."""

    step: int = 0
    seconds: float = 0.0  # wall seconds of training so far (all processes of this run)
    side_seconds: float = 0.0  # of which evaluation and checkpoints
    resumes: int = 0
    start: float = field(default_factory=time.perf_counter)  # (this process's clock; not saved)

    def begin(self) -> None:
        """Training (re)starts now, with the seconds earlier processes of the run trained for."""
        self.start = time.perf_counter() - self.seconds

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "seconds": self.seconds, "side_seconds": self.side_seconds,
                "resumes": self.resumes}

    def load_state_dict(self, loop: dict[str, Any]) -> None:
        self.step, self.seconds, self.side_seconds, self.resumes = (
            loop["step"], loop["seconds"], loop["side_seconds"], loop["resumes"])


class Schedule:
    """The next log row (every ``log.interval`` steps), evaluation (every ``eval.interval``) and
    checkpoint (every ``checkpoint.interval``); the last step is always logged and evaluated.
    A boundary is a step at which an evaluation, a checkpoint or the end is due."""

    def __init__(self, cfg: RunConfig) -> None:
        self.total = cfg.total_steps
        self.log_every = cfg.log.interval
        self.eval_every = every(cfg.eval.interval)
        self.ckpt_interval = cfg.checkpoint.interval
        self.ckpt_every = every(cfg.checkpoint.interval)
        self.next_log: float = cfg.log.interval
        self.next_eval = self.eval_every
        # Without checkpoints there is no checkpoint step: only evaluations are scheduled.
        self.next_ckpt = self.ckpt_every if cfg.checkpoint.enabled else math.inf
        self._refresh()

    def _refresh(self) -> None:
        self._next_boundary = min(self.next_eval, self.next_ckpt, self.total)

    def log_due(self, step: int) -> bool:
        """Whether a log row is due at ``step``; if so the next one is scheduled."""
        if step >= self.next_log or step >= self.total:
            self.next_log += self.log_every
            return True
        return False

    def boundary(self, step: int) -> bool:
        """An evaluation, a checkpoint or the last step is due at ``step``."""
        return step >= self._next_boundary

    def eval_due(self, step: int) -> bool:
        """Whether an evaluation is due at ``step``; if so the next one is scheduled."""
        if step >= self.next_eval or step >= self.total:
            self.next_eval += self.eval_every
            self._refresh()
            return True
        return False

    def checkpointed(self, step: int) -> None:
        """A scheduled checkpoint was made at ``step`` (one made for Ctrl-C shifts no later one)."""
        self.next_ckpt = step + self.ckpt_every
        self._refresh()

    def state_dict(self) -> dict[str, Any]:
        return {"next_log": self.next_log, "next_eval": self.next_eval, "next_ckpt": self.next_ckpt}

    def load_state_dict(self, loop: dict[str, Any], saved_ckpt_interval: Any) -> None:
        """The schedule of the checkpoint resumed from; a run resumed with another
        ``checkpoint.interval`` (``saved_ckpt_interval`` was the old one) checkpoints next one
        new interval after the step it resumes at."""
        self.next_log, self.next_eval, self.next_ckpt = loop["next_log"], loop["next_eval"], loop["next_ckpt"]
        if saved_ckpt_interval != self.ckpt_interval:
            self.next_ckpt = loop["step"] + self.ckpt_every
        self._refresh()
