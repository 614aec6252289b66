"""The one training loop. Algorithms act, observe and update; everything else happens here.

Per vector step the hot path is: one batched ``agent.act``, one ``envs.step``, one
``agent.observe`` (array writes), ``agent.update`` (which returns at once unless it is time to
learn), and a few numpy operations for episode statistics. Logging, evaluation and checkpoints
happen on step counters, never per step.

Autoreset: vector envs run in Gymnasium's next-step mode (see ``envs.py``). When env ``i`` ends
an episode at step t, step t returns the real final observation (so truncated episodes can be
bootstrapped from it and terminated ones are not), and step t + 1 only resets env ``i``: its
action is ignored and its row is passed to the agent with ``valid[i] = False``.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from drlrun import checkpoint
from drlrun.agent import Agent, BuildContext, EnvSpec
from drlrun.config import RunConfig, flatten
from drlrun.envs import (
    check_action_space,
    describe,
    make_envs,
    resolve_env_id,
    slug,
    solved_threshold,
)
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
    obs, _ = envs.reset(seed=seed)
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


class Run:
    """One training run: builds everything from a :class:`RunConfig`, then :meth:`train`."""

    def __init__(self, cfg: RunConfig, run_dir: Path, *, telemetry: Telemetry | None = None) -> None:
        self.cfg = cfg
        self.run_dir = run_dir
        algo_cls = ALGOS.get(cfg.algo.name)
        check = getattr(algo_cls, "check_config", None)
        if check is not None:
            check(cfg.algo, cfg)
        self.device = resolve_device(cfg.device)
        if cfg.torch_threads > 0:
            torch.set_num_threads(cfg.torch_threads)
        self.env_id = resolve_env_id(cfg.env.id)
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
            ctx = BuildContext(spec=self.spec, network=cfg.network, buffer=cfg.buffer, device=self.device,
                               total_steps=cfg.total_steps, seed=cfg.seed)
            self.agent: Agent = algo_cls(cfg.algo, ctx)
        except BaseException:
            self.close()
            raise
        self.telemetry = telemetry
        self.ckpt_dir = run_dir / "checkpoints"

    # ------------------------------------------------------------------ checkpoints
    def header(self) -> dict[str, Any]:
        s = self.spec
        return {"algo": self.cfg.algo.name, "env": self.env_id, "network": self.cfg.network.name,
                "obs_shape": list(s.obs_shape), "action_kind": s.action_kind, "action_dim": s.action_dim}

    def save_checkpoint(self, name: str, step: int, extra: dict[str, Any], *, with_buffer: bool) -> None:
        header = self.header() | {"step": step, "config": flatten(self.cfg)}
        state = {"agent": self.agent.state_dict(with_buffer=with_buffer), "runner": extra}
        checkpoint.save(self.ckpt_dir / f"{name}.pt", header, state)

    # ------------------------------------------------------------------ the loop
    def train(self) -> dict[str, Any]:
        cfg, agent, envs, tm = self.cfg, self.agent, self.envs, self.telemetry
        assert tm is not None
        n = envs.num_envs
        total = cfg.total_steps
        log_every = cfg.log.interval
        eval_every = cfg.eval.interval if cfg.eval.interval > 0 else math.inf
        ckpt_every = cfg.checkpoint.interval if cfg.checkpoint.interval > 0 else math.inf
        next_log, next_eval, next_ckpt = log_every, eval_every, ckpt_every

        ep_return = np.zeros(n, dtype=np.float64)
        ep_length = np.zeros(n, dtype=np.int64)
        autoreset = np.zeros(n, dtype=bool)
        pending_steps: list[int] = []  # finished episodes since the last log
        pending_returns: list[float] = []
        pending_lengths: list[int] = []
        episodes = 0
        last_return: float | None = None
        evals: list[tuple[int, float, float]] = []
        best = -math.inf
        solved_at: int | None = None
        solved_at_seconds: float | None = None
        early_stopped = False
        self.side_seconds = 0.0  # evaluation and checkpoints: not training time

        start = time.perf_counter()
        last_log_time, last_log_step = start, 0
        step = 0
        self.progress = {"start": start, "evals": evals, "episodes": 0}
        trial = trial_from_env()  # inside an Optuna sweep: report evaluations, obey the pruner
        obs, _ = envs.reset(seed=cfg.seed)
        while step < total:
            actions = agent.act(obs, explore=True)
            next_obs, rewards, terminated, truncated, _ = envs.step(actions)
            valid = ~autoreset
            agent.observe(obs, actions, rewards, next_obs, terminated, truncated, valid)
            step += n
            self.progress["step"] = step
            ep_return += rewards
            ep_length += valid
            ended = terminated | truncated
            if ended.any():
                for i in np.flatnonzero(ended):
                    pending_steps.append(step)
                    pending_returns.append(float(ep_return[i]))
                    pending_lengths.append(int(ep_length[i]))
                ep_return[ended] = 0.0
                ep_length[ended] = 0
            autoreset = ended
            obs = next_obs
            agent.update()

            if step >= next_log or step >= total:
                next_log += log_every
                now = time.perf_counter()
                sps = (step - last_log_step) / max(now - last_log_time, 1e-9)
                last_log_time, last_log_step = now, step
                row = {"charts/SPS": step / max(now - start, 1e-9), **agent.metrics()}
                self.check_finite(step, row)
                if pending_returns:
                    episodes += len(pending_returns)
                    last_return = float(np.mean(pending_returns))
                    row.update({"charts/episodic_return": last_return,
                                "charts/episodic_length": float(np.mean(pending_lengths)),
                                "charts/episodes": float(episodes)})
                    tm.episodes(pending_steps, pending_returns, pending_lengths)
                    pending_steps, pending_returns, pending_lengths = [], [], []
                tm.scalars(step, row)
                tm.progress(step, sps, last_return, evals[-1][1] if evals else None)

            if step >= next_eval or step >= total:
                next_eval += eval_every
                side_start = time.perf_counter()
                train_seconds = side_start - start - self.side_seconds
                mean, _std = self._evaluate(step, evals, train_seconds)
                runner_state = {"step": step, "episodes": episodes}
                if cfg.checkpoint.enabled:
                    self.save_checkpoint("latest", step, runner_state, with_buffer=True)
                    next_ckpt = step + ckpt_every
                if mean > best:
                    best = mean
                    if cfg.checkpoint.enabled and cfg.checkpoint.save_best:
                        self.save_checkpoint("best", step, runner_state, with_buffer=False)
                if self.threshold is not None and mean >= self.threshold and solved_at is None:
                    solved_at, solved_at_seconds = step, round(train_seconds, 3)
                self.side_seconds += time.perf_counter() - side_start
                if trial is not None and trial.should_stop(step, mean) and step < total:
                    raise Pruned(f"The Optuna pruner stopped this trial at step {step:,} (evaluation {mean:.1f}): "
                                 "its evaluations trail the median of earlier trials at this step.")
                if cfg.eval.early_stop and self.threshold is not None and mean >= self.threshold:
                    early_stopped = True
                    tm.message(f"[green]Early stop at step {step:,}: evaluation {mean:.1f} >= {self.threshold:g}.")
                    break
            if step >= next_ckpt and cfg.checkpoint.enabled:
                next_ckpt = step + ckpt_every
                side_start = time.perf_counter()
                self.save_checkpoint("latest", step, {"step": step, "episodes": episodes}, with_buffer=True)
                self.side_seconds += time.perf_counter() - side_start

        wall = time.perf_counter() - start
        final_step, final_mean, final_std = evals[-1]
        summary = {
            "algo": cfg.algo.name, "env": self.env_id, "seed": cfg.seed, "status": "completed",
            "early_stopped": early_stopped, "total_steps": step, "episodes": episodes,
            "wall_seconds": round(wall, 3), "steps_per_second": round(step / max(wall, 1e-9), 1),
            "train_seconds": round(wall - self.side_seconds, 3),
            "train_steps_per_second": round(step / max(wall - self.side_seconds, 1e-9), 1),
            "final_return_mean": final_mean, "final_return_std": final_std, "final_eval_step": final_step,
            "best_return_mean": best, "threshold": self.threshold, "solved_at_step": solved_at,
            "solved_at_seconds": solved_at_seconds,
            "device": str(self.device), "run_dir": str(self.run_dir),
        }
        tm.scalars(step, {"charts/SPS": summary["steps_per_second"]})
        tm.hparams(flatten(cfg), {"hparams/final_return_mean": final_mean,
                                  "hparams/best_return_mean": best,
                                  "hparams/steps_per_second": summary["steps_per_second"]})
        return summary

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

    def _evaluate(self, step: int, evals: list[tuple[int, float, float]], train_seconds: float) -> tuple[float, float]:
        cfg = self.cfg
        returns, lengths = evaluate(self.agent, self.eval_envs, cfg.eval.episodes,
                                    cfg.seed + EVAL_SEED_OFFSET, cfg.eval.deterministic)
        mean, std = float(returns.mean()), float(returns.std())
        evals.append((step, mean, std))
        assert self.telemetry is not None
        self.telemetry.scalars(step, {"eval/return_mean": mean, "eval/return_std": std,
                                      "eval/length_mean": float(lengths.mean()),
                                      "eval/train_seconds": round(train_seconds, 3)})
        if not self.telemetry.live:
            self.telemetry.message(f"step {step:>9,}  eval return {mean:8.1f} +/- {std:.1f}")
        return mean, std

    def close(self) -> None:
        self.envs.close()
        if self.eval_envs is not None:
            self.eval_envs.close()


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    checkpoint.atomic_write(run_dir / "summary.json",
                            lambda f: f.write((json.dumps(summary, indent=2) + "\n").encode()))


def failure_summary(cfg: Any, run_dir: Path, status: str, error: BaseException,
                    run: Run | None = None) -> dict[str, Any]:
    """summary.json for a run that did not complete: its status, the error, and how far it got.
    ``cfg`` is the run's settings, or the composed Hydra config when they could not be built."""
    progress = getattr(run, "progress", {}) if run is not None else {}
    evals = progress.get("evals") or []
    wall = time.perf_counter() - progress["start"] if "start" in progress else 0.0
    return {
        "algo": cfg.algo.name, "env": run.env_id if run is not None else cfg.env.id, "seed": cfg.seed,
        "status": status, "error": f"{type(error).__name__}: {error}" if not isinstance(error, DrlrunError)
        else str(error),
        "total_steps": progress.get("step", 0), "wall_seconds": round(wall, 3),
        "final_return_mean": evals[-1][1] if evals else None,
        "final_eval_step": evals[-1][0] if evals else None,
        "best_return_mean": max(e[1] for e in evals) if evals else None,
        "threshold": getattr(run, "threshold", None), "run_dir": str(run_dir),
    }


def train(cfg: RunConfig, run_dir: Path, *, progress: bool | None = None) -> dict[str, Any]:
    """Build, train and summarise one run in ``run_dir``; returns the summary.

    A run that diverges or fails while training still leaves a summary.json (status ``diverged``
    or ``failed``, with the error) before the exception propagates, so sweeps and reports can
    account for it. Bad input fails while building, before anything is written."""
    run_dir.mkdir(parents=True, exist_ok=True)
    run = Run(cfg, run_dir)  # bad input fails here, before anything is written
    title = f"{cfg.algo.name} {slug(run.env_id)} seed {cfg.seed}"
    run.telemetry = Telemetry(run_dir, total_steps=cfg.total_steps, title=title, tensorboard=cfg.log.tensorboard,
                              progress=cfg.log.progress if progress is None else progress)
    try:
        summary = run.train()
    except Exception as exc:
        status = "diverged" if isinstance(exc, Diverged) else "pruned" if isinstance(exc, Pruned) else "failed"
        write_summary(run_dir, failure_summary(cfg, run_dir, status, exc, run))
        raise
    finally:
        run.telemetry.close()
        run.close()
    write_summary(run_dir, summary)
    return summary
