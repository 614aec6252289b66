"""drlrun against Stable-Baselines3, side by side, on the same tasks with the same hyperparameters.

    pip install stable-baselines3              # benchmark only; never a drlrun dependency
    python benchmarks/vs_sb3.py --seeds 3
    python benchmarks/vs_sb3.py --tasks ppo_cartpole,dqn_cartpole --seeds 1 --json results.jsonl
    python benchmarks/vs_sb3.py --steps 500 --sides drlrun          # smoke run, no SB3 needed
    python benchmarks/vs_sb3.py --tasks dqn_minatar_breakout --seeds 2   # pixels: pip install minatar

Each task's hyperparameters are written once, in ``TASKS``, as pairs (drlrun key = value,
SB3 argument = value); both command lines are generated from that table and printed. Runs are
interleaved (drlrun, SB3, drlrun, SB3, ...), one process per run, one run at a time.

What is measured, identically on both sides:
- ``sps``: environment steps per second of training: the training loop's wall time minus the
  time spent in periodic evaluations (start-up and model construction are not counted);
- ``return``: the mean return of the final deterministic evaluation (10 episodes);
- ``time_to_threshold``: training seconds at the first periodic evaluation (every
  ``total_steps / evals`` steps, 10 episodes) whose mean reaches the threshold; None if none does.
Medians over seeds go in the table; ``ratio`` is median drlrun sps / median SB3 sps.
SB3 runs with torch's default thread count (as its users get it; ``--sb3-threads 1`` for one
thread), drlrun with its own default (one torch thread). Pin both to one core with
``taskset -c 0 python benchmarks/vs_sb3.py ...``. Both sides run on this script's Python (drlrun
through the ``drlrun`` command next to it), so a separate environment with SB3 and drlrun
installed keeps SB3 out of drlrun's own.

Frames (``dqn_minatar_breakout``): SB3's ``CnnPolicy`` is the Nature-DQN torso, which does not fit
MinAtar's 10x10 frames, so the SB3 side gets the torso drlrun's ``network=cnn`` builds from the
same settings (:func:`frames_cnn_class`: the conv layers, each with a ReLU, flattened; SB3's
``net_arch`` then adds the fully connected layers), and MinAtar's HxWxC booleans as CxHxW uint8 0/1
(:func:`channels_first_wrapper`), which SB3 turns into floats, unscaled.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from statistics import median
from typing import Any

EVAL_EPISODES = 10
SAME = object()  # Hp.sb3_value: SB3 takes the drlrun value as it is


@dataclass(frozen=True)
class Hp:
    """One hyperparameter as each side spells it. ``sb3=None``: expressed on the SB3 side by
    another entry (drlrun's ``anneal_lr`` is SB3's linear learning-rate schedule)."""

    drlrun: str
    value: Any
    sb3: str | None = None
    sb3_value: Any = SAME

    def sb3_pair(self) -> tuple[str, Any] | None:
        if self.sb3 is None:
            return None
        return self.sb3, self.value if self.sb3_value is SAME else self.sb3_value


@dataclass(frozen=True)
class Task:
    name: str
    algo: str  # drlrun algo and SB3 class (lower case)
    env: str  # drlrun's env option (conf/env/), and the Gymnasium id SB3 makes unless sb3_env says otherwise
    total_steps: int
    threshold: float
    hps: tuple[Hp, ...]
    evals: int = 10
    network: str | None = None  # drlrun's network option, where not the default mlp
    sb3_env: str | None = None
    sb3_policy: str = "MlpPolicy"

    @property
    def gym_id(self) -> str:
        """The Gymnasium id both sides run."""
        return self.sb3_env or self.env

    @property
    def values(self) -> dict[str, Any]:
        """Each hyperparameter's value, by its drlrun key."""
        return {hp.drlrun: hp.value for hp in self.hps}

    def resized(self, total_steps: int) -> Task:
        """The task cut to ``total_steps`` (smoke runs): one evaluation at the end, on-policy
        rollouts shrunk to fit when one rollout would be longer than the whole run, and learning
        started halfway when the warm-up would be longer."""
        if total_steps == self.total_steps:
            return self
        values = self.values
        fit: dict[str, int] = {}
        if "algo.n_steps" in values and values["algo.n_steps"] * values["env.num_envs"] > total_steps:
            fit["algo.n_steps"] = max(1, total_steps // values["env.num_envs"])
            fit["algo.batch_size"] = min(values["algo.batch_size"], fit["algo.n_steps"] * values["env.num_envs"])
        if values.get("algo.learning_starts", 0) > total_steps // 2:
            fit["algo.learning_starts"] = total_steps // 2
        hps = [Hp(hp.drlrun, fit[hp.drlrun], hp.sb3) if hp.drlrun in fit else hp for hp in self.hps]
        return replace(self, total_steps=total_steps, hps=tuple(hps), evals=1)

    def drlrun_overrides(self) -> list[str]:
        steps = self.total_steps
        out = [f"algo={self.algo}", f"env={self.env}", f"total_steps={steps}"]
        out += [f"network={self.network}"] if self.network else []
        out += [f"{hp.drlrun}={_hydra_value(hp.value)}" for hp in self.hps]
        out += [f"eval.interval={max(1, steps // self.evals)}", f"eval.episodes={EVAL_EPISODES}",
                f"eval.target_return={self.threshold}", "checkpoint.enabled=false"]
        return out

    def sb3_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the SB3 class, schedules as plain functions and activation names as
        strings (the worker maps them to torch modules), so tests can read them without SB3. A
        dotted key is a nested dict (``policy_kwargs.features_extractor_kwargs.channels``)."""
        kwargs: dict[str, Any] = {}
        for hp in self.hps:
            pair = hp.sb3_pair()
            if pair is None:
                continue
            key, value = pair
            *outer, last = key.split(".")
            target = kwargs
            for part in outer:
                target = target.setdefault(part, {})
            target[last] = value
        return kwargs


def linear(start: float) -> Callable[[float], float]:
    """SB3's linear schedule: ``progress_remaining`` goes from 1 to 0 over training."""

    def schedule(progress_remaining: float) -> float:
        return start * progress_remaining

    schedule.start = start  # type: ignore[attr-defined]
    return schedule


def _hydra_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)


