"""Environment stepping alone, per vector env mode (sync, async, ray), and the costs that decide
when ``env.vectorization=ray`` pays.

    python benchmarks/vector_envs.py                        # CartPole-v1 and HalfCheetah-v5, 8 copies, 2 actors
    python benchmarks/vector_envs.py --envs CartPole-v1 --seconds 3 --json out.json

Each vector env is built by ``drlrun.envs.make_envs`` exactly as a run builds it (every copy in
SeededEpisodes, next-step autoreset), reset with a run's seeds, warmed up (``--warmup`` steps, not
timed), then stepped with random actions drawn beforehand (no policy, no learning, drawing excluded)
for at least ``--seconds``. A step's time is the median over chunks of 32 steps, since on a shared
machine other work takes the cores in bursts; steps/s counts env steps (vector steps x copies).

The cost model (README, "Environments on Ray"), and how each input is measured here:

- a sync vector step of n copies takes ``T_sync(n) = o + n c``: ``c`` one copy's step, ``o`` the
  vector env's fixed part; a least-squares line through sync envs of 1, N/K and N copies;
- a batched Ray step with k actors takes ``r(k)`` when the actors do no work: k actors that hold no
  environment answer each step call at once with the arrays a block's step returns (observations,
  rewards, ends), so only calling, serialising and gathering are timed. Of it, the CPU time of the
  driver's stepping thread, ``d(k) = d0 + k d1`` (fitted over k = 1, 2, 4), is serial and grows with
  the actors; the rest of ``r(1)``, ``L = r(1) - d(1)``, is waiting on the other processes;
- with K actors, each on a core of its own, and the driver on another:
  ``T_ray(N, K) = L + d0 + K d1 + T_sync(ceil(N / K))``; the actors step side by side and the driver
  waits for the slowest. Across nodes add the network's round trip, ``net``.

``--predict`` (default on) prints what the model gives for a 16-core node (15 actors, one core left
to the driver) and for 4 such nodes, against sync on one core, from the inputs measured here. The
ray mode measured on this machine checks the model where K + 1 cores are free; where they are not
(K actors, the driver and Ray's own processes sharing fewer cores) the check says how far off it is.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from drlrun.config import EnvConfig, RayEnvConfig
from drlrun.envs import copy_seeds, make_envs, resolve_env_id

MODES = ("sync", "async", "ray")
ROUND_TRIP_ACTORS = (1, 2, 4)
CHUNK = 32  # steps timed together; a step's time is the median over chunks


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        return f"{fields['Model name'].strip()}, {fields['CPU(s)'].strip()} CPUs"
    except (OSError, subprocess.CalledProcessError, KeyError):
        return platform.processor() or "unknown CPU"


def random_actions(space: gym.Space, count: int, seed: int) -> list[Any]:
    space.seed(seed)
    return [space.sample() for _ in range(count)]


def timed(step: Callable[[int], Any], seconds: float, warmup: int) -> tuple[float, float]:
    """Wall seconds per call of ``step(i)`` (the median over chunks of CHUNK calls, for at least
    ``seconds`` after ``warmup`` calls) and the calling thread's CPU seconds per call (the mean; Ray's
    own threads in the driver, which wait and poll beside it, are not counted)."""
    for i in range(warmup):
        step(i)
    chunks: list[float] = []
    i, start, cpu_start = 0, time.perf_counter(), time.thread_time()
    while time.perf_counter() - start < seconds or len(chunks) < 5:
        t0 = time.perf_counter()
        for _ in range(CHUNK):
            step(i)
            i += 1
        chunks.append((time.perf_counter() - t0) / CHUNK)
    return float(np.median(chunks)), (time.thread_time() - cpu_start) / i


def time_steps(envs: gym.vector.VectorEnv, seconds: float, warmup: int) -> float:
    """Seconds per vector step of ``envs`` under random actions."""
    envs.reset(seed=copy_seeds(0, envs.num_envs))
    actions = random_actions(envs.action_space, 512, 0)
    return timed(lambda i: envs.step(actions[i % len(actions)]), seconds, warmup)[0]


def vector_env(env_id: str, mode: str, num_envs: int, actors: int) -> gym.vector.VectorEnv:
    cfg = EnvConfig(id=env_id, num_envs=num_envs, vectorization=mode, ray=RayEnvConfig(actors=actors))
    return make_envs(cfg, env_id, num_envs)


class Echo:
    """A Ray actor holding no environment: answers a step call at once with a block's arrays."""

    def __init__(self, obs_shape: tuple[int, ...], obs_dtype: str, copies: int) -> None:
        self.result = (np.zeros((copies, *obs_shape), dtype=obs_dtype), np.zeros(copies),
                       np.zeros(copies, dtype=bool), np.zeros(copies, dtype=bool), {})

    def step(self, actions: Any) -> tuple[Any, ...]:
        return self.result


