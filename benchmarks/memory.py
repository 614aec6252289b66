"""What a replay buffer costs: its arrays' bytes per transition, and the process's resident memory
before and after filling it.

    python benchmarks/memory.py                           # 1M LunarLander-v3 transitions, 16 envs
    python benchmarks/memory.py --env Pendulum-v1 --capacity 200000
    python benchmarks/memory.py --atari --checkpoint /tmp # Atari's frame stacks: frames vs whole stacks

The buffer is built exactly as DQN/SAC build it (through the BUFFERS registry) and filled through
``add`` with random transitions, so every page of its arrays is touched.

``--atari`` takes an Atari-shaped spec (stacks of 4 84x84 uint8 frames, as ``env.id=ALE/<Game>-v5``
gives them; ale-py is not needed) and compares the buffer that ``buffer=uniform`` becomes on them
(``frames``: each frame stored once) with the plain one (whole stacks, next observations from the
next row): bytes per transition and the GB for ``--capacity`` transitions from their arrays, then
the resident memory each takes as ``--fill`` transitions of a frame-stack stream go in. With
``--checkpoint DIR`` it also saves the filled frames buffer as drlrun's checkpoints do and loads it
back into a new buffer, reporting the peak resident memory of each beyond what was there before.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from drlrun import checkpoint
from drlrun.agent import EnvSpec
from drlrun.buffers.frames import frame_storage
from drlrun.buffers.replay import UniformConfig
from drlrun.config import EnvConfig
from drlrun.envs import describe, make_envs, resolve_env_id
from drlrun.registry import BUFFERS


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def peak_mb() -> float:
    """The resident high-water mark since the last :func:`reset_peak` (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # (Linux: VmHWM starts again from VmRSS)


def build(name: str, capacity: int, spec: EnvSpec) -> object:
    """The buffer DQN builds for ``buffer=name`` on ``spec`` (frame stacks of ALE ids: each frame once)."""
    cfg = frame_storage(UniformConfig(capacity=capacity), spec) if name == "auto" else UniformConfig(capacity=capacity)
    return BUFFERS.build(cfg.name, cfg, spec, gamma=0.99, n_step=1, device=torch.device("cpu"), seed=0,
                         total_steps=capacity)


def fill_frame_stacks(buffer: object, count: int, stack: int, frame: tuple[int, int]) -> None:
    """``count`` transitions of one env's frame-stack stream (each next stack the last one shifted
    by a new frame), with an episode end every 1,000 steps."""
    rng = np.random.default_rng(0)
    pool = rng.integers(0, 256, size=(997, *frame), dtype=np.uint8)  # (a prime: stacks never repeat in step)
    window = [pool[0]] * stack  # an episode's first stack: its first frame repeated
    actions, rewards, no = np.zeros(1, dtype=np.int64), np.zeros(1), np.zeros(1, dtype=bool)
    valid, ended = np.ones(1, dtype=bool), False
    obs = np.stack(window)[None]
    for t in range(1, count + 1):
        window = [pool[t % len(pool)]] * stack if ended else [*window[1:], pool[t % len(pool)]]
        next_obs = np.stack(window)[None]
        terminated = np.array([t % 1000 == 999])
        buffer.add(obs, actions, rewards, next_obs, terminated, no, valid)  # type: ignore[attr-defined]
        valid, ended, obs = ~terminated, bool(terminated[0]), next_obs


def atari(args: argparse.Namespace) -> None:
    spec = EnvSpec("ALE/Breakout-v5", 1, (4, 84, 84), "discrete", 4, (), obs_dtype="uint8")
    frame = int(np.prod(spec.obs_shape[1:]))
    print(f"Atari-shaped observations: stacks of {spec.obs_shape[0]} {spec.obs_shape[1]}x{spec.obs_shape[2]} "
          f"uint8 frames ({frame:,} bytes a frame), one env")
    sizes = {}
    for name, label in (("auto", "frames (buffer=uniform on ALE ids)"), ("uniform", "whole stacks (plain uniform)")):
        probe = build(name, 100_000, spec)  # (bytes per transition do not depend on the capacity)
        sizes[name] = probe.nbytes / 100_000  # type: ignore[attr-defined]
        del probe
        print(f"  {label}: {sizes[name]:,.1f} bytes per transition, {sizes[name] * args.capacity / 1e9:.2f} GB "
              f"({sizes[name] * args.capacity / 2**30:.2f} GiB) for {args.capacity:,} transitions")
    whole = int(np.prod(spec.obs_shape))
    print(f"  for comparison, a stack is {whole:,} bytes: stored as observation and next observation (SB3's "
          f"default replay) {2 * whole * args.capacity / 1e9:.1f} GB, once ({whole * args.capacity / 1e9:.1f} GB) "
          f"with SB3's optimize_memory_usage")
    for name, label in (("auto", "frames"), ("uniform", "whole stacks")):
        before = rss_mb()
        buffer = build(name, args.fill, spec)
        fill_frame_stacks(buffer, args.fill, spec.obs_shape[0], spec.obs_shape[1:])
        grown = rss_mb() - before
        print(f"  filled with {args.fill:,} transitions, {label}: +{grown:,.0f} MiB resident "
              f"({grown * 2**20 / args.fill:,.0f} bytes per transition)")
        if name == "auto" and args.checkpoint is not None:
            check_checkpoint(buffer, name, args.fill, spec, Path(args.checkpoint))
        del buffer


def check_checkpoint(buffer: object, name: str, capacity: int, spec: EnvSpec, folder: Path) -> None:
    """Peak resident memory of saving ``buffer`` as a checkpoint and of loading it into a new one."""
    size = buffer.nbytes / 2**20  # type: ignore[attr-defined]
    path = folder / "drlrun-memory-checkpoint.pt"
    reset_peak()
    before = rss_mb()
    checkpoint.save(path, {}, {"buffer": buffer.state_dict()})  # type: ignore[attr-defined]
    saved = peak_mb() - before
    del buffer
    fresh = build(name, capacity, spec)
    reset_peak()
    before = rss_mb()
    _header, state = checkpoint.load(path)
    fresh.load_state_dict(state["buffer"])  # type: ignore[attr-defined]
    loaded = peak_mb() - before
    path.unlink()
    print(f"  checkpoint of the filled frames buffer ({size:,.0f} MiB of arrays): saving peaked {saved:+,.0f} MiB "
          f"above the resident memory before it; loading into a new buffer peaked {loaded:+,.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="LunarLander-v3")
    parser.add_argument("--capacity", type=int, default=1_000_000)
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--atari", action="store_true", help="an Atari-shaped spec: frames against whole stacks")
    parser.add_argument("--fill", type=int, default=100_000, help="--atari: transitions filled to measure memory")
    parser.add_argument("--checkpoint", default=None, help="--atari: a folder to save and load a checkpoint in")
    args = parser.parse_args()
    if args.atari:
        atari(args)
        return
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