# RL Zoo's tuned hyperparameters (rl-baselines3-zoo hyperparams/*.yml), plus every default where
# the two libraries could differ, pinned on both sides.
PPO_COMMON = (
    Hp("algo.clip_vloss", False, "clip_range_vf", None),
    Hp("algo.vf_coef", 0.5, "vf_coef"),
    Hp("algo.max_grad_norm", 0.5, "max_grad_norm"),
    Hp("algo.normalize_advantage", True, "normalize_advantage"),
    Hp("algo.orthogonal_init", True, "policy_kwargs.ortho_init"),
    Hp("algo.target_kl", None, "target_kl"),
    Hp("network.shared", False),  # SB3 >= 1.8: separate policy and value MLPs
)
TASKS: dict[str, Task] = {t.name: t for t in (
    Task("ppo_cartpole", "ppo", "CartPole-v1", 100_000, 475.0, (
        Hp("env.num_envs", 8, "n_envs"),
        Hp("algo.n_steps", 32, "n_steps"),
        Hp("algo.batch_size", 256, "batch_size"),
        Hp("algo.n_epochs", 20, "n_epochs"),
        Hp("algo.gae_lambda", 0.8, "gae_lambda"),
        Hp("algo.gamma", 0.98, "gamma"),
        Hp("algo.lr", 1e-3, "learning_rate", linear(1e-3)),
        Hp("algo.anneal_lr", True),
        Hp("algo.clip_range", 0.2, "clip_range", linear(0.2)),
        Hp("algo.anneal_clip", True),
        Hp("algo.ent_coef", 0.0, "ent_coef"),
        Hp("network.hidden_sizes", [64, 64], "policy_kwargs.net_arch", [64, 64]),
        Hp("network.activation", "tanh", "policy_kwargs.activation_fn", "tanh"),
        *PPO_COMMON,
    )),
    Task("dqn_cartpole", "dqn", "CartPole-v1", 50_000, 475.0, (
        Hp("env.num_envs", 1, "n_envs"),
        Hp("algo.lr", 2.3e-3, "learning_rate"),
        Hp("algo.batch_size", 64, "batch_size"),
        Hp("buffer.capacity", 100_000, "buffer_size"),
        Hp("algo.learning_starts", 1000, "learning_starts"),
        Hp("algo.gamma", 0.99, "gamma"),
        Hp("algo.target_update_interval", 10, "target_update_interval"),
        Hp("algo.tau", 1.0, "tau"),
        Hp("algo.train_freq", 256, "train_freq"),
        Hp("algo.gradient_steps", 128, "gradient_steps"),
        Hp("algo.exploration_fraction", 0.16, "exploration_fraction"),
        Hp("algo.exploration_initial_eps", 1.0, "exploration_initial_eps"),
        Hp("algo.exploration_final_eps", 0.04, "exploration_final_eps"),
        Hp("algo.max_grad_norm", 10.0, "max_grad_norm"),
        Hp("algo.double", False),
        Hp("algo.n_step", 1),
        Hp("algo.anneal_lr", False),  # RL Zoo's settings, not drlrun's default preset
        Hp("network.hidden_sizes", [256, 256], "policy_kwargs.net_arch", [256, 256]),
        Hp("network.activation", "relu", "policy_kwargs.activation_fn", "relu"),
    )),
    Task("sac_pendulum", "sac", "Pendulum-v1", 20_000, -200.0, (
        Hp("env.num_envs", 1, "n_envs"),
        Hp("algo.lr", 1e-3, "learning_rate"),
        Hp("algo.batch_size", 256, "batch_size"),
        Hp("buffer.capacity", 1_000_000, "buffer_size"),
        Hp("algo.learning_starts", 100, "learning_starts"),
        Hp("algo.gamma", 0.99, "gamma"),
        Hp("algo.tau", 0.005, "tau"),
        Hp("algo.train_freq", 1, "train_freq"),
        Hp("algo.gradient_steps", 1, "gradient_steps"),
        Hp("algo.autotune", True, "ent_coef", "auto_1.0"),
        Hp("algo.alpha_init", 1.0),
        Hp("algo.target_entropy", None, "target_entropy", "auto"),
        Hp("algo.policy_frequency", 1),  # SB3 updates actor and targets every gradient step
        Hp("network.hidden_sizes", [256, 256], "policy_kwargs.net_arch", [256, 256]),
        Hp("network.activation", "relu", "policy_kwargs.activation_fn", "relu"),
    )),
    Task("ppo_lunar", "ppo", "LunarLander-v3", 1_000_000, 200.0, (
        Hp("env.num_envs", 16, "n_envs"),
        Hp("algo.n_steps", 1024, "n_steps"),
        Hp("algo.batch_size", 64, "batch_size"),
        Hp("algo.n_epochs", 4, "n_epochs"),
        Hp("algo.gae_lambda", 0.98, "gae_lambda"),
        Hp("algo.gamma", 0.999, "gamma"),
        Hp("algo.lr", 3e-4, "learning_rate"),
        Hp("algo.anneal_lr", False),
        Hp("algo.clip_range", 0.2, "clip_range"),
        Hp("algo.anneal_clip", False),
        Hp("algo.ent_coef", 0.01, "ent_coef"),
        Hp("network.hidden_sizes", [64, 64], "policy_kwargs.net_arch", [64, 64]),
        Hp("network.activation", "tanh", "policy_kwargs.activation_fn", "tanh"),
        *PPO_COMMON,
    )),
    # The MinAtar paper's DQN (drlrun's preset conf/preset/dqn_MinAtar-Breakout-v1.yaml) for 50k of
    # its 1M steps; epsilon anneals over the first 10% of the run, as in the preset.
    Task("dqn_minatar_breakout", "dqn", "MinAtar-Breakout-v1", 50_000, 5.0, (
        Hp("env.num_envs", 1, "n_envs"),
        Hp("algo.lr", 1e-4, "learning_rate"),
        Hp("algo.batch_size", 32, "batch_size"),
        Hp("buffer.capacity", 100_000, "buffer_size"),
        Hp("algo.learning_starts", 5000, "learning_starts"),
        Hp("algo.gamma", 0.99, "gamma"),
        Hp("algo.target_update_interval", 1000, "target_update_interval"),
        Hp("algo.tau", 1.0, "tau"),
        Hp("algo.train_freq", 1, "train_freq"),
        Hp("algo.gradient_steps", 1, "gradient_steps"),
        Hp("algo.exploration_fraction", 0.1, "exploration_fraction"),
        Hp("algo.exploration_initial_eps", 1.0, "exploration_initial_eps"),
        Hp("algo.exploration_final_eps", 0.1, "exploration_final_eps"),
        Hp("algo.max_grad_norm", 10.0, "max_grad_norm"),
        Hp("algo.loss", "huber"),  # SB3's DQN loss is always Huber (smooth L1)
        Hp("algo.double", False),
        Hp("algo.n_step", 1),
        Hp("algo.anneal_lr", False),
        Hp("network.channels", [16], "policy_kwargs.features_extractor_kwargs.channels"),
        Hp("network.kernels", [3], "policy_kwargs.features_extractor_kwargs.kernels"),
        Hp("network.strides", [1], "policy_kwargs.features_extractor_kwargs.strides"),
        Hp("network.dueling", False),
        Hp("network.hidden_sizes", [128], "policy_kwargs.net_arch", [128]),
        Hp("network.activation", "relu", "policy_kwargs.activation_fn", "relu"),
    ), network="cnn_small", sb3_env="MinAtar/Breakout-v1", sb3_policy="CnnPolicy"),
)}


