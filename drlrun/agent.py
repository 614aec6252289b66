"""The contract between the runner and an algorithm.

The runner owns the environment loop, evaluation, logging and checkpoints. An agent only acts,
observes and updates; it never sees Hydra, TensorBoard, files or wall time. A new algorithm is
one class with the methods of :class:`Agent` and a ``Config`` dataclass, declared in the
``drlrun.algos`` entry-point group (drlrun's own in its ``pyproject.toml``, a plug-in's in its
package's); ``drlrun/registry.py`` loads it and checks it against :class:`Agent`.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import torch

from drlrun.errors import DrlrunError


@dataclass(frozen=True)
class EnvSpec:
    """What an agent needs to know about the (vector) environment it trains on."""

    id: str
    num_envs: int
    obs_shape: tuple[int, ...]
    action_kind: str  # "discrete" or "continuous"
    n_actions: int  # number of discrete actions; 0 for continuous spaces
    action_shape: tuple[int, ...]
    action_low: np.ndarray | None = None
    action_high: np.ndarray | None = None
    # The dtype observations are stored and fed to the network in: float32 for flat ones; frames
    # (rank 3) keep the env's uint8 or bool, which a CNN scales itself (a quarter of the memory).
    obs_dtype: str = "float32"

    @property
    def obs_dim(self) -> int:
        return int(np.prod(self.obs_shape))

    @property
    def action_dim(self) -> int:
        return self.n_actions if self.action_kind == "discrete" else int(np.prod(self.action_shape))


@dataclass(frozen=True)
class BuildContext:
    """Everything the runner hands an algorithm's constructor besides its own config."""

    spec: EnvSpec
    network: Any  # the selected network's config dataclass
    buffer: Any  # the selected buffer's config dataclass
    device: torch.device
    total_steps: int
    seed: int

    STREAMS: ClassVar[tuple[str, ...]] = ("exploration", "replay", "minibatch", "evaluation")

    def rng_seed(self, stream: str) -> int:
        """The seed of one of the agent's independent random streams (``STREAMS``): child
        ``STREAMS.index(stream)`` of ``numpy.random.SeedSequence(seed)``, as ``spawn`` makes them.
        Exploration, replay sampling and minibatch order seeded with one integer would draw
        correlated numbers; spawned children are independent."""
        child = np.random.SeedSequence(self.seed, spawn_key=(self.STREAMS.index(stream),))
        return int(child.generate_state(1)[0])


class Agent(Protocol):
    """What the runner, drlrun-eval and drlrun-export call. Arrays are batched over the vector
    env's ``num_envs`` copies.

    Required: the class attributes ``Config`` (a dataclass whose ``name`` field defaults to the
    registry name) and ``action_spaces``, the constructor, and ``act``, ``observe``, ``update``,
    ``state_dict`` and ``load_state_dict``. Optional, with the default the runner uses when a
    class leaves them out (:data:`OPTIONAL_METHODS`): ``metrics``, ``check_config``,
    ``export_policy``, and ``state_dict``'s ``with_buffer`` keyword. :func:`check_agent_class`
    enforces this when a class is registered or loaded from an entry point.
    """

    Config: ClassVar[type]
    action_spaces: ClassVar[tuple[str, ...]]  # subset of ("discrete", "continuous")

    def __init__(self, cfg: Any, ctx: BuildContext) -> None: ...

    def act(self, obs: np.ndarray, *, explore: bool, deterministic: bool = True) -> np.ndarray:
        """Actions for a batch of observations.

        ``explore=True`` is the training call: exploration schedules, warm-up actions and running
        statistics may advance. ``explore=False`` is evaluation and must change no training
        state: the most likely action, or one sampled from the policy if not ``deterministic``."""

    def observe(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
                next_obs: np.ndarray, terminated: np.ndarray, truncated: np.ndarray,
                valid: np.ndarray) -> None:
        """One vector step. ``valid[i]`` is False where env ``i`` only reset (Gymnasium's
        next-step autoreset): that row is no transition and must not be learned from, and it
        closes env ``i``'s episode. That episode normally ended on the row before (terminated or
        truncated); after a resume that could not rebuild an episode in flight, the invalid row
        is the only mark of its end, at this row's ``obs`` (treat it as truncated there).
        ``next_obs`` is the true next observation, the final one where an episode ended."""

    def update(self) -> None:
        """Learn, if the agent's schedule says it is time (called after every ``observe``)."""

    def state_dict(self, *, with_buffer: bool = True) -> dict[str, Any]:
        """Everything needed to continue training: tensors and plain Python values only
        (checkpoints are loaded with ``weights_only=True``, never unpickled). ``with_buffer=False``
        may leave out a large replay buffer (``checkpoint.buffer=false`` and ``best.pt``); an
        agent whose ``state_dict`` takes no ``with_buffer`` always saves everything."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (also one saved without the buffer)."""

    # ----------------------------------------------------------------- optional
    def metrics(self) -> dict[str, float]:
        """Latest training metrics keyed by TensorBoard tag (``losses/...``); called at the log
        interval only. Default: none."""

    @staticmethod
    def check_config(cfg: Any, run: Any) -> None:
        """Refuse settings that cannot work together (raise ``drlrun.errors.DrlrunError`` naming
        the keys), before anything is built; ``run`` is the whole ``RunConfig``. Default: none."""

    def export_policy(self) -> torch.nn.Module:
        """A module mapping a batch of raw observations (float32; frames in ``EnvSpec.obs_dtype``)
        to the actions ``act(explore=False, deterministic=True)`` takes, depending on torch alone
        (see ``drlrun/policy.py``). drlrun-export needs it; without it, export names the algorithm."""


