"""Environment construction: id resolution, vector envs, and the spec an agent is built from.

Every vector env runs in Gymnasium's *next-step* autoreset mode, on purpose: it hands the true
final observation back on the step that ends an episode. The price is one extra step per
episode in which the env only resets; the runner marks that row invalid (see ``runner.py``).

Every copy is wrapped in :class:`SeededEpisodes`: each episode is reset with a seed made of the
copy's seed and the episode's number, so any episode in flight can be rebuilt later by resetting
its copy with that seed and replaying the actions taken in it (how a resumed run continues the
episodes its checkpoint interrupted, without ever cutting them).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from drlrun.agent import EnvSpec
from drlrun.config import EnvConfig
from drlrun.errors import DrlrunError, choices_hint
from drlrun.preprocess import atari_copy, atari_make_kwargs, learning_signals

RESTORE = "drlrun_restore"  # the reset option that rebuilds episodes in flight (SeededEpisodes)


def episode_seed(base: int, episode: int) -> int:
    """The reset seed of episode number ``episode`` of an env copy whose own seed is ``base``."""
    return int(np.random.SeedSequence([base, episode]).generate_state(1)[0])


def copy_seeds(seed: int, num_envs: int) -> list[int]:
    """One seed per env copy, from the run's seed and the copy's index: runs with neighbouring
    seeds share no copy seeds (``seed + i`` would give seed 1's copy 0 the episodes of seed 0's
    copy 1)."""
    return [int(s) for s in np.random.SeedSequence([seed, num_envs]).generate_state(num_envs)]


def reset_seed(envs: gym.vector.VectorEnv, seed: int) -> int | list[int]:
    """What ``envs.reset(seed=...)`` takes for a run seed: one seed per copy (:func:`copy_seeds`),
    or the seed itself for a native vector env, whose copies share one RNG."""
    return copy_seeds(seed, envs.num_envs) if getattr(envs, "drlrun_copies", False) else seed


class SeededEpisodes(gym.Wrapper):
    """Resets every episode with :func:`episode_seed` of the copy's seed and the episode number.

    A reset with a seed (the runner's first reset, or an evaluation's) starts the copy's episode
    count at 0; an autoreset (no seed) starts the next episode. Since a Gymnasium env is
    deterministic given its reset seed and its actions, this makes every episode repeatable.

    ``reset(seed=s, options={RESTORE: {s: (episode, actions, ended)}})`` rebuilds an episode in
    flight: it resets with that episode's seed and replays ``actions``. ``ended`` says the
    episode had just ended: the copy's next ``step`` then only starts the next episode and
    returns its first observation, as a next-step autoreset does.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.base: int | None = None
        self.episode = 0
        self.reset_next = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        restore = None
        if options and RESTORE in options:
            options = dict(options)
            restore = options.pop(RESTORE).get(seed)
        self.reset_next = False
        if seed is not None:
            self.base, self.episode = int(seed), 0
        elif self.base is None:  # never seeded: plain Gymnasium behaviour
            return self.env.reset(options=options)
        else:
            self.episode += 1
        if restore is None:
            return self.env.reset(seed=episode_seed(self.base, self.episode), options=options)
        self.episode, actions, self.reset_next = int(restore[0]), restore[1], bool(restore[2])
        obs, info = self.env.reset(seed=episode_seed(self.base, self.episode), options=options)
        try:
            for t, action in enumerate(actions):
                obs, _reward, terminated, truncated, info = self.env.step(action)
                if (terminated or truncated) and t < len(actions) - 1:
                    break  # it ended sooner than it did: the runner's check will find it differs
        except Exception as exc:  # a replay the env refuses is an episode that cannot be rebuilt
            info = {**info, "drlrun_replay_error": repr(exc)}
        return obs, info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict]:
        if self.reset_next:  # a rebuilt episode that had ended: this step is its autoreset
            obs, info = self.reset()
            return obs, 0.0, False, False, info
        return self.env.step(action)


class MinAtarEpisodes(gym.Wrapper):
    """MinAtar's sticky actions repeat the previous action, and its reset keeps the last action of
    the episode before: an episode would depend on the one before it, not on its seed and actions
    alone (which resuming and repeatable evaluations need). Each episode starts from no-op here."""

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        self.env.unwrapped.game.last_action = 0
        return self.env.reset(**kwargs)


