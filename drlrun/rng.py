"""Python's, numpy's and torch's global random number generators: seeded once per run, saved in
every ``latest`` checkpoint, and shielded from evaluation and video.

A resumed run must draw the same numbers the uninterrupted one would, so a checkpoint records the
global RNG states and resuming puts them back. Evaluation and video (a stochastic policy samples
from torch's global generator) run inside :func:`rng_untouched`, so they never move training's
random streams: a run with evaluations every 1,000 steps learns what one with none learns.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Python's, numpy's and torch's global RNG states, as values ``weights_only`` loading takes."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)  # type: ignore[misc]
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state(),
                             "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextmanager
def rng_untouched() -> Iterator[None]:
    """Python's, numpy's and torch's global RNGs are as they were before the block: evaluation
    and video (a stochastic policy samples from torch's global generator) do not move training's."""
    saved = rng_state()
    try:
        yield
    finally:
        set_rng_state(saved)
