"""The contract between the runner and an algorithm.

The runner owns the environment loop, evaluation, logging and checkpoints. An agent only acts,
observes and updates; it never sees Hydra, TensorBoard, files or wall time. A new algorithm is
one class with the methods of :class:`Agent` and a ``Config`` dataclass, registered with
``@ALGOS.register(name)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import torch


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
    """What the runner calls. Arrays are batched over the vector env's ``num_envs`` copies."""

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

    def metrics(self) -> dict[str, float]:
        """Latest training metrics keyed by TensorBoard tag; called at the log interval only."""

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain Python values only: checkpoints are loaded with weights_only=True."""

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    # Optional: ``export_policy() -> torch.nn.Module`` maps a float32 batch of raw observations to
    # the actions ``act(explore=False, deterministic=True)`` takes, depending on torch alone (see
    # drlrun/policy.py); drlrun-export needs it.
