"""What a replay buffer costs: its arrays' bytes per transition, and the process's resident memory
before and after filling it.

    python benchmarks/memory.py                           # 1M LunarLander-v3 transitions, 16 envs
    python benchmarks/memory.py --env Pendulum-v1 --capacity 200000

The buffer is built exactly as DQN/SAC build it (through the BUFFERS registry) and filled through
``add`` with random transitions, so every page of its arrays is touched.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from drlrun.buffers.replay import UniformConfig
from drlrun.config import EnvConfig
from drlrun.envs import describe, make_envs, resolve_env_id
from drlrun.registry import BUFFERS


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="LunarLander-v3")
    parser.add_argument("--capacity", type=int, default=1_000_000)
    parser.add_argument("--num-envs", type=int, default=16)
    args = parser.parse_args()
    env_id = resolve_env_id(args.env)
    envs = make_envs(EnvConfig(id=env_id, num_envs=args.num_envs), env_id, args.num_envs)
    spec = describe(envs, env_id)
    envs.close()
    before = rss_mb()
    buffer = BUFFERS.build("uniform", UniformConfig(capacity=args.capacity), spec, gamma=0.99, n_step=1,
                           device=torch.device("cpu"), seed=0, total_steps=args.capacity)
    rng = np.random.default_rng(0)
    n = spec.num_envs
    obs = rng.standard_normal((n, *spec.obs_shape)).astype(np.float32)
    if spec.action_kind == "discrete":
        actions = rng.integers(spec.n_actions, size=n)
    else:
        actions = rng.uniform(-1, 1, size=(n, *spec.action_shape)).astype(np.float32)
    rewards = rng.standard_normal(n)
    flags = np.zeros(n, dtype=bool)
    valid = np.ones(n, dtype=bool)
    for _ in range(args.capacity // n):
        buffer.add(obs, actions, rewards, obs, flags, flags, valid)
    after = rss_mb()
    per = buffer.nbytes / args.capacity
    print(f"{env_id}: {args.capacity:,} transitions over {n} envs")
    print(f"  arrays: {buffer.nbytes / 2**20:.1f} MiB, {per:.1f} bytes per transition "
          f"(observation {int(np.prod(spec.obs_shape)) * 4} bytes, stored once)")
    print(f"  resident memory: {before:.0f} MiB before, {after:.0f} MiB after filling (+{after - before:.0f} MiB)")


if __name__ == "__main__":
    main()
