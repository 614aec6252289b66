"""Evaluations and checkpoints at their steps: side time, not training time.

At a boundary (:meth:`drlrun.schedule.Schedule.boundary`), or where a signal asks for a checkpoint,
the loop hands over to :class:`SideSteps`: evaluate if due, hand the evaluation to the listeners,
save the ``latest`` checkpoint if due, then let the listeners end the run. Nothing here changes
what is learned: evaluation runs on its own envs (seeded apart from training's) with the global
RNG states put back afterwards, and a checkpoint records the episodes in flight instead of
cutting them. The seconds spent here are counted apart (``side_seconds``), so a run's training
time and its time-to-solve do not depend on how often it evaluates or checkpoints.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from drlrun.config import EvalConfig
from drlrun.episodes import EpisodesInFlight, evaluate
from drlrun.interrupt import EnvsFailed, Interrupted, StopSignals
from drlrun.listeners import Evaluation, Listener
from drlrun.rng import rng_untouched
from drlrun.schedule import Counters, Schedule


class EvalHistory:
    """Every evaluation's (step, mean, std) and the best mean so far, kept in checkpoints: the
    summary covers the whole run, resumed or not."""

    def __init__(self) -> None:
        self.evals: list[tuple[int, float, float]] = []
        self.best = -math.inf

    def add(self, step: int, mean: float, std: float) -> bool:
        """Record an evaluation; whether it beats every earlier one."""
        self.evals.append((step, mean, std))
        improved = mean > self.best
        self.best = max(self.best, mean)
        return improved

    @property
    def last_mean(self) -> float | None:
        return self.evals[-1][1] if self.evals else None

    def state_dict(self) -> dict[str, Any]:
        return {"evals": list(self.evals), "best": self.best}

    def load_state_dict(self, loop: dict[str, Any]) -> None:
        self.evals = [tuple(e) for e in loop["evals"]]  # type: ignore[misc]
        self.best = loop["best"]


class Evaluator:
    """Training's evaluation: ``eval.episodes`` whole episodes on the eval envs, always from the
    same seeds (``seed``), logged as ``eval/*`` and recorded in the history."""

    def __init__(self, agent: Any, envs: Any, cfg: EvalConfig, seed: int, total: int, history: EvalHistory,
                 telemetry: Any) -> None:
        self.agent, self.envs, self.cfg, self.seed, self.total = agent, envs, cfg, seed, total
        self.history, self.telemetry = history, telemetry

    def __call__(self, step: int, train_seconds: float) -> Evaluation:
        with rng_untouched():
            returns, lengths = evaluate(self.agent, self.envs, self.cfg.episodes, self.seed, self.cfg.deterministic)
        mean, std = float(returns.mean()), float(returns.std())
        improved = self.history.add(step, mean, std)
        tm = self.telemetry
        tm.scalars(step, {"eval/return_mean": mean, "eval/return_std": std,
                          "eval/length_mean": float(lengths.mean()), "eval/train_seconds": round(train_seconds, 3)})
        if not tm.live:
            tm.message(f"step {step:>9,}  eval return {mean:8.1f} +/- {std:.1f}")
        return Evaluation(step, mean, std, len(self.history.evals), improved, train_seconds, step >= self.total)


class SideSteps:
    """What happens at a boundary; ``save_latest(obs)`` is None without checkpoints."""

    def __init__(self, *, schedule: Schedule, counters: Counters, evaluate: Callable[[int, float], Evaluation],
                 listeners: list[Listener], flight: EpisodesInFlight, telemetry: Any, signals: StopSignals,
                 save_latest: Callable[[np.ndarray], None] | None, run_dir: Any) -> None:
        self.schedule, self.counters, self.evaluate, self.listeners = schedule, counters, evaluate, listeners
        self.flight, self.telemetry, self.signals = flight, telemetry, signals
        self.save_latest, self.run_dir = save_latest, run_dir

    def at(self, step: int, obs: np.ndarray, signalled: bool) -> bool:
        """Do what is due at ``step`` (``obs``: the observations the agent acts on next, which a
        checkpoint keeps). True where a listener ended training early."""
        schedule, counters = self.schedule, self.counters
        scheduled = schedule.boundary(step)  # an evaluation, a checkpoint or the last step
        save_here = self.save_latest is not None and (scheduled or signalled)
        if not (scheduled or save_here):
            return False
        side_start = time.perf_counter()
        ev = None
        if schedule.eval_due(step):
            try:
                ev = self.evaluate(step, side_start - counters.start - counters.side_seconds)
            except EnvsFailed as exc:  # the evaluation's envs: stop with a checkpoint, this evaluation skipped
                raise self.envs_failed(step, obs, EnvsFailed(f"The evaluation at step {step:,} failed: {exc}")) from exc
            for listener in self.listeners:
                listener.evaluated(ev)
        if save_here:
            assert self.save_latest is not None
            if scheduled:  # (a checkpoint made for Ctrl-C shifts no later one)
                schedule.checkpointed(step)
            self.flight.to_tensorboard(self.telemetry)
            self.telemetry.flush()  # every row up to this step is on disk before the checkpoint is
            now = time.perf_counter()
            counters.side_seconds, side_start = counters.side_seconds + now - side_start, now
            self.save_latest(obs)
        counters.side_seconds += time.perf_counter() - side_start
        if ev is not None and self._stopped(ev):
            return True
        if save_here and step < schedule.total and self.signals.signum is not None:
            # (a signal during an evaluation is handled on the next step)
            raise self.signals.after_checkpoint(step, schedule.total, self.run_dir)
        return False

    def envs_failed(self, step: int, obs: np.ndarray, exc: EnvsFailed) -> EnvsFailed | Interrupted:
        """Envs that can step no further stop the run as a signal does: a checkpoint of ``step``, the
        last completed step (``obs``: what the agent acts on next), then the error to raise, saying
        how to go on. Training envs that failed mid-step: the resumed run acts at that step again
        with fresh random draws, so from there it is not bit-identical to one that never failed.
        Evaluation envs: that evaluation is skipped. Where a signal came first (a SIGTERM to the
        process group ends a local Ray's processes too), the run stops as interrupted."""
        signals = self.signals
        if self.save_latest is None:
            if signals.signum is not None:
                return signals.without_checkpoint(step)
            return EnvsFailed(f"{exc} No checkpoint was written (checkpoint.enabled=false).")
        self.flight.to_tensorboard(self.telemetry)
        self.telemetry.flush()  # every row up to this step is on disk before the checkpoint is
        self.save_latest(obs)
        if signals.signum is not None:
            return signals.after_checkpoint(step, self.schedule.total, self.run_dir)
        return EnvsFailed(f"{exc} A checkpoint of step {step:,} was saved; once the environments can run again, "
                          f"continue with: drlrun resume={self.run_dir}")

    def _stopped(self, ev: Evaluation) -> bool:
        """Whether a listener ends training after this evaluation (raising, or early-stopping)."""
        for listener in self.listeners:
            stop = listener.stop(ev)
            if stop is not None:
                if stop.error is not None:
                    raise stop.error
                self.telemetry.message(stop.message)
                return True
        return False
