"""Replay that stores each frame once (drlrun/buffers/frames.py).

The stacks it rebuilds are checked by hand on a small example (an episode's first stack padded
with its first frame, as FrameStackObservation pads it; the stacks across an autoreset; the ring's
wrap-around), and against a plain replay buffer fed the whole stacks of a real
FrameStackObservation stream: with the same seed both must return the same batches, uniform and
prioritized, one-step and n-step. Its arrays cost about one frame per transition, and a
checkpoint round trip adopts the saved arrays instead of copying them.
"""

from __future__ import annotations

import dataclasses
import io

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers import FrameStackObservation

from drlrun.agent import EnvSpec
from drlrun.buffers.frames import (
    FrameReplayBuffer,
    FramesConfig,
    PrioritizedFrameReplayBuffer,
    PrioritizedFramesConfig,
    frame_storage,
)
from drlrun.buffers.prioritized import PrioritizedConfig, PrioritizedReplayBuffer
from drlrun.buffers.replay import ReplayBuffer, UniformConfig
from drlrun.errors import DrlrunError

CPU = torch.device("cpu")


def spec(shape: tuple[int, ...], num_envs: int = 1, env_id: str = "FrameCounter-v0") -> EnvSpec:
    return EnvSpec(env_id, num_envs, shape, "discrete", 3, (), obs_dtype="uint8")


def build(cls: type, cfg: object, env_spec: EnvSpec, n_step: int = 1, seed: int = 0) -> ReplayBuffer:
    return cls(cfg, env_spec, gamma=0.9, n_step=n_step, device=CPU, seed=seed, total_steps=10_000)


# ----------------------------------------------------------------------------- by hand
def stack(*values: int) -> np.ndarray:
    """A stack of 1x1 frames holding ``values`` (oldest first)."""
    return np.array(values, dtype=np.uint8).reshape(len(values), 1, 1)


def feed(buffer: ReplayBuffer, steps: list[tuple[np.ndarray, np.ndarray, bool, bool]]) -> None:
    """One env: (obs, next_obs, ended, valid) per step; every end is a termination."""
    for obs, next_obs, ended, valid in steps:
        flag = np.array([ended])
        buffer.add(obs[None], np.array([1]), np.array([1.0]), next_obs[None], flag, np.array([False]),
                   np.array([valid]))


def hand_stream() -> list[tuple[np.ndarray, np.ndarray, bool, bool]]:
    """Episode A shows frames 10, 11, 12, 13 and ends; the autoreset row (its next observation is
    episode B's first stack, frame 20 repeated); episode B shows 20, 21, 22."""
    return [
        (stack(10, 10, 10, 10), stack(10, 10, 10, 11), False, True),
        (stack(10, 10, 10, 11), stack(10, 10, 11, 12), False, True),
        (stack(10, 10, 11, 12), stack(10, 11, 12, 13), True, True),  # episode A ends
        (stack(10, 11, 12, 13), stack(20, 20, 20, 20), False, False),  # the autoreset row
        (stack(20, 20, 20, 20), stack(20, 20, 20, 21), False, True),
        (stack(20, 20, 20, 21), stack(20, 20, 21, 22), False, True),
    ]


def gathered(buffer: ReplayBuffer, rows: list[int]) -> tuple[np.ndarray, np.ndarray]:
    batch = buffer._gather(np.array(rows) * buffer.num_envs, None)
    return batch.obs.numpy()[:, :, 0, 0], batch.next_obs.numpy()[:, :, 0, 0]


def test_stacks_by_hand_across_an_episode_end():
    buffer = build(FrameReplayBuffer, FramesConfig(capacity=10), spec((4, 1, 1)))
    feed(buffer, hand_stream())
    obs, next_obs = gathered(buffer, [0, 1, 2, 4, 5])
    assert obs.tolist() == [[10, 10, 10, 10], [10, 10, 10, 11], [10, 10, 11, 12], [20, 20, 20, 20], [20, 20, 20, 21]]
    assert next_obs.tolist() == [[10, 10, 10, 11], [10, 10, 11, 12], [10, 11, 12, 13], [20, 20, 20, 21],
                                 [20, 20, 21, 22]]  # (the newest row's next frame: the side array)
    assert buffer.obs[:6, 0, 0, 0].tolist() == [10, 11, 12, 13, 20, 21]  # one frame per row
    assert buffer.age[:6, 0].tolist() == [3, 3, 3, 3, 0, 1]  # (the first row's stack is all history)


