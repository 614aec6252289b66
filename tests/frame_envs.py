"""A tiny pixel environment shaped like Atari after its preprocessing: what the agent sees (a
channels-first stack of small uint8 grey frames) differs from what the env renders (a larger
colour picture), so a test can tell which of the two a video recorded."""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import numpy as np

STACK, SIDE = 4, 12  # observations: [4, 12, 12] uint8, as FrameStackObservation(4) stacks frames
PICTURE = (48, 64)  # render(): height x width x 3, neither the observation's size nor a multiple of it
LENGTH = 20


class StackedFramesEnv(gym.Env):
    """A dot walks right across a 12x12 grey frame, one column per step, in a row chosen at reset
    from the seed; the last four frames are stacked. Action 1 earns 1 while the dot is in the left
    half, action 0 while it is in the right half. ``render()`` draws the dot in red on green, at
    4x scale, at a position inside a 48x64 picture."""

    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, render_mode: str | None = None) -> None:
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0, 255, (STACK, SIDE, SIDE), np.uint8)
        self.action_space = gym.spaces.Discrete(2)
        self.row, self.t = 0, 0
        self.stack = np.zeros((STACK, SIDE, SIDE), dtype=np.uint8)

    def _frame(self) -> np.ndarray:
        frame = np.zeros((SIDE, SIDE), dtype=np.uint8)
        frame[self.row, min(self.t, SIDE - 1)] = 255
        return frame

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.row, self.t = int(self.np_random.integers(SIDE)), 0
        self.stack[:] = self._frame()  # the first frame repeated, as a frame stack starts
        return self.stack.copy(), {}

    def step(self, action):
        reward = float(int(action) == int(min(self.t, SIDE - 1) < SIDE // 2))
        self.t += 1
        self.stack = np.concatenate([self.stack[1:], self._frame()[None]])
        return self.stack.copy(), reward, False, self.t >= LENGTH, {}

    def render(self) -> np.ndarray:
        picture = np.zeros((*PICTURE, 3), dtype=np.uint8)
        picture[..., 1] = 120
        y, x = 4 * self.row, 4 * min(self.t, SIDE - 1)
        picture[y:y + 4, x:x + 4] = (255, 0, 0)
        return picture