def _minatar_copy(env: gym.Env, cfg: EnvConfig) -> gym.Env:
    return MinAtarEpisodes(env)


class Namespace(NamedTuple):
    """A Gymnasium namespace whose package registers its ids on request (Gymnasium 1.x no longer
    loads packages' registration entry points), and what each of its copies gets."""

    module: str  # imported to register the namespace's ids
    register: str | None  # the module's registering function; None: importing it registers them
    extra: str  # the drlrun extra that installs the package
    wrap: Callable[[gym.Env, EnvConfig], gym.Env]  # every copy, innermost (under SeededEpisodes)
    make_kwargs: Callable[[EnvConfig, dict[str, Any]], dict[str, Any]] | None = None  # gym.make's kwargs


NAMESPACES: dict[str, Namespace] = {
    "MinAtar": Namespace("minatar.gym", "register_envs", "minatar", _minatar_copy),
    # Atari through Gymnasium's AtariPreprocessing and FrameStackObservation (drlrun/preprocess.py)
    "ALE": Namespace("ale_py", None, "atari", atari_copy, atari_make_kwargs),
}


def namespace(env_id: str) -> str | None:
    return env_id.partition("/")[0] if "/" in env_id else None


def register_namespace(env_id: str) -> None:
    """Register the environments of ``env_id``'s namespace (``MinAtar/Breakout-v1``) if drlrun knows
    which package has them; name the extra to install when it is missing."""
    if namespace(env_id) not in NAMESPACES or env_id in gym.registry:
        return
    module_name, function, extra = NAMESPACES[namespace(env_id)][:3]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise DrlrunError(f"env.id={env_id!r} needs the {namespace(env_id)} package, which is not installed ({exc}). "
                          f"Install drlrun's {extra} extra: pip install 'drlrun[{extra}]'.") from exc
    if function is not None:
        getattr(module, function)()


def copy_wrappers(cfg: EnvConfig, env_id: str) -> list[Callable[[gym.Env], gym.Env]]:
    """What each copy of ``env_id`` gets between ``gym.make`` and :class:`SeededEpisodes`,
    innermost first: its namespace's wrapping (Atari's preprocessing), then the learning-only
    signals (``env.clip_rewards``, life loss; drlrun/preprocess.py)."""
    space = NAMESPACES.get(namespace(env_id) or "")
    wrappers: list[Callable[[gym.Env], gym.Env]] = []
    if space is not None:
        wrappers.append(functools.partial(space.wrap, cfg=cfg))
    signals = learning_signals(cfg, atari=namespace(env_id) == "ALE")
    if signals is not None:
        wrappers.append(signals)
    return wrappers


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
    register_namespace(env_id)
    if env_id not in gym.registry:
        raise DrlrunError(f"Unknown environment id env.id={env_id!r}. {choices_hint(env_id, gym.registry.keys(), limit=25)}")
    return env_id


