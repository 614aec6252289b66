"""The one training loop. Algorithms act, observe and update; everything else happens here.

Per vector step the hot path is: one batched ``agent.act``, one ``envs.step``, one
``agent.observe`` (array writes), ``agent.update`` (which returns at once unless it is time to
learn), and a few numpy operations for episode statistics. Logging, evaluation and checkpoints
happen on step counters, never per step.

Autoreset: vector envs run in Gymnasium's next-step mode (see ``envs.py``). When env ``i`` ends
an episode at step t, step t returns the real final observation (so truncated episodes can be
bootstrapped from it and terminated ones are not), and step t + 1 only resets env ``i``: its
action is ignored and its row is passed to the agent with ``valid[i] = False``.

Nothing but the algorithm's own settings changes what is learned: evaluation runs on its own
envs with the global RNG states put back afterwards, and a checkpoint records the episodes in
flight (``episodes.py``) instead of cutting them. Checkpoints and resume: see :meth:`Run.train`.
Ctrl-C or SIGTERM finishes the current step, saves a checkpoint there and stops with
:class:`Interrupted`; ``drlrun resume=RUN_DIR`` goes on.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import random
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from drlrun import checkpoint
from drlrun.agent import (
    Agent,
    BuildContext,
    EnvSpec,
    agent_metrics,
    agent_state,
    check_agent_config,
)
from drlrun.config import RunConfig, flatten
from drlrun.envs import (
    check_action_space,
    describe,
    make_envs,
    reset_seed,
    resolve_env_id,
    slug,
    solved_threshold,
)
from drlrun.episodes import EpisodesInFlight
from drlrun.errors import DrlrunError
from drlrun.pruning import Pruned, trial_from_env
from drlrun.registry import ALGOS
from drlrun.telemetry import Telemetry

EVAL_SEED_OFFSET = 1_000_003  # evaluation envs never share seeds with training envs


class Diverged(DrlrunError):
    """A loss became NaN or infinite: training cannot recover, so the run stops."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DrlrunError(f"device={name!r} was asked for, but torch sees no CUDA GPU here. "
                              "Use device=cpu or device=auto.")
        index = torch.device(name).index
        if index is not None and index >= torch.cuda.device_count():
            raise DrlrunError(f"device={name!r}: only {torch.cuda.device_count()} GPU(s) are visible.")
    return torch.device(name)


def machine(device: torch.device) -> dict[str, str]:
    """Where a run's numbers come from: the CPU model and the numeric path torch takes on it (its
    vector instruction set, and MKL's where it is capped), plus the GPU for CUDA runs. The same
    seed follows another trajectory on another path, so results name it."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    path = torch.backends.cpu.get_cpu_capability()
    if os.environ.get("MKL_ENABLE_INSTRUCTIONS"):
        path += f", MKL {os.environ['MKL_ENABLE_INSTRUCTIONS']}"
    out = {"cpu": cpu, "numeric_path": path}
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
    return out


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def evaluate(agent: Agent, envs: Any, episodes: int, seed: int, deterministic: bool) -> tuple[np.ndarray, np.ndarray]:
    """Returns and lengths of ``episodes`` whole episodes, spread evenly over the eval envs.

    Each env runs a fixed number of episodes (not 'the first N to finish', which would favour
    short episodes), and the envs are reset with the same seeds at every evaluation, so
    evaluations along a run are comparable.
    """
    n = envs.num_envs
    quota = np.array([(episodes + i) // n for i in range(n)])
    done_count = np.zeros(n, dtype=np.int64)
    ep_return = np.zeros(n, dtype=np.float64)
    ep_length = np.zeros(n, dtype=np.int64)
    autoreset = np.zeros(n, dtype=bool)
    returns: list[float] = []
    lengths: list[int] = []
    obs, _ = envs.reset(seed=reset_seed(envs, seed))
    while (done_count < quota).any():
        actions = agent.act(obs, explore=False, deterministic=deterministic)
        obs, rewards, terminated, truncated, _ = envs.step(actions)
        ep_return += rewards
        ep_length += ~autoreset
        ended = terminated | truncated
        for i in np.flatnonzero(ended & (done_count < quota)):
            returns.append(float(ep_return[i]))
            lengths.append(int(ep_length[i]))
            done_count[i] += 1
        ep_return[ended] = 0.0
        ep_length[ended] = 0
        autoreset = ended
    return np.asarray(returns), np.asarray(lengths)


class Interrupted(DrlrunError):
    """Ctrl-C or SIGTERM: the run saved a checkpoint at the step it reached and stops."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