def round_trip(space: gym.Space, actions: list[Any], k: int, num_envs: int, seconds: float,
               warmup: int) -> tuple[float, float]:
    """Wall and driver CPU seconds per batched step call to ``k`` Echo actors (N / k copies each),
    joined as RayVectorEnv joins its blocks."""
    import ray

    copies = math.ceil(num_envs / k)
    actors = [ray.remote(Echo).options(scheduling_strategy="SPREAD").remote(space.shape, space.dtype.name, copies)
              for _ in range(k)]
    try:
        ray.get([a.step.remote(None) for a in actors])
        blocks = [[np.asarray(a)[i * copies:(i + 1) * copies] for i in range(k)] for a in actions]

        def step(i: int) -> None:
            parts = ray.get([a.step.remote(b) for a, b in zip(actors, blocks[i % len(blocks)], strict=True)])
            np.concatenate([p[0] for p in parts])

        return timed(step, seconds, warmup)
    finally:
        for actor in actors:
            ray.kill(actor)


def measure(env_id: str, num_envs: int, actors: int, seconds: float, warmup: int) -> dict[str, Any]:
    """Every mode's seconds per vector step, and the model's inputs, for one environment."""
    env_id = resolve_env_id(env_id)
    per_step: dict[str, float] = {}
    for mode in MODES:
        envs = vector_env(env_id, mode, num_envs, actors)
        try:
            per_step[mode] = time_steps(envs, seconds, warmup)
            space, actions = envs.single_observation_space, random_actions(envs.action_space, 64, 1)
        finally:
            envs.close()
        print(f"  {env_id} {mode}: {num_envs / per_step[mode]:,.0f} steps/s", flush=True)
    block = math.ceil(num_envs / actors)
    sizes = sorted({1, block, num_envs})
    sync_times = {}
    for n in sizes:
        if n == num_envs:
            sync_times[n] = per_step["sync"]
            continue
        envs = vector_env(env_id, "sync", n, 1)
        try:
            sync_times[n] = time_steps(envs, seconds, warmup)
        finally:
            envs.close()
    c, o = np.polyfit(sizes, [sync_times[n] for n in sizes], 1)
    trips = {k: round_trip(space, actions, k, num_envs, seconds, warmup) for k in ROUND_TRIP_ACTORS}
    d1, d0 = np.polyfit(ROUND_TRIP_ACTORS, [trips[k][1] for k in ROUND_TRIP_ACTORS], 1)
    latency = trips[1][0] - trips[1][1]
    return {"env": env_id, "num_envs": num_envs, "actors": actors, "seconds_per_vector_step": per_step,
            "steps_per_second": {mode: num_envs / t for mode, t in per_step.items()},
            "sync_seconds_by_copies": {str(n): t for n, t in sync_times.items()}, "c": float(c), "o": float(o),
            "round_trip": {str(k): {"wall": w, "driver_cpu": d} for k, (w, d) in trips.items()},
            "d0": float(d0), "d1": float(d1), "L": float(latency),
            "t_ray_model": model_step(num_envs, actors, float(c), float(o), float(d0), float(d1), latency, 0.0)}


