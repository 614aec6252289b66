"""The fastest any PyTorch implementation of each vs_sb3 task could run on this machine.

    taskset -c 1 python benchmarks/floor.py                        # one core, one torch thread
    taskset -c 0,1 python benchmarks/floor.py --threads 2 --sb3-sps dqn_cartpole=1814,sac_pendulum=122

Two costs no implementation of the same algorithm with the same hyperparameters avoids:

- **the matrix multiplications** of every gradient step, in fp32: each layer's forward, and in the
  backward its weight gradient and (except for the first layer of a network whose input needs no
  gradient) its input gradient. They are timed here one by one with ``torch.mm``/``torch.bmm`` into
  preallocated outputs, on the task's own shapes (``vs_sb3.TASKS``: batch size, widths, twin critics
  as one batched multiply), and multiplied by the run's number of gradient steps;
- **PyTorch's per-operation dispatch**: the cheapest operation (an in-place add on 256 floats) is
  timed, and the operations of drlrun's own gradient step other than the matmuls are counted with
  ``torch.profiler``. That count is drlrun's, not a law of nature; the last column says how many
  such operations, at the cheapest cost, fit in what the target leaves after the matmuls and the
  environment's own stepping (timed on the vector env drlrun builds, no policy). Acting is not
  counted at all, so every bound here is generous.

The "best steps/s" column assumes nothing but matmuls and the environment ran; "best ratio" divides
it by SB3's measured steps/s (``--sb3-sps``, defaults: benchmarks/results/vs_sb3.md, one core).
"""

from __future__ import annotations

import argparse
import itertools
import time
from dataclasses import dataclass
from statistics import median

import numpy as np
import torch
from vs_sb3 import TASKS, Task

# SB3 2.9.2 pinned to one core, benchmarks/results/vs_sb3.md (2026-11-24)
SB3_SPS = {"ppo_cartpole": 7550.0, "dqn_cartpole": 1716.0, "sac_pendulum": 108.0, "ppo_lunar": 2105.0}
TARGETS = {"ppo_cartpole": 5.0, "dqn_cartpole": 4.0, "sac_pendulum": 4.0, "ppo_lunar": 3.0}
ENV_DIMS = {"CartPole-v1": (4, 2), "Pendulum-v1": (3, 1), "LunarLander-v3": (8, 4)}  # obs, actions


@dataclass(frozen=True)
class Mm:
    """One matmul [members x] (rows x inner) @ (inner x cols)."""

    rows: int
    inner: int
    cols: int
    members: int = 1


def layer_matmuls(sizes: list[int], batch: int, *, members: int = 1, forward: bool = True,
                  weight_grads: bool = True, input_grads: str = "hidden") -> list[Mm]:
    """The matmuls of an MLP with layer widths ``sizes`` on ``batch`` rows: its forward, then in the
    backward the weight gradients and the input gradients (``"hidden"``: all but the first layer's,
    ``"all"``: also the network input's, ``"none"``)."""
    out: list[Mm] = []
    pairs = list(itertools.pairwise(sizes))
    for i, (fan_in, fan_out) in enumerate(pairs):
        if forward:
            out.append(Mm(batch, fan_in, fan_out, members))
        if weight_grads:
            out.append(Mm(fan_in, batch, fan_out, members))
        if input_grads == "all" or (input_grads == "hidden" and i > 0):
            out.append(Mm(batch, fan_out, fan_in, members))
    return out


def training_rounds(task: Task, hp: dict) -> int:
    """Replay training rounds in a run: one when ``learning_starts`` is reached, then one every
    ``train_freq`` env steps (drlrun's ``offpolicy.due``)."""
    return 1 + (task.total_steps - hp["algo.learning_starts"]) // hp["algo.train_freq"]


