"""The one training loop: act, step, observe, update. Algorithms act, observe and update; the
parts it calls at their steps do the rest.

Per vector step the hot path is: one batched ``agent.act``, one ``envs.step``, one
``agent.observe`` (array writes), ``agent.update`` (which returns at once unless it is time to
learn), and a few numpy operations for episode statistics (``episodes.py``). Log rows, evaluations
and checkpoints happen on step counters (``schedule.py``), never per step.

Autoreset: vector envs run in Gymnasium's next-step mode (see ``envs.py``). When env ``i`` ends
an episode at step t, step t returns the real final observation (so truncated episodes can be
bootstrapped from it and terminated ones are not), and step t + 1 only resets env ``i``: its
action is ignored and its row is passed to the agent with ``valid[i] = False``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from drlrun.agent import agent_metrics
from drlrun.episodes import EpisodesInFlight
from drlrun.errors import DrlrunError
from drlrun.interrupt import EnvsFailed, StopSignals
from drlrun.preprocess import LEARN_REWARD, LEARN_TERMINATED
from drlrun.schedule import Counters, Schedule
from drlrun.sidesteps import EvalHistory, SideSteps


class Diverged(DrlrunError):
    """A loss became NaN or infinite: training cannot recover, so the run stops."""


class Loop:
    """Steps the agent through the training envs to ``total_steps``, logging a row at the log
    interval and handing over to :class:`SideSteps` at evaluations and checkpoints."""

    def __init__(self, *, agent: Any, envs: Any, flight: EpisodesInFlight, schedule: Schedule, counters: Counters,
                 side: SideSteps, signals: StopSignals, saving: bool, telemetry: Any, history: EvalHistory,
                 carried_metrics: dict[str, float], ckpt_dir: Path) -> None:
        self.agent, self.envs, self.flight, self.schedule, self.counters = agent, envs, flight, schedule, counters
        self.side, self.signals, self.saving, self.telemetry = side, signals, saving, telemetry
        self.history, self.ckpt_dir = history, ckpt_dir
        # The agent's metrics as of the checkpoint resumed from: logged until it reports new ones,
        # as the uninterrupted agent would (an agent reports its latest losses until it learns again).
        self.carried_metrics = carried_metrics
        self.last_log_time, self.last_log_step = time.perf_counter(), counters.step

    def run(self, obs: np.ndarray) -> bool:
        """Train from ``obs`` to ``total_steps``; True where a listener stopped training early."""
        agent, envs, flight, schedule, counters = self.agent, self.envs, self.flight, self.schedule, self.counters
        n = envs.num_envs
        with self.signals:
            while counters.step < schedule.total:
                signalled = self.signals.signum is not None
                if signalled and not self.saving:
                    raise self.signals.without_checkpoint(counters.step)
                actions = agent.act(obs, explore=True)
                try:
                    next_obs, rewards, terminated, truncated, infos = envs.step(actions)
                except EnvsFailed as exc:  # (a Ray actor died or hung): a checkpoint of the last step, then stop
                    raise self.side.envs_failed(counters.step, obs, exc) from exc
                valid = flight.valid
                # The agent learns from clipped rewards and lost lives where the env copies give
                # them (drlrun/preprocess.py); episodes and evaluations count the env's own.
                agent.observe(obs, actions, infos.get(LEARN_REWARD, rewards), next_obs,
                              infos.get(LEARN_TERMINATED, terminated), truncated, valid)
                counters.step += n
                ended = terminated | truncated
                flight.step(actions, rewards, ended, valid)
                flight.finish(ended, counters.step)
                obs = next_obs
                agent.update()
                if schedule.log_due(counters.step):
                    self.log_row(counters.step)
                if (schedule.boundary(counters.step) or signalled) and self.side.at(counters.step, obs, signalled):
                    return True
        return False

    def log_row(self, step: int) -> None:
        """Speed, the agent's metrics and the episodes finished since the last row."""
        now = time.perf_counter()
        sps = (step - self.last_log_step) / max(now - self.last_log_time, 1e-9)
        self.last_log_time, self.last_log_step = now, step
        row = {"charts/SPS": step / max(now - self.counters.start, 1e-9), **self.carried_metrics,
               **agent_metrics(self.agent)}
        self.check_finite(step, row)
        row.update(self.flight.flush(self.telemetry))
        self.telemetry.scalars(step, row)
        self.telemetry.progress(step, sps, self.flight.last_return, self.history.last_mean)

    def check_finite(self, step: int, row: dict[str, float]) -> None:
        """Stop at the first NaN or infinite loss, before it reaches a checkpoint: the last
        checkpoint on disk stays the last good one."""
        bad = {key: value for key, value in row.items() if key.startswith("losses/") and not math.isfinite(value)}
        if bad:
            listed = ", ".join(f"{key}={value}" for key, value in bad.items())
            raise Diverged(
                f"Training diverged at step {step:,}: {listed}. The last good checkpoint (if any) is in "
                f"{self.ckpt_dir}. Lower the learning rate (algo.lr), clip gradients harder or "
                "normalise observations/rewards, and check the environment's rewards for NaN or inf."
            )
