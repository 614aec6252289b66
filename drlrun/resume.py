"""Exact resume: what a ``latest`` checkpoint holds beyond the agent, and how a run goes on from it.

A ``latest`` checkpoint cuts nothing. Besides the agent it holds the runner's counters and
schedule, the finished episodes not yet logged, the evaluation history and the listeners' state
(its ``loop`` entry), the global RNG states, the observations the agent acts on next, the agent's
latest metrics, and the episodes in flight (each env's episode number and the actions taken in
it; ``episodes.py``). An environment's internal state cannot be saved in general (Box2D worlds,
user envs), but every episode is reset with a seed made of the env's seed and the episode's
number (``envs.SeededEpisodes``), so a resumed run rebuilds each episode by replaying its actions
(:meth:`Resume.rebuild_episodes`) and continues exactly as the uninterrupted run: it logs,
evaluates and checkpoints at the same steps, and learns the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from drlrun import checkpoint
from drlrun.agent import agent_metrics
from drlrun.envs import reset_seed
from drlrun.episodes import EpisodesInFlight
from drlrun.errors import DrlrunError
from drlrun.rng import rng_state, rng_untouched, set_rng_state
from drlrun.schedule import Counters, Schedule


class Resume:
    """Saves and restores the run's state beyond the agent. ``parts`` are the other objects with
    a ``state_dict``/``load_state_dict`` of ``loop`` entries (the evaluation history, listeners)."""

    def __init__(self, agent: Any, flight: EpisodesInFlight, counters: Counters, schedule: Schedule,
                 parts: list[Any]) -> None:
        self.agent, self.flight, self.counters, self.schedule, self.parts = agent, flight, counters, schedule, parts
        self.obs: np.ndarray | None = None  # the observations at the checkpoint resumed from
        self.carried_metrics: dict[str, float] = {}  # the agent's metrics at that checkpoint

    def state_dict(self, obs: np.ndarray) -> dict[str, Any]:
        """The checkpoint's runner entries that resuming needs; ``obs``: what the agent acts on next."""
        loop = {**self.counters.state_dict(), **self.schedule.state_dict(), **self.flight.log_state_dict()}
        for part in self.parts:
            loop.update(part.state_dict())
        return {"loop": loop, "rng": rng_state(), "obs": torch.tensor(obs), "in_flight": self.flight.state_dict(),
                "agent_metrics": agent_metrics(self.agent)}

    def restore(self, path: Path, header: dict[str, Any], state: dict[str, Any], algo: str) -> None:
        """Continue from a ``latest`` checkpoint (its header already checked against the run)."""
        runner = state.get("runner", {})
        if "loop" not in runner or "in_flight" not in runner:
            raise DrlrunError(f"Checkpoint {str(path)!r} holds no runner state for this drlrun (it is a 'best' "
                              "checkpoint or was written by an earlier drlrun), so the run cannot be resumed "
                              "from it.")
        checkpoint.load_agent_state(self.agent, state, path, algo)
        loop = dict(runner["loop"])
        self.counters.load_state_dict(loop)
        self.counters.resumes += 1
        saved_interval = header.get("settings", {}).get("checkpoint", {}).get("interval")
        self.schedule.load_state_dict(loop, saved_interval)
        self.flight.load_log_state_dict(loop)
        for part in self.parts:
            part.load_state_dict(loop)
        self.obs = runner["obs"].numpy()
        self.flight.load_state_dict(runner["in_flight"])
        self.carried_metrics = dict(runner.get("agent_metrics", {}))
        set_rng_state(runner["rng"])

    def rebuild_episodes(self, envs: Any, seed: int, telemetry: Any) -> np.ndarray:
        """Put every training env back in the episode it was in at the checkpoint: reset it with
        the episode's seed and replay the actions taken in it (``envs.SeededEpisodes``), then
        check that it reached the saved observation. An env that does not (its dynamics depend
        on something besides its seed and actions) is named, and starts its next episode on the
        next step, a reset row that closes the unfinished episode for the agent, which is not
        reported. A native vector env's copies cannot be replayed one by one: all of them start
        new episodes. Returns the observations the agent acts on next."""
        saved = self.obs
        assert saved is not None
        with rng_untouched():  # (env code may draw from the global RNGs, which the checkpoint restored)
            if getattr(envs, "drlrun_copies", False):
                obs, lost = self._replay(envs, seed, saved)
            else:
                lost = np.arange(envs.num_envs)
                obs, _ = envs.reset(seed=reset_seed(envs, seed + self.counters.step))
        if not getattr(envs, "drlrun_copies", False):
            # Its next step is a real one: hand the agent the reset row the episodes' end would have
            # made (saved -> new first observations, not a transition), then start counting anew.
            no = np.zeros(envs.num_envs, dtype=bool)
            self.agent.observe(saved, self.agent.act(saved, explore=True), np.zeros(envs.num_envs), obs, no, no, no)
            self.agent.update()
            self.flight.start_new_episodes()
        if len(lost):
            telemetry.message(
                f"[yellow]Resume: the episode in flight in training env(s) {', '.join(map(str, lost))} could not be "
                "rebuilt from its reset seed and actions (the environment is not deterministic given them, or "
                "env.vectorization=native), so it is dropped and a new one starts: from here on this run is not "
                "identical to one that was never interrupted.")
        return obs

    def _replay(self, envs: Any, seed: int, saved: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rebuild each copy's episode; the copies that did not reach the saved observation are
        sent back to the start of their episodes, to begin the next one on the next step.
        Returns the saved observations and those copies."""
        flight, n = self.flight, envs.num_envs
        seeds = reset_seed(envs, seed)
        obs, _ = envs.reset(seed=seeds, options=flight.restore_options(seeds))
        lost = np.flatnonzero([not np.array_equal(obs[i], saved[i], equal_nan=obs.dtype.kind == "f")
                               for i in range(n)])
        if len(lost):
            mask = np.zeros(n, dtype=bool)
            mask[lost] = True
            envs.reset(seed=seeds, options={"reset_mask": mask, **flight.start_afresh(seeds, lost)})
        return saved, lost