@dataclass
class LoopState:
    """The runner's own counters, saved in every checkpoint: a resumed run logs, evaluates and
    checkpoints at exactly the steps an uninterrupted one would, and its summary covers the
    whole run."""

    step: int = 0
    episodes: int = 0
    last_return: float | None = None
    evals: list[tuple[int, float, float]] = field(default_factory=list)  # (step, mean, std)
    best: float = -math.inf
    solved_at: int | None = None
    solved_at_seconds: float | None = None
    next_log: float = 0.0
    next_eval: float = 0.0
    next_ckpt: float = 0.0
    pending_steps: list[int] = field(default_factory=list)  # finished episodes since the last log
    pending_returns: list[float] = field(default_factory=list)
    pending_lengths: list[int] = field(default_factory=list)
    pending_in_tensorboard: int = 0  # how many of the pending episodes TensorBoard already has
    seconds: float = 0.0  # wall seconds of training so far (all processes of this run)
    side_seconds: float = 0.0  # of which evaluation and checkpoints
    resumes: int = 0


def rng_state() -> dict[str, Any]:
    """Python's, numpy's and torch's global RNG states, as values ``weights_only`` loading takes."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)  # type: ignore[misc]
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state(),
                             "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextmanager
def rng_untouched() -> Iterator[None]:
    """Python's, numpy's and torch's global RNGs are as they were before the block: evaluation
    and video (a stochastic policy samples from torch's global generator) do not move training's."""
    saved = rng_state()
    try:
        yield
    finally:
        set_rng_state(saved)


def checkpoint_header(cfg: RunConfig, env_id: str, spec: EnvSpec) -> dict[str, Any]:
    """What a checkpoint must match to be loaded into an agent built from ``cfg``."""
    return {"algo": cfg.algo.name, "env": env_id, "network": cfg.network.name,
            "network_config": flatten(cfg.network), "obs_shape": list(spec.obs_shape),
            "action_kind": spec.action_kind, "action_dim": spec.action_dim}


class Run:
    """One training run: builds everything from a :class:`RunConfig`, then :meth:`train`."""

    def __init__(self, cfg: RunConfig, run_dir: Path, *, telemetry: Telemetry | None = None) -> None:
        self.cfg = cfg
        self.run_dir = run_dir
        algo_cls = ALGOS.get(cfg.algo.name)
        check_agent_config(algo_cls, cfg.algo, cfg)
        self.device = resolve_device(cfg.device)
        if cfg.torch_threads > 0:
            torch.set_num_threads(cfg.torch_threads)
        self.env_id = resolve_env_id(cfg.env.id)
        if cfg.eval.video_every > 0:
            from drlrun.video import require_moviepy

            require_moviepy("eval.video_every")
        seed_everything(cfg.seed)
        self.envs = make_envs(cfg.env, self.env_id, cfg.env.num_envs)
        self.eval_envs: Any = None
        try:
            self.spec: EnvSpec = describe(self.envs, self.env_id)
            check_action_space(cfg.algo.name, algo_cls, self.spec, dict(ALGOS.items()))
            self.threshold = solved_threshold(cfg.env, self.env_id, cfg.eval.target_return)
            if cfg.eval.early_stop and self.threshold is None:
                raise DrlrunError(f"eval.early_stop=true, but env.id={self.env_id!r} has no reward threshold. "
                                  "Give one with eval.target_return=<return> (or env.threshold).")
            self.eval_envs = make_envs(cfg.env, self.env_id, min(cfg.eval.episodes, 16))
            self.agent: Agent = build_agent(cfg, self.spec, self.device)
        except BaseException:
            self.close()
            raise
        self.telemetry = telemetry
        self.ckpt_dir = run_dir / "checkpoints"
        self.video_env: Any = None
        if cfg.eval.video_every > 0:
            from drlrun.video import make_render_env

            try:
                self.video_env = make_render_env(cfg.env, self.env_id, "rgb_array")
            except BaseException:
                self.close()
                raise
        # Without checkpoints there is no checkpoint step: only evaluations are scheduled.
        self.state = LoopState(next_log=cfg.log.interval, next_eval=_every(cfg.eval.interval),
                               next_ckpt=_every(cfg.checkpoint.interval) if cfg.checkpoint.enabled else math.inf)
        spec = self.spec
        discrete = spec.action_kind == "discrete"
        self.flight = EpisodesInFlight(self.envs.num_envs, () if discrete else spec.action_shape,
                                       np.int64 if discrete else np.float32)
        self.resume_obs: np.ndarray | None = None  # the observations at the checkpoint resumed from
        self.start = time.perf_counter()
        self.signal: int | None = None
        # The agent's metrics as of the checkpoint resumed from: logged until it reports new ones,
        # as the uninterrupted agent would (an agent reports its latest losses until it learns again).
        self.carried_metrics: dict[str, float] = {}

    # ------------------------------------------------------------------ checkpoints
    def header(self) -> dict[str, Any]:
        return checkpoint_header(self.cfg, self.env_id, self.spec)

    def save_checkpoint(self, name: str, *, with_buffer: bool, obs: np.ndarray | None = None) -> None:
        """``checkpoints/<name>.pt``. ``latest`` (given ``obs``, the observations the agent acts on
        next) also holds what resuming needs: the runner's counters, the global RNG states and
        the episodes in flight."""
        st = self.state
        header = self.header() | {"step": st.step, "config": flatten(self.cfg),
                                  "settings": dataclasses.asdict(self.cfg)}
        runner: dict[str, Any] = {"step": st.step, "episodes": st.episodes}
        if obs is not None:
            st.seconds = time.perf_counter() - self.start
            runner.update(loop=dataclasses.asdict(st), rng=rng_state(), obs=torch.tensor(obs),
                          in_flight=self.flight.state_dict(), agent_metrics=agent_metrics(self.agent))
        state = {"agent": agent_state(self.agent, with_buffer=with_buffer), "runner": runner}
        checkpoint.save(self.ckpt_dir / f"{name}.pt", header, state)

    def restore(self, path: Path, header: dict[str, Any], state: dict[str, Any]) -> None:
        """Continue from a ``latest`` checkpoint (see :meth:`train` on how this stays exact)."""
        checkpoint.check_header(path, header, self.header())
        runner = state.get("runner", {})
        if "loop" not in runner or "in_flight" not in runner:
            raise DrlrunError(f"Checkpoint {str(path)!r} holds no runner state for this drlrun (it is a 'best' "
                              "checkpoint or was written by an earlier drlrun), so the run cannot be resumed "
                              "from it.")
        checkpoint.load_agent_state(self.agent, state, path, self.cfg.algo.name)
        loop = dict(runner["loop"])
        loop["evals"] = [tuple(e) for e in loop["evals"]]
        self.state = LoopState(**loop)
        self.state.resumes += 1
        saved_interval = header.get("settings", {}).get("checkpoint", {}).get("interval")
        if saved_interval != self.cfg.checkpoint.interval:  # resumed with another checkpoint.interval
            self.state.next_ckpt = self.state.step + _every(self.cfg.checkpoint.interval)
        self.resume_obs = runner["obs"].numpy()
        self.flight.load_state_dict(runner["in_flight"])
        self.carried_metrics = dict(runner.get("agent_metrics", {}))
        set_rng_state(runner["rng"])

    def rebuild_episodes(self) -> np.ndarray:
        """Put every training env back in the episode it was in at the checkpoint: reset it with
        the episode's seed and replay the actions taken in it (``envs.SeededEpisodes``), then
        check that it reached the saved observation. An env that does not (its dynamics depend
        on something besides its seed and actions) is named, and starts its next episode on the
        next step, a reset row that closes the unfinished episode for the agent, which is not
        reported. A native vector env's copies cannot be replayed one by one: all of them start
        new episodes. Returns the observations the agent acts on next."""
        envs, flight, saved = self.envs, self.flight, self.resume_obs
        assert saved is not None
        n = envs.num_envs
        with rng_untouched():  # (env code may draw from the global RNGs, which the checkpoint restored)
            if getattr(envs, "drlrun_copies", False):
                seeds = reset_seed(envs, self.cfg.seed)
                obs, _ = envs.reset(seed=seeds, options=flight.restore_options(seeds))
                lost = np.flatnonzero([not np.array_equal(obs[i], saved[i], equal_nan=obs.dtype.kind == "f")
                                       for i in range(n)])
                if len(lost):  # back to the start of their episodes, to begin the next one on the next step
                    mask = np.zeros(n, dtype=bool)
                    mask[lost] = True
                    envs.reset(seed=seeds, options={"reset_mask": mask, **flight.start_afresh(seeds, lost)})
                obs = saved
            else:
                lost = np.arange(n)
                obs, _ = envs.reset(seed=reset_seed(envs, self.cfg.seed + self.state.step))
        if not getattr(envs, "drlrun_copies", False):
            # Its next step is a real one: hand the agent the reset row the episodes' end would have
            # made (saved -> new first observations, not a transition), then start counting anew.
            no = np.zeros(n, dtype=bool)
            self.agent.observe(saved, self.agent.act(saved, explore=True), np.zeros(n), obs, no, no, no)
            self.agent.update()
            flight.number += 1
            flight.length[:] = 0
            flight.returns[:] = 0.0
            flight.ended[:] = False
        if len(lost):
            assert self.telemetry is not None
            self.telemetry.message(
                f"[yellow]Resume: the episode in flight in training env(s) {', '.join(map(str, lost))} could not be "
                "rebuilt from its reset seed and actions (the environment is not deterministic given them, or "
                "env.vectorization=native), so it is dropped and a new one starts: from here on this run is not "
                "identical to one that was never interrupted.")
        return obs

    # ------------------------------------------------------------------ signals
    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self.signal is not None:  # a second Ctrl-C: stop now, without a checkpoint
            raise KeyboardInterrupt
        self.signal = signum
        assert self.telemetry is not None
        self.telemetry.message(f"[yellow]{signal.Signals(signum).name}: saving a checkpoint at the next step "
                               "(press Ctrl-C again to stop at once, without one)...")

    def _install_signal_handlers(self) -> dict[int, Any]:
        """SIGINT/SIGTERM ask the loop to checkpoint and stop; outside the main thread (some
        launchers) they keep their default meaning."""
        previous: dict[int, Any] = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[signum] = signal.signal(signum, self._on_signal)
            except ValueError:  # not the main thread
                break
        return previous

    # ------------------------------------------------------------------ the loop
    def train(self) -> dict[str, Any]:
        """Train to ``total_steps``.

        Checkpoints and exact resume: a ``latest`` checkpoint cuts nothing. It holds the agent,
        the runner's counters, the global RNG states and the episodes in flight (each env's
        episode number and the actions taken in it; ``episodes.py``). An environment's internal
        state cannot be saved in general (Box2D worlds, user envs), but every episode is reset
        with a seed made of the env's seed and the episode's number (``envs.SeededEpisodes``),
        so a resumed run rebuilds each episode by replaying its actions
        (:meth:`rebuild_episodes`) and continues exactly as the uninterrupted run.
        """
        cfg, agent, envs, tm, st, flight = self.cfg, self.agent, self.envs, self.telemetry, self.state, self.flight
        assert tm is not None
        n = envs.num_envs
        total = cfg.total_steps
        saving = cfg.checkpoint.enabled
        eval_every, ckpt_every = _every(cfg.eval.interval), _every(cfg.checkpoint.interval)
        early_stopped = False
        next_save = min(st.next_eval, st.next_ckpt, total)  # the next evaluation, checkpoint or the end

        self.start = start = time.perf_counter() - st.seconds
        last_log_time, last_log_step = time.perf_counter(), st.step
        trial = trial_from_env()  # inside an Optuna sweep: report evaluations, obey the pruner
        if self.resume_obs is not None:
            tm.message(f"Resuming {self.run_dir} at step {st.step:,} of {total:,}.")
            obs = self.rebuild_episodes() if st.step < total else self.resume_obs
        else:
            obs, _ = envs.reset(seed=reset_seed(envs, cfg.seed))
        previous_handlers = self._install_signal_handlers()
        try:
            while st.step < total:
                signalled = self.signal is not None
                if signalled and not saving:
                    raise Interrupted(f"Stopped by {signal.Signals(self.signal).name} at step {st.step:,}; no "
                                      "checkpoint was written (checkpoint.enabled=false).", self.signal)
                actions = agent.act(obs, explore=True)
                next_obs, rewards, terminated, truncated, _ = envs.step(actions)
                valid = flight.valid
                agent.observe(obs, actions, rewards, next_obs, terminated, truncated, valid)
                st.step += n
                ended = terminated | truncated
                flight.step(actions, rewards, ended, valid)
                if ended.any():
                    for i in np.flatnonzero(ended):
                        st.pending_steps.append(st.step)
                        st.pending_returns.append(float(flight.returns[i]))
                        st.pending_lengths.append(int(flight.length[i]))
                obs = next_obs
                agent.update()

                if st.step >= st.next_log or st.step >= total:
                    st.next_log += cfg.log.interval
                    now = time.perf_counter()
                    sps = (st.step - last_log_step) / max(now - last_log_time, 1e-9)
                    last_log_time, last_log_step = now, st.step
                    row = {"charts/SPS": st.step / max(now - start, 1e-9), **self.carried_metrics, **agent_metrics(agent)}
                    self.check_finite(st.step, row)
                    if st.pending_returns:
                        st.episodes += len(st.pending_returns)
                        st.last_return = float(np.mean(st.pending_returns))
                        row.update({"charts/episodic_return": st.last_return,
                                    "charts/episodic_length": float(np.mean(st.pending_lengths)),
                                    "charts/episodes": float(st.episodes)})
                        self._episodes_to_tensorboard()
                        st.pending_steps, st.pending_returns, st.pending_lengths = [], [], []
                        st.pending_in_tensorboard = 0
                    tm.scalars(st.step, row)
                    tm.progress(st.step, sps, st.last_return, st.evals[-1][1] if st.evals else None)

                scheduled = st.step >= next_save  # an evaluation, a checkpoint or the last step
                save_here = saving and (scheduled or signalled)
                if not (scheduled or save_here):
                    continue
                evaluated = st.step >= st.next_eval or st.step >= total
                # Evaluation and checkpoints: side time, not training time.
                side_start = time.perf_counter()
                if evaluated:
                    st.next_eval += eval_every
                    train_seconds = side_start - start - st.side_seconds
                    mean, _std = self._evaluate(st.step, train_seconds)
                    improved = mean > st.best
                    st.best = max(st.best, mean)
                    if self.threshold is not None and mean >= self.threshold and st.solved_at is None:
                        st.solved_at, st.solved_at_seconds = st.step, round(train_seconds, 3)
                    if improved and saving and cfg.checkpoint.save_best:
                        self.save_checkpoint("best", with_buffer=False)
                if save_here:
                    if scheduled:  # (a checkpoint made for Ctrl-C shifts no later one)
                        st.next_ckpt = st.step + ckpt_every
                    self._episodes_to_tensorboard()
                    tm.flush()  # every row up to this step is on disk before the checkpoint is
                    now = time.perf_counter()
                    st.side_seconds, side_start = st.side_seconds + now - side_start, now
                    self.save_checkpoint("latest", with_buffer=cfg.checkpoint.buffer, obs=next_obs)
                st.side_seconds += time.perf_counter() - side_start
                next_save = min(st.next_eval, st.next_ckpt, total)
                if evaluated:
                    if trial is not None and trial.should_stop(st.step, mean) and st.step < total:
                        raise Pruned(f"The Optuna pruner stopped this trial at step {st.step:,} (evaluation "
                                     f"{mean:.1f}): its evaluations trail the median of earlier trials at this step.")
                    if cfg.eval.early_stop and self.threshold is not None and mean >= self.threshold:
                        early_stopped = True
                        tm.message(f"[green]Early stop at step {st.step:,}: evaluation {mean:.1f} >= "
                                   f"{self.threshold:g}.")
                        break
                if save_here and st.step < total and self.signal is not None:
                    # (a signal during an evaluation is handled on the next step)
                    raise Interrupted(
                        f"Stopped by {signal.Signals(self.signal).name} at step {st.step:,} of {total:,}; "
                        f"checkpoint saved. Continue with: drlrun resume={self.run_dir}", self.signal)
        finally:
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)

        wall = time.perf_counter() - start
        final_step, final_mean, final_std = st.evals[-1]
        summary = {
            "algo": cfg.algo.name, "env": self.env_id, "seed": cfg.seed, "status": "completed",
            "early_stopped": early_stopped, "total_steps": st.step, "episodes": st.episodes,
            "wall_seconds": round(wall, 3), "steps_per_second": round(st.step / max(wall, 1e-9), 1),
            "train_seconds": round(wall - st.side_seconds, 3),
            "train_steps_per_second": round(st.step / max(wall - st.side_seconds, 1e-9), 1),
            "final_return_mean": final_mean, "final_return_std": final_std, "final_eval_step": final_step,
            "best_return_mean": st.best, "threshold": self.threshold, "solved_at_step": st.solved_at,
            "solved_at_seconds": st.solved_at_seconds, "resumes": st.resumes,
            "device": str(self.device), **machine(self.device), "run_dir": str(self.run_dir),
        }
        tm.scalars(st.step, {"charts/SPS": summary["steps_per_second"]})
        tm.hparams(flatten(cfg), {"hparams/final_return_mean": final_mean,
                                  "hparams/best_return_mean": st.best,
                                  "hparams/steps_per_second": summary["steps_per_second"]})
        return summary

    def _episodes_to_tensorboard(self) -> None:
        """Finished episodes not yet in TensorBoard go there now, at the steps they ended (at
        every checkpoint too, so a resumed run never writes them twice)."""
        st = self.state
        k = st.pending_in_tensorboard
        assert self.telemetry is not None
        self.telemetry.episodes(st.pending_steps[k:], st.pending_returns[k:], st.pending_lengths[k:])
        st.pending_in_tensorboard = len(st.pending_steps)

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

    def _evaluate(self, step: int, train_seconds: float) -> tuple[float, float]:
        cfg = self.cfg
        with rng_untouched():
            returns, lengths = evaluate(self.agent, self.eval_envs, cfg.eval.episodes,
                                        cfg.seed + EVAL_SEED_OFFSET, cfg.eval.deterministic)
        mean, std = float(returns.mean()), float(returns.std())
        self.state.evals.append((step, mean, std))
        assert self.telemetry is not None
        self.telemetry.scalars(step, {"eval/return_mean": mean, "eval/return_std": std,
                                      "eval/length_mean": float(lengths.mean()),
                                      "eval/train_seconds": round(train_seconds, 3)})
        if not self.telemetry.live:
            self.telemetry.message(f"step {step:>9,}  eval return {mean:8.1f} +/- {std:.1f}")
        if self.video_env is not None and len(self.state.evals) % cfg.eval.video_every == 0:
            with rng_untouched():
                self._record_video(step)
        return mean, std

    def _record_video(self, step: int) -> None:
        """One evaluation episode (the first evaluation seed) to ``videos/eval-step<N>.mp4`` and to
        TensorBoard as ``eval/video``."""
        from drlrun.video import record

        assert self.telemetry is not None
        record(self.agent, self.video_env, self.cfg.seed + EVAL_SEED_OFFSET, self.cfg.eval.deterministic,
               self.run_dir / "videos" / f"eval-step{step}.mp4", self.telemetry.writer, "eval/video", step)

    def close(self) -> None:
        self.envs.close()
        if self.eval_envs is not None:
            self.eval_envs.close()
        if getattr(self, "video_env", None) is not None:
            self.video_env.close()


def _every(interval: int) -> float:
    """An interval setting as a step period: 0 means never."""
    return float(interval) if interval > 0 else math.inf


def build_agent(cfg: RunConfig, spec: EnvSpec, device: torch.device) -> Agent:
    """The configured algorithm's agent, before any training or checkpoint."""
    ctx = BuildContext(spec=spec, network=cfg.network, buffer=cfg.buffer, device=device,
                       total_steps=cfg.total_steps, seed=cfg.seed)
    return ALGOS.get(cfg.algo.name)(cfg.algo, ctx)


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    checkpoint.write_json(run_dir / "summary.json", summary)