def _ignore_stop_signals(env: gym.Env) -> gym.Env:
    """Run inside each async worker process as it builds its env: ignore SIGINT and SIGTERM."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return env


def env_kwargs(cfg: EnvConfig, env_id: str | None = None) -> dict[str, Any]:
    """What ``gym.make`` gets for each copy of ``env_id`` (default: ``env.id``): ``env.kwargs``
    and the time-limit override, as its namespace wants them (ALE: no frame skip of the env's own)."""
    kwargs: dict[str, Any] = dict(cfg.kwargs)
    if cfg.max_episode_steps is not None:
        kwargs["max_episode_steps"] = cfg.max_episode_steps
    space = NAMESPACES.get(namespace(env_id or cfg.id) or "")
    return space.make_kwargs(cfg, kwargs) if space is not None and space.make_kwargs is not None else kwargs


# Gymnasium's own environment families whose physics engine is an optional dependency: the module
# of the id's entry point -> the drlrun extra that installs the engine.
ENGINE_EXTRAS: dict[str, str] = {"gymnasium.envs.box2d": "box2d", "gymnasium.envs.mujoco": "mujoco"}


def missing_extra_hint(env_id: str) -> str:
    """What to install when creating ``env_id`` failed for want of an optional package: the drlrun
    extra of its engine (from the entry point's module) or of its namespace, where known."""
    entry_point = gym.spec(env_id).entry_point
    module = entry_point.partition(":")[0] if isinstance(entry_point, str) else ""
    extra = next((x for prefix, x in ENGINE_EXTRAS.items() if module.startswith(prefix + ".")), None)
    if extra is None and namespace(env_id) in NAMESPACES:
        extra = NAMESPACES[namespace(env_id)][2]
    if extra is None:
        known = sorted({*ENGINE_EXTRAS.values(), *(entry[2] for entry in NAMESPACES.values())})
        return (f"Install the package the message names (drlrun's extras for environments: "
                f"{', '.join(known)}; pip install 'drlrun[NAME]').")
    return f"Install drlrun's {extra} extra: pip install 'drlrun[{extra}]'."


def make_envs(cfg: EnvConfig, env_id: str, num_envs: int) -> gym.vector.VectorEnv:
    """A vector env of ``num_envs`` copies in next-step autoreset mode."""
    spec = gym.spec(env_id)
    kwargs = env_kwargs(cfg, env_id)
    mode = cfg.vectorization
    if mode == "ray":  # the copies in Ray actors, each actor's block built by this function, as sync
        from drlrun.envs_ray import RayVectorEnv

        return RayVectorEnv(cfg, env_id, num_envs, make_envs=make_envs, resolve=resolve_env_id)
    if mode == "auto":
        # Copies of their own (sync), wrapped in SeededEpisodes: the only way to rebuild the
        # episodes in flight when a run resumes. A native vector env (CartPole's) is faster from
        # about 4 copies, but its copies share one RNG and cannot be replayed one by one.
        mode = "sync"
    elif mode == "native":
        if spec.vector_entry_point is None:
            raise DrlrunError(f"env.vectorization=native: env.id={env_id!r} has no native vector env. "
                              "Valid choices: auto, sync, async, ray.")
        if copy_wrappers(cfg, env_id):  # (ale_py's own vector env preprocesses in its own way)
            raise DrlrunError(f"env.vectorization=native: env.id={env_id!r} needs wrappers on every copy (Atari "
                              "preprocessing, env.clip_rewards), which a native vector env cannot take. "
                              "Valid choices: auto, sync, async, ray.")
        mode = "vector_entry_point"
    vector_kwargs = {} if mode == "vector_entry_point" else {"autoreset_mode": AutoresetMode.NEXT_STEP}
    # Async workers must leave Ctrl-C/SIGTERM to the runner (which checkpoints, then closes them):
    # a terminal sends SIGINT to the whole process group.
    wrappers: list[Any] | None = None
    if mode != "vector_entry_point":
        wrappers = [SeededEpisodes, _ignore_stop_signals] if mode == "async" else [SeededEpisodes]
        wrappers[:0] = copy_wrappers(cfg, env_id)  # innermost, under SeededEpisodes
    try:
        envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=mode, vector_kwargs=vector_kwargs,
                            wrappers=wrappers, **kwargs)
    except gym.error.DependencyNotInstalled as exc:
        raise DrlrunError(f"env.id={env_id!r} needs an optional dependency that is not installed ({exc}). "
                          f"{missing_extra_hint(env_id)}") from exc
    except Exception as exc:  # an env constructor may reject env.kwargs with any exception
        raise DrlrunError(f"Could not create env.id={env_id!r} with env.kwargs={cfg.kwargs}: {exc}") from exc
    envs.drlrun_copies = mode != "vector_entry_point"  # copies of their own, in SeededEpisodes
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
    frames = len(obs_space.shape) == 3 and obs_space.dtype in (np.uint8, np.bool_)  # kept in the env's dtype
    dtype = obs_space.dtype.name if frames else "float32"
    if isinstance(act_space, gym.spaces.Discrete):
        return EnvSpec(env_id, envs.num_envs, tuple(obs_space.shape), "discrete", int(act_space.n), (),
                       obs_dtype=dtype)
    if isinstance(act_space, gym.spaces.Box):
        return EnvSpec(env_id, envs.num_envs, tuple(obs_space.shape), "continuous", 0, tuple(act_space.shape),
                       act_space.low.astype(np.float32), act_space.high.astype(np.float32), obs_dtype=dtype)
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