def step_matmuls(task: Task) -> tuple[list[Mm], float]:
    """The matmuls of one gradient step of ``task`` and the number of gradient steps in a run."""
    hp = task.values
    obs, n_actions = ENV_DIMS[task.env]
    hidden = list(hp["network.hidden_sizes"])
    if task.algo == "ppo":  # actor and critic torsos stacked, then the two heads
        batch = hp["algo.batch_size"]
        mms = layer_matmuls([obs, *hidden], batch, members=2)
        mms += layer_matmuls([hidden[-1], n_actions], batch, input_grads="all")
        mms += layer_matmuls([hidden[-1], 1], batch, input_grads="all")
        rollout = hp["algo.n_steps"] * hp["env.num_envs"]
        steps = task.total_steps // rollout * hp["algo.n_epochs"] * -(-rollout // batch)
        return mms, steps
    batch = hp["algo.batch_size"]
    if task.algo == "dqn":  # online forward and backward, target forward
        q = [obs, *hidden, n_actions]
        mms = layer_matmuls(q, batch) + layer_matmuls(q, batch, weight_grads=False, input_grads="none")
        return mms, training_rounds(task, hp) * hp["algo.gradient_steps"]
    # SAC: a' ~ pi(s') and the twin target critics; the twin critics' update; the actor's update
    # through the (frozen) critics, whose input gradients are needed but not their weight gradients.
    actor, critic = [obs, *hidden], [obs + n_actions, *hidden, 1]
    heads = [hidden[-1], 2 * n_actions]  # mean and log-std heads, counted as one matmul
    no_grad = {"weight_grads": False, "input_grads": "none"}
    mms = layer_matmuls(actor, batch, **no_grad) + layer_matmuls(heads, batch, **no_grad)
    mms += layer_matmuls(critic, batch, members=2, **no_grad)
    mms += layer_matmuls(critic, batch, members=2)
    mms += layer_matmuls(actor, batch) + layer_matmuls(heads, batch, input_grads="all")
    mms += layer_matmuls(critic, batch, members=2, weight_grads=False, input_grads="all")
    return mms, training_rounds(task, hp) * hp["algo.gradient_steps"]


def time_us(fn, repeats: int = 300) -> float:
    for _ in range(20):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return median(samples) * 1e6


def matmul_us(mm: Mm) -> float:
    if mm.members == 1:
        a, b, c = torch.randn(mm.rows, mm.inner), torch.randn(mm.inner, mm.cols), torch.empty(mm.rows, mm.cols)
        return time_us(lambda: torch.mm(a, b, out=c))
    a, b = torch.randn(mm.members, mm.rows, mm.inner), torch.randn(mm.members, mm.inner, mm.cols)
    c = torch.empty(mm.members, mm.rows, mm.cols)
    return time_us(lambda: torch.bmm(a, b, out=c))


def env_step_us(task: Task) -> float:
    """One step of the task's vector env (random actions, preselected), as drlrun builds it."""
    from drlrun.config import EnvConfig
    from drlrun.envs import make_envs

    n = task.values["env.num_envs"]
    envs = make_envs(EnvConfig(id=task.env, num_envs=n), task.env, n)
    envs.reset(seed=0)
    actions = np.stack([envs.action_space.sample() for _ in range(1000)])
    i = iter(range(10**9))
    result = time_us(lambda: envs.step(actions[next(i) % 1000]), repeats=1000)
    envs.close()
    return result


MATMUL_OPS = {"aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm", "aten::linear", "aten::matmul"}