def failure_summary(cfg: Any, run_dir: Path, status: str, error: BaseException,
                    run: Run | None = None) -> dict[str, Any]:
    """summary.json for a run that did not complete: its status, the error, and how far it got.
    ``cfg`` is the run's settings, or the composed Hydra config when they could not be built."""
    st = run.state if run is not None else LoopState()
    wall = time.perf_counter() - run.start if run is not None else 0.0
    return {
        "algo": cfg.algo.name, "env": run.env_id if run is not None else cfg.env.id, "seed": cfg.seed,
        "status": status, "error": f"{type(error).__name__}: {error}" if not isinstance(error, DrlrunError)
        else str(error),
        "total_steps": st.step, "wall_seconds": round(wall, 3),
        "final_return_mean": st.evals[-1][1] if st.evals else None,
        "final_eval_step": st.evals[-1][0] if st.evals else None,
        "best_return_mean": st.best if st.evals else None,
        "threshold": getattr(run, "threshold", None), "resumes": st.resumes, "run_dir": str(run_dir),
    }


RESUME_KEYS = ("total_steps", "device", "torch_threads", "debug", "log.progress", "log.tensorboard",
               "log.interval", "checkpoint.interval")


def resume_settings(run_dir: Path, overrides: list[str]) -> tuple[RunConfig, tuple[dict[str, Any], dict[str, Any]]]:
    """The settings a resumed run continues with: the ones saved in its latest checkpoint, plus
    the few ``overrides`` that may change on the way (``RESUME_KEYS``: a larger ``total_steps``
    extends the run; anything that would change the experiment is refused). Returns them with
    the loaded checkpoint."""
    from omegaconf import OmegaConf

    from drlrun.compose import to_settings

    path = run_dir / "checkpoints" / "latest.pt"
    header, state = checkpoint.load(path)
    if "settings" not in header:
        raise DrlrunError(f"Checkpoint {str(path)!r} does not record the run's settings (an earlier drlrun wrote "
                          "it), so the run cannot be resumed from it.")
    changes = []
    for override in overrides:
        key, _, value = override.partition("=")
        key = key.lstrip("+~")
        if key == "resume":
            continue
        if key not in RESUME_KEYS:
            raise DrlrunError(f"{key!r} cannot change when resuming: the run goes on with the settings it was "
                              f"started with. Valid choices: {', '.join(RESUME_KEYS)}. To change {key}, start a "
                              "new run.")
        changes.append(f"{key}={value}")
    saved = OmegaConf.create(header["settings"])
    settings = to_settings(OmegaConf.merge(saved, OmegaConf.from_dotlist(changes)))
    settings.resume = str(run_dir)
    if header["step"] >= settings.total_steps:
        raise DrlrunError(f"The run in {str(run_dir)!r} already reached step {header['step']:,} of "
                          f"total_steps={settings.total_steps:,}. To train it further give a larger total_steps, "
                          f"e.g. drlrun resume={run_dir} total_steps={2 * settings.total_steps}.")
    return settings, (header, state)