def test_stacks_by_hand_when_the_ring_has_wrapped():
    """Capacity 4: after six rows, rows 2-5 are kept; row 2's stack needs frames of rows 0 and 1,
    which the ring overwrote (history keeps them)."""
    buffer = build(FrameReplayBuffer, FramesConfig(capacity=4), spec((4, 1, 1)))
    feed(buffer, hand_stream())
    assert buffer.full and buffer.pos == 2 and buffer.obs[:, 0, 0, 0].tolist() == [20, 21, 12, 13]
    obs, next_obs = gathered(buffer, [2, 0, 1])  # ring rows: absolute rows 2, 4, 5
    assert obs.tolist() == [[10, 10, 11, 12], [20, 20, 20, 20], [20, 20, 20, 21]]
    assert next_obs.tolist() == [[10, 11, 12, 13], [20, 20, 20, 21], [20, 20, 21, 22]]


def test_a_first_row_in_the_middle_of_an_episode_keeps_its_whole_stack():
    """A run resumed without its buffer starts filling it mid-episode: the first stack's older
    frames were never rows of the buffer."""
    buffer = build(FrameReplayBuffer, FramesConfig(capacity=10), spec((4, 1, 1)))
    feed(buffer, [(stack(5, 6, 7, 8), stack(6, 7, 8, 9), False, True), (stack(6, 7, 8, 9), stack(7, 8, 9, 10), False, True)])
    obs, next_obs = gathered(buffer, [0, 1])
    assert obs.tolist() == [[5, 6, 7, 8], [6, 7, 8, 9]] and next_obs.tolist() == [[6, 7, 8, 9], [7, 8, 9, 10]]


def test_observations_that_are_not_frame_stacks_are_refused():
    with pytest.raises(DrlrunError, match=r"buffer=frames stores stacked frames .* shape \(4,\) .* buffer=uniform"):
        build(FrameReplayBuffer, FramesConfig(), EnvSpec("CartPole-v1", 1, (4,), "discrete", 2, ()))
    buffer = build(FrameReplayBuffer, FramesConfig(capacity=10), spec((4, 1, 1)))
    with pytest.raises(DrlrunError, match="not stacks of the last 4 frames"):  # zero padding, not the first frame's
        feed(buffer, [(stack(0, 0, 0, 5), stack(0, 0, 5, 6), False, True)] * 1
             + [(stack(0, 0, 5, 6), stack(0, 0, 0, 9), False, False)])
    buffer = build(FrameReplayBuffer, FramesConfig(capacity=10), spec((4, 1, 1)))
    with pytest.raises(DrlrunError, match="not the last step's next one"):  # a gap between steps
        feed(buffer, [(stack(1, 2, 3, 4), stack(2, 3, 4, 5), False, True), (stack(3, 4, 5, 6), stack(4, 5, 6, 7), False, True)])


# ----------------------------------------------------------------------------- against whole stacks
class FrameCounter(gym.Env):
    """2x2 uint8 frames holding (episode, step, copy); episodes of random length, ending by
    termination or truncation at random."""

    def __init__(self, copy: int = 0) -> None:
        self.observation_space = gym.spaces.Box(0, 255, (2, 2), np.uint8)
        self.action_space = gym.spaces.Discrete(3)
        self.copy, self.episode, self.t, self.length = copy, -1, 0, 1

    def _frame(self) -> np.ndarray:
        return np.array([[self.episode % 256, self.t], [self.copy, 7]], dtype=np.uint8)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.episode += 1
        self.t, self.length = 0, int(self.np_random.integers(1, 9))
        return self._frame(), {}

    def step(self, action):
        self.t += 1
        ended = self.t >= self.length
        truncated = ended and bool(self.np_random.random() < 0.3)
        return self._frame(), float(action) - 1.0 + self.t / 10, ended and not truncated, truncated, {}


def stream(num_envs: int, steps: int, skip: int = 0, seed: int = 0):
    """``steps`` vector steps of FrameStackObservation(4) copies in next-step autoreset, as the
    runner makes them: (obs, actions, rewards, next_obs, terminated, truncated, valid). The first
    ``skip`` are played but not returned (the buffer then starts mid-episode)."""
    envs = gym.vector.SyncVectorEnv([lambda i=i: FrameStackObservation(FrameCounter(i), 4) for i in range(num_envs)],
                                    autoreset_mode=AutoresetMode.NEXT_STEP)
    rng = np.random.default_rng(seed)
    obs, _ = envs.reset(seed=seed)
    valid = np.ones(num_envs, dtype=bool)
    out = []
    for t in range(skip + steps):
        actions = rng.integers(3, size=num_envs)
        next_obs, rewards, terminated, truncated, _ = envs.step(actions)
        if t >= skip:
            out.append((obs, actions, rewards, next_obs, terminated, truncated, valid))
        valid = ~(terminated | truncated)
        obs = next_obs
    envs.close()
    return out


