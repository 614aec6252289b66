"""One training run: builds the envs, the agent and the loop's parts from a :class:`RunConfig`,
trains (``loop.py``) and leaves a summary (``summary.py``).

Nothing but the algorithm's own settings changes what is learned: evaluation runs on its own
envs with the global RNG states put back afterwards (``sidesteps.py``), and a checkpoint records
the episodes in flight instead of cutting them (``resume.py``). Ctrl-C or SIGTERM finishes the
current step, saves a checkpoint there and stops with :class:`Interrupted` (``interrupt.py``);
``drlrun resume=RUN_DIR`` goes on.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from drlrun import checkpoint, summary
from drlrun.agent import Agent, EnvSpec, agent_state, check_agent_config
from drlrun.build import build_agent, checkpoint_header, resolve_device
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
from drlrun.episodes import EVAL_SEED_OFFSET, EpisodesInFlight
from drlrun.errors import DrlrunError
from drlrun.interrupt import Interrupted, StopSignals
from drlrun.listeners import BestCheckpoint, EarlyStop, Listener, Pruning, SolvedStep, Video
from drlrun.loop import Diverged, Loop
from drlrun.pruning import Pruned, trial_from_env
from drlrun.registry import ALGOS
from drlrun.resume import Resume
from drlrun.rng import seed_everything
from drlrun.schedule import Counters, Schedule
from drlrun.sidesteps import EvalHistory, Evaluator, SideSteps
from drlrun.telemetry import Telemetry
from drlrun.tracking import check_backends, open_telemetry


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
        self.video_env: Any = None
        try:
            self._build(algo_cls)
        except BaseException:
            self.close()
            raise
        self.telemetry = telemetry
        self.ckpt_dir = run_dir / "checkpoints"
        # The parts whose state a checkpoint keeps.
        self.counters = Counters()
        self.schedule = Schedule(cfg)
        discrete = self.spec.action_kind == "discrete"
        self.flight = EpisodesInFlight(self.envs.num_envs, () if discrete else self.spec.action_shape,
                                       np.int64 if discrete else np.float32)
        self.history = EvalHistory()
        self.solved = SolvedStep(self.threshold)
        self.resume = Resume(self.agent, self.flight, self.counters, self.schedule, [self.history, self.solved])

    def _build(self, algo_cls: type) -> None:
        """The env spec, the eval envs, the agent and the video env; bad input fails here."""
        cfg = self.cfg
        self.spec: EnvSpec = describe(self.envs, self.env_id)
        check_action_space(cfg.algo.name, algo_cls, self.spec, dict(ALGOS.items()))
        self.threshold = solved_threshold(cfg.env, self.env_id, cfg.eval.target_return)
        if cfg.eval.early_stop and self.threshold is None:
            raise DrlrunError(f"eval.early_stop=true, but env.id={self.env_id!r} has no reward threshold. "
                              "Give one with eval.target_return=<return> (or env.threshold).")
        self.eval_envs = make_envs(cfg.env, self.env_id, min(cfg.eval.episodes, 16))
        self.agent: Agent = build_agent(cfg, self.spec, self.device)
        if cfg.eval.video_every > 0:
            from drlrun.video import make_render_env

            self.video_env = make_render_env(cfg.env, self.env_id, "rgb_array")

    # ------------------------------------------------------------------ checkpoints
    def header(self) -> dict[str, Any]:
        return checkpoint_header(self.cfg, self.env_id, self.spec)

    def save_checkpoint(self, name: str, *, with_buffer: bool, obs: np.ndarray | None = None) -> None:
        """``checkpoints/<name>.pt``. ``latest`` (given ``obs``, the observations the agent acts on
        next) also holds what resuming needs (:class:`drlrun.resume.Resume`)."""
        step = self.counters.step
        header = self.header() | {"step": step, "config": flatten(self.cfg),
                                  "settings": dataclasses.asdict(self.cfg)}
        runner: dict[str, Any] = {"step": step, "episodes": self.flight.episodes}
        if obs is not None:
            self.counters.seconds = self.counters.elapsed()
            runner.update(self.resume.state_dict(obs))
        state = {"agent": agent_state(self.agent, with_buffer=with_buffer), "runner": runner}
        checkpoint.save(self.ckpt_dir / f"{name}.pt", header, state)

    def restore(self, path: Path, header: dict[str, Any], state: dict[str, Any]) -> None:
        """Continue from a ``latest`` checkpoint (``resume.py`` says how this stays exact)."""
        checkpoint.check_header(path, header, self.header())
        self.resume.restore(path, header, state, self.cfg.algo.name)

    # ------------------------------------------------------------------ training
    def train(self) -> dict[str, Any]:
        """Train to ``total_steps``; returns the summary."""
        tm = self.telemetry
        assert tm is not None
        self.counters.begin()
        signals = StopSignals(tm)
        loop = Loop(agent=self.agent, envs=self.envs, flight=self.flight, schedule=self.schedule,
                    counters=self.counters, side=self._side_steps(signals), signals=signals,
                    saving=self.cfg.checkpoint.enabled, telemetry=tm, history=self.history,
                    carried_metrics=self.resume.carried_metrics, ckpt_dir=self.ckpt_dir)
        early_stopped = loop.run(self._first_obs())
        result = summary.completed(self.cfg, self.run_dir, env_id=self.env_id, device=self.device,
                                   counters=self.counters, episodes=self.flight.episodes, history=self.history,
                                   solved=self.solved, early_stopped=early_stopped)
        summary.to_tensorboard(tm, self.cfg, result)
        return result

    def _first_obs(self) -> np.ndarray:
        """The observations the agent acts on first: the training envs' first, or, resuming,
        those at the checkpoint, with the episodes in flight rebuilt."""
        assert self.telemetry is not None
        if self.resume.obs is None:
            obs, _ = self.envs.reset(seed=reset_seed(self.envs, self.cfg.seed))
            return obs
        self.telemetry.message(f"Resuming {self.run_dir} at step {self.counters.step:,} of {self.cfg.total_steps:,}.")
        if self.counters.step >= self.cfg.total_steps:
            return self.resume.obs
        return self.resume.rebuild_episodes(self.envs, self.cfg.seed, self.telemetry)

    def _side_steps(self, signals: StopSignals) -> SideSteps:
        cfg, tm = self.cfg, self.telemetry
        evaluator = Evaluator(self.agent, self.eval_envs, cfg.eval, cfg.seed + EVAL_SEED_OFFSET, cfg.total_steps,
                              self.history, tm)
        save_latest = None
        if cfg.checkpoint.enabled:
            def save_latest(obs: np.ndarray) -> None:
                self.save_checkpoint("latest", with_buffer=cfg.checkpoint.buffer, obs=obs)
        return SideSteps(schedule=self.schedule, counters=self.counters, evaluate=evaluator,
                         listeners=self._listeners(), flight=self.flight, telemetry=tm, signals=signals,
                         save_latest=save_latest, run_dir=self.run_dir)

    def _listeners(self) -> list[Listener]:
        """Who hears of each evaluation, in this order."""
        cfg = self.cfg
        listeners: list[Listener] = []
        if self.video_env is not None:
            listeners.append(Video(self.agent, self.video_env, cfg.seed + EVAL_SEED_OFFSET, cfg.eval.deterministic,
                                   cfg.eval.video_every, self.run_dir / "videos", self.telemetry))
        listeners.append(self.solved)
        if cfg.checkpoint.enabled and cfg.checkpoint.save_best:
            listeners.append(BestCheckpoint(lambda: self.save_checkpoint("best", with_buffer=False)))
        trial = trial_from_env()  # inside an Optuna sweep: report evaluations, obey the pruner
        if trial is not None:
            listeners.append(Pruning(trial))
        if cfg.eval.early_stop and self.threshold is not None:
            listeners.append(EarlyStop(self.threshold))
        return listeners

    def failure_summary(self, status: str, error: BaseException) -> dict[str, Any]:
        return summary.failure_summary(self.cfg, self.run_dir, status, error, env_id=self.env_id,
                                       threshold=self.threshold, counters=self.counters, history=self.history)

    def close(self) -> None:
        self.envs.close()
        if self.eval_envs is not None:
            self.eval_envs.close()
        if self.video_env is not None:
            self.video_env.close()


def train(cfg: RunConfig, run_dir: Path, *, progress: bool | None = None,
          resume: tuple[dict[str, Any], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Build, train and summarise one run in ``run_dir``; returns the summary.

    ``resume`` is a loaded ``latest`` checkpoint (header, state) of this run to continue from.
    A run that diverges, fails or is interrupted while training still leaves a summary.json
    (status ``diverged``, ``failed`` or ``interrupted``, with the error) before the exception
    propagates, so sweeps and reports can account for it. Bad input fails while building,
    before anything is written; a logger that cannot start fails before training. The loggers
    get the summary and the run's other files when it ends (``drlrun/tracking.py``)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    check_backends(cfg.log)
    run = Run(cfg, run_dir)  # bad input fails here, before anything is written
    try:
        if resume is not None:
            run.restore(run.ckpt_dir / "latest.pt", *resume)
        title = f"{cfg.algo.name} {slug(run.env_id)} seed {cfg.seed}"
        run.telemetry = open_telemetry(cfg, run_dir, title=title,
                                       progress=cfg.log.progress if progress is None else progress,
                                       resume_step=run.counters.step if resume is not None else None,
                                       seconds=run.counters.seconds)
    except BaseException:
        run.close()
        raise
    status = "interrupted"  # (a second Ctrl-C while training)
    try:
        result = run.train()
        status = result["status"]
        _write_summary(run, result)
    except Exception as exc:
        status = ("diverged" if isinstance(exc, Diverged) else "pruned" if isinstance(exc, Pruned)
                  else "interrupted" if isinstance(exc, Interrupted) else "failed")
        _write_summary(run, run.failure_summary(status, exc))
        raise
    finally:
        run.telemetry.close(status)
        run.close()
    return result


def _write_summary(run: Run, result: dict[str, Any]) -> None:
    """summary.json, with where the loggers keep the run (``tracking``: e.g. ``mlflow_ui``)."""
    assert run.telemetry is not None
    links = run.telemetry.links()
    if links:
        result["tracking"] = links
    summary.write_summary(run.run_dir, result)