# --------------------------------------------------------------------------- the drlrun side
def run_drlrun(task: Task, seed: int, root: Path) -> dict[str, Any]:
    run_dir = root / f"drlrun_{task.name}_{seed}"
    beside = Path(sys.executable).parent / "drlrun"  # the same environment as the SB3 side
    exe = str(beside) if beside.exists() else shutil.which("drlrun") or "drlrun"
    cmd = [exe, *task.drlrun_overrides(), f"seed={seed}", "log.progress=false", f"hydra.run.dir={run_dir}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"drlrun failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"sps": summary["train_steps_per_second"], "return": summary["final_return_mean"],
            "time_to_threshold": summary["solved_at_seconds"], "train_seconds": summary["train_seconds"]}


# --------------------------------------------------------------------------- the SB3 side
def run_sb3(task: Task, seed: int, root: Path, threads: int = 0) -> dict[str, Any]:
    out = root / f"sb3_{task.name}_{seed}.json"
    cmd = [sys.executable, __file__, "--sb3-worker", task.name, "--seed", str(seed), "--steps", str(task.total_steps),
           "--out", str(out), "--sb3-threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"SB3 worker failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


def channels_first_wrapper() -> type:
    """A Gymnasium observation wrapper: HxWxC frames (MinAtar's booleans, or uint8) as CxHxW uint8,
    the layout SB3's CNN policies take. Booleans become 0/1 in a Box with high 1, which SB3 does not
    count as an image: it casts them to float without dividing by 255, as drlrun does."""
    import gymnasium as gym
    import numpy as np

    class ChannelsFirst(gym.ObservationWrapper):
        def __init__(self, env: gym.Env) -> None:
            super().__init__(env)
            space = env.observation_space
            h, w, c = space.shape
            high = 1 if space.dtype == np.bool_ else 255
            self.observation_space = gym.spaces.Box(0, high, (c, h, w), np.uint8)

        def observation(self, observation: Any) -> Any:
            return np.ascontiguousarray(observation.transpose(2, 0, 1), dtype=np.uint8)

    return ChannelsFirst


def frames_cnn_class() -> type:
    """An SB3 features extractor that is drlrun's ``network=cnn`` torso for the same settings:
    conv layers (no padding) each followed by a ReLU, flattened channels-first. SB3's ``net_arch``
    adds the fully connected layers after it, as drlrun's ``network.hidden_sizes`` does."""
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
    from torch import nn

    class FramesCNN(BaseFeaturesExtractor):
        def __init__(self, observation_space: Any, channels: list[int], kernels: list[int],
                     strides: list[int]) -> None:
            c, h, w = observation_space.shape
            layers: list[nn.Module] = []
            for out, kernel, stride in zip(channels, kernels, strides, strict=True):
                layers += [nn.Conv2d(c, out, kernel, stride), nn.ReLU()]
                c, h, w = out, (h - kernel) // stride + 1, (w - kernel) // stride + 1
            super().__init__(observation_space, features_dim=c * h * w)
            self.cnn = nn.Sequential(*layers, nn.Flatten())

        def forward(self, observations: Any) -> Any:
            return self.cnn(observations)

    return FramesCNN


def sb3_worker(task: Task, seed: int, out: Path, threads: int = 0) -> None:
    """One SB3 run, timed like drlrun's runner times itself (evaluations excluded)."""
    import gymnasium as gym
    import stable_baselines3
    import torch
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv
    from torch import nn

    if threads > 0:
        torch.set_num_threads(threads)
    if task.gym_id.startswith("MinAtar/"):  # Gymnasium 1.x registers a package's envs on request only
        from minatar.gym import register_envs

        register_envs()
    kwargs = task.sb3_kwargs()
    n_envs = kwargs.pop("n_envs")
    policy_kwargs = kwargs.get("policy_kwargs", {})
    if "activation_fn" in policy_kwargs:
        policy_kwargs["activation_fn"] = {"tanh": nn.Tanh, "relu": nn.ReLU}[policy_kwargs["activation_fn"]]
    if "features_extractor_kwargs" in policy_kwargs:
        policy_kwargs["features_extractor_class"] = frames_cnn_class()
    probe = gym.make(task.gym_id)
    shape = probe.observation_space.shape
    probe.close()
    # HxWxC frames (the last axis the shortest, drlrun's channel_order=auto rule) go channels first.
    wrapper = channels_first_wrapper() if len(shape) == 3 and shape[-1] < shape[0] else None
    algo_cls = {"ppo": stable_baselines3.PPO, "dqn": stable_baselines3.DQN, "sac": stable_baselines3.SAC}[task.algo]
    env = make_vec_env(task.gym_id, n_envs=n_envs, seed=seed, wrapper_class=wrapper)
    model = algo_cls(task.sb3_policy, env, seed=seed, device="cpu", verbose=0, **kwargs)

    def make_eval_env() -> gym.Env:
        single = gym.make(task.gym_id)
        return Monitor(single if wrapper is None else wrapper(single))

    eval_env = DummyVecEnv([make_eval_env])
    eval_env.seed(seed + 1_000_003)
    steps = task.total_steps
    interval = max(1, steps // task.evals)

    class PeriodicEval(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.next_eval, self.eval_seconds, self.start = interval, 0.0, 0.0
            self.solved_at: float | None = None
            self.last: tuple[int, float] | None = None

        def _on_training_start(self) -> None:
            self.start = time.perf_counter()

        def _on_step(self) -> bool:
            if self.num_timesteps >= self.next_eval:
                self.next_eval += interval
                begin = time.perf_counter()
                mean, _ = evaluate_policy(self.model, eval_env, n_eval_episodes=EVAL_EPISODES, deterministic=True)
                self.last = (self.num_timesteps, float(mean))
                if mean >= task.threshold and self.solved_at is None:
                    self.solved_at = begin - self.start - self.eval_seconds
                self.eval_seconds += time.perf_counter() - begin
            return True

    callback = PeriodicEval()
    start = time.perf_counter()
    model.learn(total_timesteps=steps, callback=callback)
    train_seconds = time.perf_counter() - start - callback.eval_seconds
    if callback.last is None or callback.last[0] < model.num_timesteps:
        mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=EVAL_EPISODES, deterministic=True)
        final = float(mean)
    else:
        final = callback.last[1]
    result = {"sps": round(model.num_timesteps / train_seconds, 1), "return": final,
              "time_to_threshold": None if callback.solved_at is None else round(callback.solved_at, 3),
              "train_seconds": round(train_seconds, 3), "sb3_version": stable_baselines3.__version__,
              "torch_threads": torch.get_num_threads()}
    out.write_text(json.dumps(result))


# --------------------------------------------------------------------------- the comparison
def _median(values: list[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return round(median(present), 3) if present else None


def compare(task: Task, seeds: list[int], sides: list[str], root: Path, sb3_threads: int = 0) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    for seed in seeds:
        for side in sides:  # interleaved: A B A B
            result = run_drlrun(task, seed, root) if side == "drlrun" else run_sb3(task, seed, root, sb3_threads)
            runs[side].append({"seed": seed, **result})
            print(f"  {task.name} seed {seed} {side:>6}: {result['sps']:>9.1f} steps/s, "
                  f"return {result['return']:8.1f}, time to threshold {result['time_to_threshold']}", flush=True)
    row: dict[str, Any] = {"task": task.name, "seeds": seeds, "total_steps": task.total_steps}
    for side in sides:
        row[f"{side}_sps"] = _median([r["sps"] for r in runs[side]])
        row[f"{side}_return"] = _median([r["return"] for r in runs[side]])
        row[f"{side}_time_to_threshold"] = _median([r["time_to_threshold"] for r in runs[side]])
        row[f"{side}_solved"] = sum(r["time_to_threshold"] is not None for r in runs[side])
        row[f"{side}_runs"] = runs[side]
    if "drlrun" in sides and "sb3" in sides:
        row["ratio"] = round(row["drlrun_sps"] / row["sb3_sps"], 2)
    row["drlrun_overrides"] = task.drlrun_overrides()
    row["sb3"] = {k: getattr(v, "start", v) for k, v in task.sb3_kwargs().items()}
    row["machine"] = f"{platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} usable cores"
    row["date"] = date.today().isoformat()
    return row


def print_table(rows: list[dict[str, Any]], sides: list[str]) -> None:
    def fmt(value: Any, spec: str = ".1f") -> str:
        return "-" if value is None else format(value, spec)

    head = ["task"]
    for side in sides:
        head += [f"{side} steps/s", f"{side} return", f"{side} s to threshold"]
    if len(sides) == 2:
        head.append("ratio")
    print("\n| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        cells = [row["task"]]
        for side in sides:
            n = len(row[f"{side}_runs"])
            cells += [fmt(row[f"{side}_sps"], ",.0f"), fmt(row[f"{side}_return"]),
                      f"{fmt(row[f'{side}_time_to_threshold'])} ({row[f'{side}_solved']}/{n})"]
        if len(sides) == 2:
            cells.append(f"{row['ratio']:.2f}x")
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated, from: {', '.join(TASKS)}")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
    parser.add_argument("--steps", type=int, help="override every task's total steps (smoke runs)")
    parser.add_argument("--sides", default="drlrun,sb3", help="drlrun,sb3 or one of them")
    parser.add_argument("--json", type=Path, help="append one JSON line per task here")
    parser.add_argument("--sb3-threads", type=int, default=0,
                        help="torch threads for SB3; 0 (default) leaves torch's default, as SB3 users get it")
    parser.add_argument("--sb3-worker", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sb3_worker:
        task = TASKS[args.sb3_worker]
        sb3_worker(task.resized(args.steps or task.total_steps), args.seed, args.out, args.sb3_threads)
        return
    names = [n for n in args.tasks.split(",") if n]
    unknown = [n for n in names if n not in TASKS]
    sides = [s for s in args.sides.split(",") if s]
    if unknown or not names:
        parser.error(f"unknown task(s) {unknown}; valid choices: {', '.join(TASKS)}")
    if not sides or any(s not in ("drlrun", "sb3") for s in sides):
        parser.error(f"--sides {args.sides!r}: valid choices are drlrun, sb3 or drlrun,sb3")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            task = TASKS[name].resized(args.steps or TASKS[name].total_steps)
            print(f"{name}: drlrun {' '.join(task.drlrun_overrides())}", flush=True)
            print(f"{name}: SB3 {task.algo.upper()}({task.sb3_policy!r}, {task.gym_id!r}, "
                  f"{', '.join(f'{k}={v!r}' for k, v in task.sb3_kwargs().items())})", flush=True)
            row = compare(task, list(range(args.seeds)), sides, Path(tmp), args.sb3_threads)
            rows.append(row)
            if args.json:
                with args.json.open("a") as f:
                    f.write(json.dumps(row) + "\n")
    print_table(rows, sides)


if __name__ == "__main__":
    main()