def model_step(n: int, k: int, c: float, o: float, d0: float, d1: float, latency: float, net: float) -> float:
    """Seconds per vector step of N copies over K actors, each on a core of its own (the model)."""
    return latency + net + d0 + k * d1 + o + math.ceil(n / k) * c


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} us"


def tables(results: list[dict[str, Any]], predict: bool, net: float) -> str:
    out = ["| env | copies | sync steps/s | async steps/s | ray steps/s | ray actors |",
           "|---|---|---|---|---|---|"]
    for res in results:
        sps = res["steps_per_second"]
        out.append(f"| {res['env']} | {res['num_envs']} | {sps['sync']:,.0f} | {sps['async']:,.0f} | "
                   f"{sps['ray']:,.0f} | {res['actors']} |")
    out += ["", "| env | c: a copy's step | o: sync step's fixed part | r(1), r(2), r(4): Ray round trip | "
                "d(k) = d0 + k d1: driver CPU | L = r(1) - d(1) | ray step, model / measured here |",
            "|---|---|---|---|---|---|---|"]
    for res in results:
        trip = res["round_trip"]
        out.append(f"| {res['env']} | {us(res['c'])} | {us(res['o'])} | "
                   f"{', '.join(us(trip[str(k)]['wall']) for k in ROUND_TRIP_ACTORS)} | "
                   f"{us(res['d0'])} + k {us(res['d1'])} | {us(res['L'])} | {us(res['t_ray_model'])} / "
                   f"{us(res['seconds_per_vector_step']['ray'])} |")
    if predict:
        out += ["", f"On paper (the model with the inputs above; across nodes plus net = {us(net)} per step, "
                    "assumed, not measured):", "",
                "| env | setup | copies | actors | sync on one core, steps/s | ray, steps/s | ray / sync |",
                "|---|---|---|---|---|---|---|"]
        for res in results:
            args = (res["c"], res["o"], res["d0"], res["d1"], res["L"])
            for setup, n, k, hop in (("this machine's test", res["num_envs"], res["actors"], 0.0),
                                     ("16-core node", 60, 15, 0.0), ("16-core node", 240, 15, 0.0),
                                     ("4 x 16-core nodes", 240, 60, net), ("4 x 16-core nodes", 960, 60, net)):
                sync = n / (res["o"] + n * res["c"])
                ray = n / model_step(n, k, *args, net=hop)
                out.append(f"| {res['env']} | {setup} | {n} | {k} | {sync:,.0f} | {ray:,.0f} | {ray / sync:.2f} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["CartPole-v1", "HalfCheetah-v5"])
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per measurement")
    parser.add_argument("--warmup", type=int, default=200, help="vector steps before timing starts")
    parser.add_argument("--net-us", type=float, default=200.0,
                        help="the network round trip added per step across nodes, in the predictions (assumed)")
    parser.add_argument("--no-predict", dest="predict", action="store_false", help="measurements only")
    parser.add_argument("--json", type=Path, help="also write every number here")
    args = parser.parse_args()
    if not 1 < args.actors < args.num_envs:
        parser.error("give 1 < --actors < --num-envs (the model needs sync envs of 1, N/K and N copies)")
    import ray

    load_before = os.getloadavg()
    ray.init(address="local", num_cpus=max(ROUND_TRIP_ACTORS), include_dashboard=False,
             logging_level=logging.WARNING)
    results = [measure(env_id, args.num_envs, args.actors, args.seconds, args.warmup) for env_id in args.envs]
    meta = {"cpu": cpu_name(), "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M"),
            "load_average_before": load_before, "load_average_after": os.getloadavg(), "ray": ray.__version__,
            "gymnasium": gym.__version__, "net_us_assumed": args.net_us}
    print(f"\n{meta['cpu']}, {meta['date']}, Ray {meta['ray']}, Gymnasium {meta['gymnasium']}; load average "
          f"{load_before[0]:.1f} before, {meta['load_average_after'][0]:.1f} after\n")
    print(tables(results, args.predict, args.net_us * 1e-6))
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2))


if __name__ == "__main__":
    main()