REQUIRED_METHODS = ("act", "observe", "update", "state_dict", "load_state_dict")
OPTIONAL_METHODS = ("metrics", "check_config", "export_policy")
ACTION_KINDS = ("discrete", "continuous")


def check_component_class(kind: str, name: str, cls: Any) -> None:
    """A network or buffer class: a ``Config`` dataclass whose ``name`` defaults to ``name``."""
    problems = _config_problems(name, cls)
    if problems:
        raise DrlrunError(f"{kind} {name!r} ({qualname(cls)}) {'; '.join(problems)}.")


def check_agent_class(kind: str, name: str, cls: Any) -> None:
    """Refuse an algorithm class that does not fulfil :class:`Agent`, naming everything it lacks."""
    problems = _config_problems(name, cls)
    spaces = getattr(cls, "action_spaces", None)
    if not (isinstance(spaces, tuple) and spaces and set(spaces) <= set(ACTION_KINDS)):
        problems.append(f"needs an 'action_spaces' tuple of {' and/or '.join(map(repr, ACTION_KINDS))} "
                        f"(has {spaces!r})")
    missing = [m for m in REQUIRED_METHODS if not callable(getattr(cls, m, None))]
    if missing:
        problems.append(f"lacks the required method(s) {', '.join(missing)}")
    act = getattr(cls, "act", None)
    if callable(act) and not takes_keyword(act, "explore"):
        problems.append("has an 'act' that takes no 'explore' keyword (act(obs, *, explore, deterministic=True))")
    not_callable = [m for m in OPTIONAL_METHODS if hasattr(cls, m) and not callable(getattr(cls, m))]
    if not_callable:
        problems.append(f"has {', '.join(not_callable)} that are not methods")
    if problems:
        raise DrlrunError(f"{kind} {name!r} ({qualname(cls)}) does not fulfil drlrun's agent contract "
                          f"(drlrun.agent.Agent): it {'; it '.join(problems)}.")


def check_agent_config(cls: Any, cfg: Any, run: Any) -> None:
    """The algorithm's own settings check (optional ``check_config``)."""
    check = getattr(cls, "check_config", None)
    if check is not None:
        check(cfg, run)


def agent_metrics(agent: Any) -> dict[str, float]:
    """The agent's latest metrics (optional ``metrics``; none by default)."""
    metrics = getattr(agent, "metrics", None)
    return dict(metrics()) if metrics is not None else {}


def agent_state(agent: Any, *, with_buffer: bool) -> dict[str, Any]:
    """``agent.state_dict(with_buffer=...)``, or ``state_dict()`` where the keyword is not taken."""
    if takes_keyword(agent.state_dict, "with_buffer"):
        return agent.state_dict(with_buffer=with_buffer)
    return agent.state_dict()


def _config_problems(name: str, cls: Any) -> list[str]:
    config = getattr(cls, "Config", None)
    if not (isinstance(config, type) and dataclasses.is_dataclass(config)):
        return ["needs a 'Config' dataclass of its settings (with a 'name' field)"]
    default = {f.name: f.default for f in dataclasses.fields(config)}.get("name", dataclasses.MISSING)
    if default != name:
        return [f"needs its Config's 'name' field to default to {name!r} (it is {default!r})"]
    return []


def takes_keyword(fn: Any, keyword: str) -> bool:
    """Whether ``fn`` accepts ``keyword`` (by name or through ``**kwargs``): the contract checks
    for optional keywords (agents' ``with_buffer``, loggers' ``close(status=, artifacts=)``)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return keyword in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def qualname(cls: Any) -> str:
    """``module:Class``, as an entry point names it (for contract errors)."""
    return f"{getattr(cls, '__module__', '?')}:{getattr(cls, '__qualname__', repr(cls))}"