def assert_same_batches(ours: ReplayBuffer, whole: ReplayBuffer, batches: int = 5) -> None:
    for _ in range(batches):
        a, b = ours.sample(64), whole.sample(64)
        for name in ("obs", "actions", "returns", "next_obs", "discounts", "weights"):
            left, right = getattr(a, name), getattr(b, name)
            if right is None:
                assert left is None
            else:
                torch.testing.assert_close(left, right, rtol=0, atol=0, msg=name)
        np.testing.assert_array_equal(a.indices, b.indices)
        if isinstance(ours, PrioritizedReplayBuffer):  # the same priorities for both, from the sample
            errors = torch.from_numpy(np.random.default_rng(len(a.indices)).random(len(a.indices)))
            ours.update_priorities(a.indices, errors)
            whole.update_priorities(b.indices, errors)


@pytest.mark.parametrize("n_step", [1, 3])
@pytest.mark.parametrize("skip", [0, 5])
@pytest.mark.parametrize(("kind", "frames_cfg", "whole_cfg"), [
    ((FrameReplayBuffer, ReplayBuffer), FramesConfig(capacity=60), UniformConfig(capacity=60)),
    ((PrioritizedFrameReplayBuffer, PrioritizedReplayBuffer), PrioritizedFramesConfig(capacity=60),
     PrioritizedConfig(capacity=60)),
], ids=["uniform", "prioritized"])
def test_batches_equal_a_plain_replay_of_the_whole_stacks(kind, frames_cfg, whole_cfg, n_step, skip):
    """3 copies, 20 rows each, over 70 steps: the ring wraps three times; episodes of 1 to 8
    steps end by termination or truncation throughout; checked while filling and once wrapped."""
    ours = build(kind[0], frames_cfg, spec((4, 2, 2), 3), n_step=n_step, seed=7)
    whole = build(kind[1], whole_cfg, spec((4, 2, 2), 3), n_step=n_step, seed=7)
    for t, transition in enumerate(stream(3, 70, skip=skip)):
        ours.add(*transition)
        whole.add(*transition)
        if t in (12, 69):
            assert_same_batches(ours, whole)
    assert ours.full and len(ours) == len(whole)


# ----------------------------------------------------------------------------- memory and checkpoints
def test_a_transition_costs_about_one_frame():
    atari = spec((4, 84, 84), env_id="ALE/Breakout-v5")
    frames = build(FrameReplayBuffer, FramesConfig(capacity=100_000), atari)
    whole = build(ReplayBuffer, UniformConfig(capacity=100_000), atari)
    per_transition = frames.nbytes / 100_000
    assert 84 * 84 < per_transition < 84 * 84 + 20  # the frame, an action, a reward, flags, an age
    assert whole.nbytes / frames.nbytes > 3.9  # four frames per transition there


def test_a_checkpoint_round_trip_adopts_the_saved_arrays_and_samples_the_same():
    buffer = build(PrioritizedFrameReplayBuffer, PrioritizedFramesConfig(capacity=30), spec((4, 2, 2), 2), n_step=3)
    for transition in stream(2, 40):
        buffer.add(*transition)
    file = io.BytesIO()
    torch.save(buffer.state_dict(), file)
    file.seek(0)
    state = torch.load(file, weights_only=True)
    restored = build(PrioritizedFrameReplayBuffer, PrioritizedFramesConfig(capacity=30), spec((4, 2, 2), 2), n_step=3)
    restored.load_state_dict(state)
    for name in FrameReplayBuffer._ARRAYS:  # the loaded arrays themselves, not copies of them
        assert np.shares_memory(getattr(restored, name), state[name].numpy()), name
    assert_same_batches(restored, buffer, batches=3)
    smaller = build(FrameReplayBuffer, FramesConfig(capacity=20), spec((4, 2, 2), 2))
    with pytest.raises(DrlrunError, match="replay buffer has obs of shape"):
        smaller.load_state_dict(state)


def test_uniform_and_prioritized_replay_store_ale_frames_once():
    atari = spec((4, 84, 84), env_id="ALE/Pong-v5")
    assert frame_storage(UniformConfig(capacity=500), atari) == FramesConfig(capacity=500)
    chosen = frame_storage(PrioritizedConfig(capacity=500, alpha=0.5), atari)
    assert chosen == PrioritizedFramesConfig(capacity=500, alpha=0.5)
    other = dataclasses.replace(atari, id="MinAtar/Breakout-v1")  # stacks drlrun did not make: kept
    assert frame_storage(UniformConfig(capacity=500), other) == UniformConfig(capacity=500)
