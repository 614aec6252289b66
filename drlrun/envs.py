"""Environment construction: id resolution, vector envs, and the spec an agent is built from.

Every vector env runs in Gymnasium's *next-step* autoreset mode, on purpose: it is the only mode
Gymnasium's native vectorised environments (e.g. CartPole's) implement, and it hands the true
final observation back on the step that ends an episode. The price is one extra step per
episode in which the env only resets; the runner marks that row invalid (see ``runner.py``).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import re
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from drlrun.agent import EnvSpec
from drlrun.config import EnvConfig
from drlrun.errors import DrlrunError, choices_hint

NATIVE_MIN_ENVS = 4


def resolve_env_id(env_id: str) -> str:
    """Return a registered Gymnasium id for ``env_id``.

    Accepts a registered id (``CartPole-v1``), ``module:env-id`` (the module is imported first,
    so it can register its environments) and ``module:EnvClass`` (the class is registered under
    the id ``module.EnvClass``).
    """
    if ":" in env_id:
        module_name, _, name = env_id.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise DrlrunError(f"env.id={env_id!r}: cannot import module {module_name!r} ({exc}).") from exc
        if name in gym.registry:
            return name
        target = getattr(module, name, None)
        if inspect.isclass(target) and issubclass(target, gym.Env):
            registered = f"{module_name}.{name}"
            if registered not in gym.registry:
                gym.register(id=registered, entry_point=target)
            return registered
        raise DrlrunError(
            f"env.id={env_id!r}: module {module_name!r} registers no environment id {name!r} and has no "
            f"gymnasium.Env subclass of that name. Use 'module:registered-id' or 'module:EnvClass'."
        )
    if env_id not in gym.registry:
        raise DrlrunError(f"Unknown environment id env.id={env_id!r}. {choices_hint(env_id, gym.registry.keys(), limit=25)}")
    return env_id


def _ignore_stop_signals(env: gym.Env) -> gym.Env:
    """Run inside each async worker process as it builds its env: ignore SIGINT and SIGTERM."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return env


def env_kwargs(cfg: EnvConfig) -> dict[str, Any]:
    """What ``gym.make`` gets for each copy: ``env.kwargs`` and the time-limit override."""
    kwargs: dict[str, Any] = dict(cfg.kwargs)
    if cfg.max_episode_steps is not None:
        kwargs["max_episode_steps"] = cfg.max_episode_steps
    return kwargs


def make_envs(cfg: EnvConfig, env_id: str, num_envs: int) -> gym.vector.VectorEnv:
    """A vector env of ``num_envs`` copies in next-step autoreset mode."""
    spec = gym.spec(env_id)
    kwargs = env_kwargs(cfg)
    mode = cfg.vectorization
    if mode == "auto":
        # Measured on CartPole: the native vector env costs ~26 us a step whatever num_envs is,
        # the sync one ~10 us per copy, so native wins from about 3 copies up.
        native = spec.vector_entry_point is not None and num_envs >= NATIVE_MIN_ENVS
        mode = "vector_entry_point" if native else "sync"
    elif mode == "native":
        if spec.vector_entry_point is None:
            raise DrlrunError(f"env.vectorization=native: env.id={env_id!r} has no native vector env. "
                              "Valid choices: auto, sync, async.")
        mode = "vector_entry_point"
    vector_kwargs = {} if mode == "vector_entry_point" else {"autoreset_mode": AutoresetMode.NEXT_STEP}
    # Async workers must leave Ctrl-C/SIGTERM to the runner (which checkpoints, then closes them):
    # a terminal sends SIGINT to the whole process group.
    wrappers = [_ignore_stop_signals] if mode == "async" else None
    try:
        envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=mode, vector_kwargs=vector_kwargs,
                            wrappers=wrappers, **kwargs)
    except gym.error.DependencyNotInstalled as exc:
        raise DrlrunError(
            f"env.id={env_id!r} needs an optional dependency: {exc}. For Box2D environments "
            "(LunarLander, BipedalWalker, CarRacing) install the extra: pip install 'drlrun[box2d]'."
        ) from exc
    except Exception as exc:  # an env constructor may reject env.kwargs with any exception
        raise DrlrunError(f"Could not create env.id={env_id!r} with env.kwargs={cfg.kwargs}: {exc}") from exc
    mode_used = envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
    if mode_used != AutoresetMode.NEXT_STEP:
        envs.close()
        raise DrlrunError(f"env.id={env_id!r}: its vector env uses autoreset mode {mode_used}; drlrun needs "
                          "NEXT_STEP. Set env.vectorization=sync.")
    return envs


def describe(envs: gym.vector.VectorEnv, env_id: str) -> EnvSpec:
    """The spec an agent is built from; unsupported spaces fail here, before any training."""
    obs_space = envs.single_observation_space
    act_space = envs.single_action_space
    if not isinstance(obs_space, gym.spaces.Box):
        raise DrlrunError(
            f"env.id={env_id!r} has observation space {obs_space}; drlrun's networks take Box "
            "(array) observations. Wrap the environment, e.g. with gymnasium.wrappers.FlattenObservation."
        )
    if isinstance(act_space, gym.spaces.Discrete):
        return EnvSpec(env_id, envs.num_envs, tuple(obs_space.shape), "discrete", int(act_space.n), ())
    if isinstance(act_space, gym.spaces.Box):
        return EnvSpec(env_id, envs.num_envs, tuple(obs_space.shape), "continuous", 0, tuple(act_space.shape),
                       act_space.low.astype(np.float32), act_space.high.astype(np.float32))
    raise DrlrunError(f"env.id={env_id!r} has action space {act_space}; drlrun supports Discrete and Box actions.")


def check_action_space(algo_name: str, algo_cls: type, spec: EnvSpec, all_algos: dict[str, type]) -> None:
    """Fail at once when the algorithm cannot act in this environment, naming ones that can."""
    if spec.action_kind in algo_cls.action_spaces:
        return
    fitting = sorted(name for name, cls in all_algos.items() if spec.action_kind in cls.action_spaces)
    need = " or ".join(algo_cls.action_spaces)
    raise DrlrunError(
        f"algo={algo_name} needs a {need} action space, but env.id={spec.id!r} has a {spec.action_kind} one. "
        f"Algorithms for {spec.action_kind} actions: {', '.join(fitting) or 'none installed'}."
    )


def solved_threshold(cfg: EnvConfig, env_id: str, target_return: float | None) -> float | None:
    """The return at which the task counts as solved: the target, env.threshold, or the spec's."""
    if target_return is not None:
        return target_return
    if cfg.threshold is not None:
        return cfg.threshold
    threshold = gym.spec(env_id).reward_threshold
    return None if threshold is None else float(threshold)


SLUG_MAX = 120  # file systems allow 255 bytes per name; job directories add a number in front


def slug(text: str) -> str:
    """A file-name-safe version of ``text`` (env ids may hold ':' or '/'; overrides may hold quotes).

    Names longer than ``SLUG_MAX`` (a search over ten hyperparameters) keep their beginning and
    end a short hash of the whole, so they stay unique and readable."""
    safe = re.sub(r"[^A-Za-z0-9._=,+-]+", "_", text)
    if len(safe) <= SLUG_MAX:
        return safe
    digest = hashlib.sha1(text.encode()).hexdigest()[:10]
    return f"{safe[:SLUG_MAX - 11]}-{digest}"