def train(cfg: RunConfig, run_dir: Path, *, progress: bool | None = None,
          resume: tuple[dict[str, Any], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Build, train and summarise one run in ``run_dir``; returns the summary.

    ``resume`` is a loaded ``latest`` checkpoint (header, state) of this run to continue from.
    A run that diverges, fails or is interrupted while training still leaves a summary.json
    (status ``diverged``, ``failed`` or ``interrupted``, with the error) before the exception
    propagates, so sweeps and reports can account for it. Bad input fails while building,
    before anything is written."""
    run_dir.mkdir(parents=True, exist_ok=True)
    run = Run(cfg, run_dir)  # bad input fails here, before anything is written
    try:
        if resume is not None:
            run.restore(run.ckpt_dir / "latest.pt", *resume)
        title = f"{cfg.algo.name} {slug(run.env_id)} seed {cfg.seed}"
        run.telemetry = Telemetry(run_dir, total_steps=cfg.total_steps, title=title,
                                  tensorboard=cfg.log.tensorboard,
                                  progress=cfg.log.progress if progress is None else progress,
                                  resume_step=run.state.step if resume is not None else None,
                                  seconds=run.state.seconds)
    except BaseException:
        run.close()
        raise
    try:
        summary = run.train()
    except Exception as exc:
        status = ("diverged" if isinstance(exc, Diverged) else "pruned" if isinstance(exc, Pruned)
                  else "interrupted" if isinstance(exc, Interrupted) else "failed")
        write_summary(run_dir, failure_summary(cfg, run_dir, status, exc, run))
        raise
    finally:
        run.telemetry.close()
        run.close()
    write_summary(run_dir, summary)
    return summary
