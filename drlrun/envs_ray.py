"""``env.vectorization=ray``: one agent, its environment copies in Ray actors, here or on a cluster.

The ``num_envs`` copies are split into contiguous blocks over ``env.ray.actors`` actors. Each actor
holds its block as the very vector env ``make_envs`` builds for ``sync`` (every copy in
``SeededEpisodes``, next-step autoreset), steps the block as one batch per call and returns stacked
arrays. The driver sends every actor its slice of the actions at once, waits for all of them (one
round trip per vector step, the actors working in parallel), and joins the parts in copy order, the
infos merged as one ``SyncVectorEnv`` of all the copies would give them. Seeds reach the copies
exactly as ``SyncVectorEnv`` hands them out, so a run gives the same episodes, and so the same
training, as with ``env.vectorization=sync``; a resumed run rebuilds its episodes in flight inside
the actors with the same reset options.

When it pays: a vector step costs the slowest actor's share of the env work plus one Ray round
trip (a few hundred microseconds on one machine, more across a network). For CartPole, whose step
takes microseconds, the round trip is all there is and ``sync`` is far faster; for an env whose
step takes a millisecond or more, K actors on K cores come close to K times ``sync``
(``benchmarks/vector_envs.py`` measures both costs).

A failure never hangs a run: every wait is bounded by ``env.ray.timeout``, and an actor that died,
raised or did not answer becomes :class:`drlrun.interrupt.EnvsFailed`, naming the env copies it
held and the node it ran on (recorded when it started). The training loop then saves a checkpoint
of the last completed step and stops.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space, create_empty_array

from drlrun.config import EnvConfig, RayEnvConfig
from drlrun.errors import DrlrunError
from drlrun.interrupt import EnvsFailed

# (make_envs and resolve_env_id are handed in by drlrun.envs, which imports this module: the layers
# allow no import circle, and Ray sends the functions to the actors by reference.)
MakeEnvs = Callable[[EnvConfig, str, int], gym.vector.VectorEnv]
ResolveId = Callable[[str], str]

CLOSE_WAIT_S = 10.0  # how long a closing vector env waits for its actors to close their envs
PROBE_WAIT_S = 10.0  # the longest a cluster's address is given to answer a connection
START_WAIT_S = 120.0  # the least an actor is given to start: a worker process boots and imports torch


def import_ray() -> Any:
    """Ray, or a DrlrunError naming the extra that installs it."""
    try:
        import ray
    except ImportError as exc:
        raise DrlrunError(f"env.vectorization=ray needs Ray, which is not installed ({exc}). Install drlrun's "
                          "ray extra: pip install 'drlrun[ray]'.") from exc
    return ray


def connect(ray: Any, cfg: RayEnvConfig) -> None:
    """Join or start Ray unless this process already belongs to one (a test, a Ray sweep's job).

    ``address`` null starts a Ray of this process's own, sized to the actors, without a dashboard and
    logging warnings only (``address="local"``: never a cluster that RAY_ADDRESS or an earlier ``ray
    start`` names). It lives until the process exits, so the evaluation envs and a multirun's later
    jobs reuse it."""
    if ray.is_initialized():
        return
    common = {"logging_level": logging.WARNING, "log_to_driver": True}
    try:
        if cfg.address is None:
            ray.init(address="local", num_cpus=cfg.actors, include_dashboard=False, **common)
        else:
            check_reachable(cfg.address, min(cfg.timeout, PROBE_WAIT_S))
            ray.init(address=cfg.address, **common)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = ("start a local Ray" if cfg.address is None
                 else f"join the Ray cluster at env.ray.address={cfg.address!r}")
        raise DrlrunError(
            f"env.vectorization=ray: could not {where}: {one_line(exc).rstrip('.')}. Valid choices for "
            "env.ray.address: null (a Ray of this run's own), auto (the cluster of this machine: start one with "
            "'ray start --head', other nodes join with 'ray start --address=HEAD:6379'), or HOST:PORT of a running "
            "head.") from exc


def check_reachable(address: str, seconds: float) -> None:
    """A ConnectionError at once where nothing answers at the cluster's address: ``ray.init``
    itself retries for minutes. (``auto`` is resolved as Ray resolves it; where Ray finds no
    cluster at all, or reads the address otherwise, ``ray.init`` reports it.)"""
    target: str | None = address.removeprefix("ray://")
    if not address.startswith("ray://"):
        try:
            from ray._private.services import canonicalize_bootstrap_address

            target = canonicalize_bootstrap_address(address)
        except Exception:  # (another Ray's internals, or an address it cannot read)
            return
    if target is None:
        return
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=seconds):
            pass
    except (OSError, ValueError) as exc:
        raise ConnectionError(f"nothing answers at {target} ({exc})") from exc


def one_line(exc: BaseException, limit: int = 400) -> str:
    """An exception's text as one line of at most ``limit`` characters (Ray's run over many lines)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def blocks(num_envs: int, actors: int) -> list[tuple[int, int]]:
    """Contiguous ``[start, stop)`` blocks of copies, one per actor, sizes differing by at most one."""
    k = min(actors, num_envs)
    sizes = [num_envs // k + (i < num_envs % k) for i in range(k)]
    starts = np.cumsum([0, *sizes])
    return [(int(a), int(b)) for a, b in itertools.pairwise(starts)]


class EnvWorker:
    """Inside a Ray actor: a block of env copies, built exactly as ``make_envs`` builds them for
    ``sync``. Building errors are kept, not raised, so the driver can report them with the node."""

    def __init__(self, cfg: EnvConfig, env_id: str, count: int, make_envs: MakeEnvs, resolve: ResolveId) -> None:
        import ray

        self.where = {"ip": ray.util.get_node_ip_address(), "node_id": ray.get_runtime_context().get_node_id(),
                      "host": socket.gethostname(), "pid": os.getpid()}
        self.error: str | None = None
        self.envs: gym.vector.VectorEnv | None = None
        try:
            if env_id not in gym.registry:  # a module:Class or namespaced id registers in this process too
                resolve(cfg.id)
            self.envs = make_envs(dataclasses.replace(cfg, vectorization="sync"), env_id, count)
        except Exception as exc:
            self.error = str(exc) if isinstance(exc, DrlrunError) else f"{type(exc).__name__}: {exc}"

    def started(self) -> dict[str, Any]:
        """Where the actor runs, and its copies' spaces and metadata (or why they could not be built)."""
        if self.envs is None:
            return {"where": self.where, "error": self.error}
        envs = self.envs
        return {"where": self.where, "error": None, "observation": envs.single_observation_space,
                "action": envs.single_action_space, "metadata": envs.metadata, "render_mode": envs.render_mode}

    def reset(self, seeds: list[int | None], options: dict[str, Any] | None) -> tuple[Any, dict[str, Any]]:
        assert self.envs is not None
        return self.envs.reset(seed=seeds, options=options)

    def step(self, actions: Any) -> tuple[Any, ...]:
        assert self.envs is not None
        return self.envs.step(actions)

    def call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        assert self.envs is not None
        return self.envs.call(name, *args, **kwargs)

    def get_attr(self, name: str) -> tuple[Any, ...]:
        assert self.envs is not None
        return self.envs.get_attr(name)

    def set_attr(self, name: str, values: list[Any]) -> None:
        assert self.envs is not None
        self.envs.set_attr(name, values)

    def render(self) -> tuple[Any, ...]:
        assert self.envs is not None
        return self.envs.render()

    def close(self) -> None:
        if self.envs is not None:
            self.envs.close()


class RayVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` copies of ``env_id`` in Ray actors; steps, resets and infos as one SyncVectorEnv
    of them all (next-step autoreset). See the module's docstring."""

    def __init__(self, cfg: EnvConfig, env_id: str, num_envs: int, *, make_envs: MakeEnvs,
                 resolve: ResolveId) -> None:
        ray = import_ray()
        connect(ray, cfg.ray)
        self._ray = ray
        self.env_id, self.num_envs, self.timeout = env_id, num_envs, cfg.ray.timeout
        self.blocks = blocks(num_envs, cfg.ray.actors)
        self.where: list[dict[str, Any] | None] = [None] * len(self.blocks)
        self.failure: str | None = None  # once set, every call raises it: the actors are gone or stuck
        self.drlrun_copies = True  # copies of their own in SeededEpisodes (drlrun.envs.reset_seed)
        # Default resources (one CPU to be placed, none held) and SPREAD: actors go round the nodes
        # that have CPUs, and the evaluation envs' actors never wait for the training envs' CPUs.
        worker = ray.remote(EnvWorker).options(scheduling_strategy="SPREAD", max_restarts=0)
        self.actors = [worker.remote(cfg, env_id, stop - start, make_envs, resolve) for start, stop in self.blocks]
        try:
            started = self._gather([(i, actor.started.remote()) for i, actor in enumerate(self.actors)], "start",
                                   max(self.timeout, START_WAIT_S))
        except EnvsFailed as exc:
            self.close()
            raise DrlrunError(str(exc)) from exc
        for i, info in enumerate(started):
            self.where[i] = info["where"]
        broken = next((i for i, info in enumerate(started) if info["error"] is not None), None)
        if broken is not None:
            self.close()
            error = started[broken]["error"]
            raise DrlrunError(self._describe(broken, f"the environments could not be built there: {error}"))
        first = started[0]
        self.single_observation_space = first["observation"]
        self.single_action_space = first["action"]
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.metadata = {**first["metadata"], "autoreset_mode": AutoresetMode.NEXT_STEP}
        self.render_mode = first["render_mode"]
        # Each block's latest observations: a reset with a reset_mask returns the others unchanged.
        self._obs = [create_empty_array(self.single_observation_space, n=stop - start, fn=np.zeros)
                     for start, stop in self.blocks]

    def __repr__(self) -> str:
        return f"RayVectorEnv({self.env_id}, num_envs={self.num_envs}, actors={len(self.blocks)})"

    # ------------------------------------------------------------------ the vector env
    def reset(self, *, seed: int | Sequence[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """As SyncVectorEnv.reset over all copies: ``seed`` an int gives copy i ``seed + i``; a
        ``reset_mask`` option resets only the copies it marks (actors with none are left alone)."""
        n = self.num_envs
        seeds = [None] * n if seed is None else [seed + i for i in range(n)] if isinstance(seed, int) else list(seed)
        if len(seeds) != n:
            raise ValueError(f"If seeds are passed as a list the length must match num_envs={n} but got "
                             f"length={len(seeds)}.")
        options = dict(options) if options is not None else None
        mask = options.pop("reset_mask") if options is not None and "reset_mask" in options else None
        if mask is not None and (not isinstance(mask, np.ndarray) or mask.shape != (n,) or mask.dtype != np.bool_
                                 or not mask.any()):
            raise ValueError(f"options['reset_mask'] must be a numpy bool array of shape ({n},) with at least one "
                             f"True value, got {mask!r}.")
        calls = []
        for i, (start, stop) in enumerate(self.blocks):
            if mask is None:
                calls.append((i, self.actors[i].reset.remote(seeds[start:stop], options)))
            elif mask[start:stop].any():
                part = {**(options or {}), "reset_mask": mask[start:stop]}
                calls.append((i, self.actors[i].reset.remote(seeds[start:stop], part)))
        results = self._gather(calls, "reset")
        for (i, _), (obs, _info) in zip(calls, results, strict=True):
            self._obs[i] = obs
        infos = merge_infos([(self.blocks[i][0], info) for (i, _), (_obs, info) in zip(calls, results, strict=True)],
                            n)
        return join(self._obs), infos

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        calls = [(i, actor.step.remote(take(actions, start, stop)))
                 for i, (actor, (start, stop)) in enumerate(zip(self.actors, self.blocks, strict=True))]
        results = self._gather(calls, "step")
        self._obs = [r[0] for r in results]
        infos = merge_infos([(start, r[4]) for (start, _), r in zip(self.blocks, results, strict=True)], self.num_envs)
        return (join(self._obs), np.concatenate([r[1] for r in results]), np.concatenate([r[2] for r in results]),
                np.concatenate([r[3] for r in results]), infos)

    def render(self) -> tuple[Any, ...]:
        """Every copy's frame, in copy order (as SyncVectorEnv.render)."""
        return self._each("render", lambda actor: actor.render.remote())

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Call (or read, where not callable) ``name`` on every copy; one result per copy."""
        return self._each(f"call of {name!r}", lambda actor: actor.call.remote(name, args, kwargs))

    def get_attr(self, name: str) -> tuple[Any, ...]:
        return self._each(f"get_attr of {name!r}", lambda actor: actor.get_attr.remote(name))

    def set_attr(self, name: str, values: list[Any] | tuple[Any, ...] | Any) -> None:
        """Set ``name`` on every copy: one value for all, or a list or tuple of one per copy."""
        if not isinstance(values, (list, tuple)):
            values = [values] * self.num_envs
        if len(values) != self.num_envs:
            raise ValueError("Values must be a list or tuple with length equal to the number of environments. "
                             f"Got `{len(values)}` values for {self.num_envs} environments.")
        self._gather([(i, actor.set_attr.remote(name, list(values[start:stop])))
                      for i, (actor, (start, stop)) in enumerate(zip(self.actors, self.blocks, strict=True))],
                     f"set_attr of {name!r}")

    @property
    def np_random_seed(self) -> tuple[int, ...]:
        return self.get_attr("np_random_seed")

    def close_extras(self, **kwargs: Any) -> None:
        """Close the copies (briefly, where the actors still answer), then end the actors: a stuck or
        dead one must not hold up the run's exit."""
        ray = self._ray
        if not ray.is_initialized():
            return
        if self.failure is None:
            with contextlib.suppress(ray.exceptions.RayError, TimeoutError):
                ray.get([actor.close.remote() for actor in self.actors], timeout=min(self.timeout, CLOSE_WAIT_S))
        for actor in self.actors:
            with contextlib.suppress(Exception):  # (already gone)
                ray.kill(actor, no_restart=True)

    # ------------------------------------------------------------------ failures
    def _each(self, what: str, send: Callable[[Any], Any]) -> tuple[Any, ...]:
        """One call per actor; their per-copy tuples joined in copy order."""
        parts = self._gather([(i, send(actor)) for i, actor in enumerate(self.actors)], what)
        return tuple(item for part in parts for item in part)

    def _gather(self, calls: list[tuple[int, Any]], what: str, timeout: float | None = None) -> list[Any]:
        """The results of ``calls`` ((actor index, object ref)), or EnvsFailed naming the actor's
        copies and node: one that raised, died, or took longer than ``timeout`` (``env.ray.timeout``)."""
        if self.failure is not None:
            raise EnvsFailed(self.failure)
        ray = self._ray
        refs = [ref for _, ref in calls]
        timeout = self.timeout if timeout is None else timeout
        try:
            return ray.get(refs, timeout=timeout)
        except ray.exceptions.GetTimeoutError:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            late = next(i for i, ref in calls if ref not in ready)
            limit = f"env.ray.timeout={timeout:g} s" if timeout == self.timeout else f"{timeout:g} s"
            self.failure = self._describe(late, f"it did not finish a {what} within {limit} (a hung environment, or "
                                                "an overloaded or unreachable node, or a cluster without room for "
                                                "the actor; give slow environments a larger env.ray.timeout)")
        except ray.exceptions.RayError as exc:
            index, error = self._failed_call(calls, exc)
            self.failure = self._describe(index, self._reason(error, what))
        raise EnvsFailed(self.failure)

    def _failed_call(self, calls: list[tuple[int, Any]], exc: BaseException) -> tuple[int | None, BaseException]:
        """Which actor's call failed (Ray reports the first failed object of a list, not whose it is)."""
        ray = self._ray
        for i, ref in calls:
            try:
                ray.get(ref, timeout=0)
            except ray.exceptions.GetTimeoutError:
                continue
            except ray.exceptions.RayError as error:
                return i, error
        return None, exc

    def _reason(self, error: BaseException, what: str) -> str:
        ray = self._ray
        if isinstance(error, ray.exceptions.RayTaskError):  # the environment's own code raised
            cause = error.cause if error.cause is not None else error
            return f"the environment raised {type(cause).__name__} in a {what}: {one_line(cause)}"
        if isinstance(error, ray.exceptions.ActorUnavailableError):
            return f"the actor became unreachable during a {what} ({one_line(error, 200)})"
        if isinstance(error, ray.exceptions.RayActorError):
            return f"the actor died during a {what} (its process exited or was killed, or its node left the cluster)"
        return f"Ray failed during a {what}: {type(error).__name__}: {one_line(error)}"

    def _describe(self, index: int | None, reason: str) -> str:
        """The failure of actor ``index`` as one paragraph: its copies, its node, what happened."""
        if index is None:
            return f"env.vectorization=ray: the env copies of {self!r} failed: {reason}."
        start, stop = self.blocks[index]
        copies = f"env copy {start}" if stop - start == 1 else f"env copies {start}-{stop - 1}"
        where = self.where[index]
        if where is None:
            node = "a node not yet known (the actor had not started)"
        else:
            node = (f"node {where['ip']} (host {where['host']}, Ray node id {where['node_id'][:12]}, "
                    f"pid {where['pid']}){self._node_state(where['node_id'])}")
        return (f"env.vectorization=ray: {copies} of {self.num_envs} (env.id={self.env_id!r}), in Ray actor "
                f"{index + 1} of {len(self.blocks)} on {node}: {reason}.")

    def _node_state(self, node_id: str) -> str:
        """' (that node has left the cluster)' where Ray says so; nothing if it cannot tell."""
        try:
            alive = {node["NodeID"]: node["Alive"] for node in self._ray.nodes()}
        except Exception:
            return ""
        return " (that node has left the cluster)" if alive.get(node_id) is False else ""


# ---------------------------------------------------------------------------- batches
def take(actions: Any, start: int, stop: int) -> Any:
    """Copies ``start:stop`` of a batch of actions (arrays, or dicts and tuples of them)."""
    if isinstance(actions, dict):
        return {key: take(value, start, stop) for key, value in actions.items()}
    if isinstance(actions, tuple):
        return tuple(take(value, start, stop) for value in actions)
    return np.asarray(actions)[start:stop]


def join(parts: list[Any]) -> Any:
    """The blocks' observation batches as one batch (arrays, or dicts and tuples of them)."""
    first = parts[0]
    if isinstance(first, dict):
        return {key: join([p[key] for p in parts]) for key in first}
    if isinstance(first, tuple):
        return tuple(join([p[i] for p in parts]) for i in range(len(first)))
    return np.concatenate(parts)


def merge_infos(parts: list[tuple[int, dict[str, Any]]], num_envs: int) -> dict[str, Any]:
    """The blocks' vector infos ((first copy, info)) as one SyncVectorEnv of all copies gives them:
    every key an array over all copies (zeros, or None for objects, where a copy has none) beside
    its ``_key`` mask, nested dicts alike."""
    merged: dict[str, Any] = {}
    for start, info in parts:
        _place(merged, info, start, num_envs)
    return merged


def _place(into: dict[str, Any], info: dict[str, Any], start: int, num_envs: int) -> None:
    for key, value in info.items():
        if isinstance(value, dict):
            _place(into.setdefault(key, {}), value, start, num_envs)
            continue
        if key not in into:  # (the dtype of the first block that has the key, as Sync's first copy's)
            into[key] = (np.full(num_envs, None, dtype=object) if value.dtype == object
                         else np.zeros((num_envs, *value.shape[1:]), dtype=value.dtype))
        into[key][start:start + len(value)] = value