def drlrun_ops_per_step(task: Task) -> float:
    """aten operations in one of drlrun's gradient steps (forward, backward, clipping, optimizer),
    the matmuls left out (their time is the matmul column's)."""
    from torch.profiler import profile

    from drlrun.agent import BuildContext, EnvSpec
    from drlrun.algos import dqn, ppo, sac
    from drlrun.buffers.replay import UniformConfig
    from drlrun.nets import MLPConfig

    hp = task.values
    obs, n_actions = ENV_DIMS[task.env]
    net = MLPConfig(hidden_sizes=list(hp["network.hidden_sizes"]), activation=hp["network.activation"])
    batch = hp["algo.batch_size"]
    steps_per_call = 1
    if task.algo == "ppo":
        # A rollout of two minibatches where the task's rollout is longer than a minibatch (the
        # shuffle and the gathers then count), the rollout itself as one minibatch where it is not.
        steps_per_call = 2 if hp["algo.n_steps"] * hp["env.num_envs"] > batch else 1
        size = batch * steps_per_call
        spec = EnvSpec(task.env, 1, (obs,), "discrete", n_actions, ())
        agent = ppo.PPO(ppo.PPOConfig(n_steps=size, batch_size=batch, n_epochs=1, max_grad_norm=0.5),
                        BuildContext(spec, net, UniformConfig(), torch.device("cpu"), 10**6, 0))
        data = {"obs": torch.randn(size, obs), "actions": torch.randint(n_actions, (size,)).float(),
                "log_probs": torch.randn(size), "values": torch.randn(size), "advantages": torch.randn(size),
                "returns": torch.randn(size)}

        def step() -> None:
            agent.learn(data)
    else:
        if task.algo == "dqn":
            spec = EnvSpec(task.env, 1, (obs,), "discrete", n_actions, ())
            cfg = dqn.DQNConfig(batch_size=batch, learning_starts=0, max_grad_norm=10.0)
            agent = dqn.DQN(cfg, BuildContext(spec, net, UniformConfig(capacity=1000), torch.device("cpu"), 10**6, 0))
        else:
            low, high = -np.ones(n_actions, np.float32), np.ones(n_actions, np.float32)
            spec = EnvSpec(task.env, 1, (obs,), "continuous", 0, (n_actions,), low, high)
            agent = sac.SAC(sac.SACConfig(batch_size=batch, learning_starts=0),
                            BuildContext(spec, net, UniformConfig(capacity=1000), torch.device("cpu"), 10**6, 0))
        rng = np.random.default_rng(0)
        for _ in range(batch):
            o = rng.standard_normal((1, obs)).astype(np.float32)
            a = agent.act(o, explore=True)
            agent.observe(o, a, np.ones(1), o, np.zeros(1, bool), np.zeros(1, bool), np.ones(1, bool))
        sample = agent.buffer.sample(batch)

        def step() -> None:
            agent.gradient_step(sample)
    for _ in range(3):
        step()
    with profile() as prof:
        step()
    # Top-level operators only (called from Python or the autograd engine, not from another op).
    ops = sum(1 for e in prof.events() if e.name.startswith("aten::") and e.name not in MATMUL_OPS
              and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")))
    return ops / steps_per_call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    modelled = [name for name, task in TASKS.items() if task.env in ENV_DIMS]  # MLP tasks: frames are not modelled
    parser.add_argument("--tasks", default=",".join(modelled), help=f"comma-separated, from: {', '.join(modelled)}")
    parser.add_argument("--sb3-sps", default="", help="task=steps/s,... (default: the one-core table)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as drlrun's default)")
    args = parser.parse_args()
    unknown = [name for name in args.tasks.split(",") if name not in modelled]
    if unknown:
        parser.error(f"--tasks: {', '.join(unknown)} not modelled here; valid choices: {', '.join(modelled)}")
    torch.set_num_threads(args.threads)
    sb3 = dict(SB3_SPS)
    for item in filter(None, args.sb3_sps.split(",")):
        name, value = item.split("=")
        sb3[name] = float(value)
    a, b = torch.randn(256), torch.randn(256)
    op_us = time_us(lambda: a.add_(b), repeats=2000)
    print(f"torch {torch.__version__}, {args.threads} thread(s); cheapest op (in-place add, 256 floats): {op_us:.2f} us")
    print("| task | gradient steps | matmul ms/step | matmul s/run | env s/run | best steps/s | SB3 steps/s "
          "| best ratio | target | drlrun other ops/step | ops/step allowed at target |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.tasks.split(","):
        task = TASKS[name]
        mms, grad_steps = step_matmuls(task)
        step_ms = sum(matmul_us(mm) for mm in mms) / 1e3
        num_envs = task.values["env.num_envs"]
        env_s = env_step_us(task) * task.total_steps / num_envs / 1e6
        matmul_s = step_ms * grad_steps / 1e3
        best = task.total_steps / (matmul_s + env_s)
        ratio = best / sb3[name]
        budget_s = task.total_steps / (TARGETS[name] * sb3[name]) - matmul_s - env_s
        allowed = max(0.0, budget_s / grad_steps * 1e6 / op_us)
        print(f"| {name} | {grad_steps:,.0f} | {step_ms:.3f} | {matmul_s:.2f} | {env_s:.2f} | {best:,.0f} | "
              f"{sb3[name]:,.0f} | {ratio:.2f}x | {TARGETS[name]:g}x | {drlrun_ops_per_step(task):.0f} | {allowed:.0f} |")


if __name__ == "__main__":
    main()
