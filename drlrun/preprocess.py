"""What an env copy shows the agent and what the agent learns from, beyond the env's own signals.

**Atari (``ALE/`` ids), through Gymnasium's own wrappers.** Each copy is, innermost first::

    gym.make(id, frameskip=1)             # ale_py's env, one emulator frame per step; its own sticky
                                          # actions stay (v5: repeat_action_probability=0.25)
    AtariPreprocessing(noop_max=30,       # up to 30 no-ops after each reset (seeded: repeatable)
                       frame_skip=4,      # the action repeated for 4 frames, each one sticky on its
                                          # own as in v5's built-in skip; max-pool of the last two
                       screen_size=84)    # 84x84 grayscale uint8
    FrameStackObservation(4)              # the last 4 frames, channels first: (4, 84, 84); an
                                          # episode's first stack repeats its first frame
    LearningSignals                       # clipped reward / life loss for learning (below)
    SeededEpisodes                        # (drlrun/envs.py) outermost, as for every copy

The frame skip is AtariPreprocessing's, not the env's: v5 skips 4 frames itself, and doing both
would skip 16. ``env.atari.*`` sets the numbers (drlrun/config.py, AtariConfig); the id's own
kwargs (sticky actions, ``full_action_space``, game mode) go through ``env.kwargs``.

**Learning-only signals.** ``env.clip_rewards`` (the Nature DQN's reward clipping) and
``env.atari.terminal_on_life_loss`` change what the agent learns from, never what is scored:
:class:`LearningSignals` puts the clipped reward and the 'episode ended for learning' flag into
each step's info (keys :data:`LEARN_REWARD` and :data:`LEARN_TERMINATED`), the training loop
hands them to the agent, and episode returns, logged returns and evaluations keep the env's own
rewards and whole games. A lost life is learnt as an end while the game goes on, as in the Nature
DQN: Gymnasium's ``AtariPreprocessing(terminal_on_life_loss=True)`` would instead end the episode
and restart the game, so every score would be a first life's.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

from drlrun.config import AtariConfig, EnvConfig
from drlrun.errors import DrlrunError

LEARN_REWARD = "drlrun_learn_reward"  # info key: the reward the agent learns from, where it differs
LEARN_TERMINATED = "drlrun_learn_terminated"  # info key: the end flag the agent learns from, where it differs


class LearningSignals(gym.Wrapper):
    """Adds to each step's info what the agent learns from where it differs from what the env
    scores: ``sign(reward)`` (``clip_rewards``) and ``terminated or a life was lost``
    (``life_loss``; the env must report ``lives`` in its info, as ale_py's envs do).

    Its only state, the lives at the last step, follows from the episode's seed and actions, so a
    resumed run's replay of the episode rebuilds it."""

    def __init__(self, env: gym.Env, *, clip_rewards: bool, life_loss: bool) -> None:
        super().__init__(env)
        self.clip_rewards, self.life_loss = clip_rewards, life_loss
        self.lives = 0

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        if self.life_loss:
            self.lives = int(info["lives"])
        return obs, info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = dict(info)
        if self.clip_rewards:
            info[LEARN_REWARD] = float(np.sign(reward))
        if self.life_loss:
            lives = int(info["lives"])
            info[LEARN_TERMINATED] = bool(terminated) or lives < self.lives
            self.lives = lives
        return obs, reward, terminated, truncated, info


def learning_signals(cfg: EnvConfig, atari: bool) -> Callable[[gym.Env], gym.Env] | None:
    """The per-copy wrapper (``env -> env``) that gives the agent the learning signals ``cfg``
    asks for, or None where the agent learns from the env's own. (A partial of the class, not a
    closure, so that async workers can unpickle it.) ``env.atari.*`` set for an env that is not
    an ALE id would be ignored: it is refused."""
    if not atari:
        changed = [f.name for f in dataclasses.fields(AtariConfig)
                   if getattr(cfg.atari, f.name) != getattr(AtariConfig(), f.name)]
        if changed:
            raise DrlrunError(f"env.atari.{changed[0]}={getattr(cfg.atari, changed[0])!r} sets Atari preprocessing, "
                              f"which only ALE ids get (env.id=ALE/<Game>-v5); env.id={cfg.id!r} is not one.")
    life_loss = atari and cfg.atari.terminal_on_life_loss
    if not (cfg.clip_rewards or life_loss):
        return None
    return functools.partial(LearningSignals, clip_rewards=cfg.clip_rewards, life_loss=life_loss)


# --------------------------------------------------------------------------- Atari
def stacks_frames(env_id: str) -> bool:
    """Whether drlrun stacks the frames of ``env_id``'s copies itself (ALE ids: FrameStackObservation),
    so that a replay buffer may keep each frame once (drlrun/buffers/frames.py)."""
    return env_id.startswith("ALE/")


def atari_make_kwargs(cfg: EnvConfig, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``gym.make``'s kwargs for an ALE copy: no frame skip of the env's own (AtariPreprocessing
    skips), and ``env.max_episode_steps`` counted in agent steps, as for every other env (a
    time limit wrapped around the frame-by-frame env would count emulator frames)."""
    try:
        import cv2  # noqa: F401  (AtariPreprocessing resizes with OpenCV)
    except ImportError as exc:
        raise DrlrunError(f"env.id={cfg.id!r}: Atari preprocessing resizes frames with OpenCV, which is not "
                          f"installed ({exc}). Install drlrun's atari extra: pip install 'drlrun[atari]'.") from exc
    if "frameskip" in kwargs:
        raise DrlrunError(f"env.kwargs.frameskip={kwargs['frameskip']!r}: ALE ids skip frames in Gymnasium's "
                          "AtariPreprocessing, so the env itself runs frame by frame. Set env.atari.frame_skip "
                          "instead.")
    out = {**kwargs, "frameskip": 1}
    steps = out.pop("max_episode_steps", None)
    if steps is not None:
        out["max_num_frames_per_episode"] = steps * cfg.atari.frame_skip
    return out


def atari_copy(env: gym.Env, cfg: EnvConfig) -> gym.Env:
    """One ALE copy's preprocessing, in the order of the module docstring."""
    a = cfg.atari
    env = AtariPreprocessing(env, noop_max=a.noop_max, frame_skip=a.frame_skip, screen_size=a.screen_size,
                             terminal_on_life_loss=False, grayscale_obs=True, grayscale_newaxis=False,
                             scale_obs=False)
    return FrameStackObservation(env, a.frame_stack)
