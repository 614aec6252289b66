"""Watching an agent: episodes rendered to MP4 files, to TensorBoard, or to a window.

MP4 files are written with moviepy (the ``video`` extra: ``pip install 'drlrun[video]'``, which
brings its own ffmpeg). TensorBoard shows videos as animated GIFs in its Images tab; they are
encoded here with Pillow (TensorBoard's own ``add_video`` needs the moviepy 1 API).

A video shows the game as the environment renders it (``render_mode="rgb_array"``), never the
agent's input: for Atari the colour screen, not the 84x84 grey frame stack the agent acts on; for
MinAtar its objects drawn in colour. The env that plays it is one copy built as training's are,
so the agent still gets exactly the observations it learned from.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import load_env_creator

from drlrun.config import EnvConfig
from drlrun.envs import make_envs, namespace, reset_seed
from drlrun.errors import DrlrunError

GIF_MAX_FRAMES = 300  # TensorBoard GIFs are subsampled to this many frames ...
GIF_MAX_WIDTH = 320  # ... and this width, so that a 1000-step episode stays a few MB
VIDEO_MIN_SIDE = 160  # tiny game screens (MinAtar's 10x10) are scaled up to at least this many pixels


def require_moviepy(what: str) -> None:
    try:
        import moviepy  # noqa: F401
    except ImportError as exc:
        raise DrlrunError(f"{what} writes MP4 files with moviepy, which is not installed. "
                          "Install the extra: pip install 'drlrun[video]'.") from exc


def has_display() -> bool:
    return not sys.platform.startswith("linux") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def require_display() -> None:
    """``render=human`` opens a window: fail clearly where there is no display to open it on."""
    if not has_display():
        raise DrlrunError("render=human opens a window, but this machine has no display (neither DISPLAY nor "
                          "WAYLAND_DISPLAY is set). Use video=true to record MP4 files instead.")


def make_render_env(env_cfg: EnvConfig, env_id: str, render_mode: str) -> gym.vector.SyncVectorEnv:
    """One copy of the environment that renders with ``render_mode``, built exactly as training's
    copies are (``make_envs``: the same wrappers, e.g. a frame stack and its preprocessing, and the
    same per-episode seeding), so the agent sees the observations it was trained on while the
    video shows what the env renders: the game itself, not the agent's input."""
    if render_mode == "rgb_array" and not has_display():
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # off-screen pygame, without SDL's complaints
        # MuJoCo's default (GLFW) needs a display; EGL renders off-screen (Gymnasium reads this
        # at the first render, so setting it after MuJoCo was imported still counts)
        os.environ.setdefault("MUJOCO_GL", "egl")
    declared = declared_render_modes(env_id)
    if declared is not None and render_mode not in declared:  # (before passing a render_mode it cannot take)
        raise DrlrunError(f"env.id={env_id!r} cannot render with render_mode={render_mode!r}. "
                          f"Its render modes: {', '.join(declared) or 'none'}.")
    # sync: one copy of its own in this process, whose render() can be called; the rest as trained
    cfg = dataclasses.replace(env_cfg, vectorization="sync", kwargs={**env_cfg.kwargs, "render_mode": render_mode})
    try:
        env = make_envs(cfg, env_id, 1)
    except DrlrunError as exc:
        raise DrlrunError(f"env.id={env_id!r} cannot render with render_mode={render_mode!r}: {exc}") from exc
    modes = env.envs[0].metadata.get("render_modes", [])
    if render_mode not in modes:
        env.close()
        raise DrlrunError(f"env.id={env_id!r} cannot render with render_mode={render_mode!r}. "
                          f"Its render modes: {', '.join(modes) or 'none'}.")
    if render_mode == "rgb_array":  # fail here, cleanly, where rendering itself cannot work
        try:
            env.reset(seed=0)
            game_frame(env)
        except DrlrunError:
            env.close()
            raise
        except Exception as exc:
            env.close()
            hint = (" MuJoCo renders off-screen with MUJOCO_GL=egl (the default without a display) or "
                    "MUJOCO_GL=osmesa." if "mujoco" in str(gym.spec(env_id).entry_point) else "")
            raise DrlrunError(f"env.id={env_id!r} cannot render with render_mode='rgb_array' here: "
                              f"{exc!r}.{hint}") from exc
    return env


def declared_render_modes(env_id: str) -> list[str] | None:
    """The render modes the env's class declares (``metadata["render_modes"]``), or None where
    that cannot be known without building it (a factory function, an entry point that fails)."""
    creator: Any = gym.spec(env_id).entry_point
    try:
        if isinstance(creator, str):
            creator = load_env_creator(creator)
    except Exception:  # (building the env reports it properly)
        return None
    metadata = getattr(creator, "metadata", None) if inspect.isclass(creator) else None
    return None if not isinstance(metadata, dict) else list(metadata.get("render_modes", []))


MINATAR_COLOURS = np.array([  # one per object channel (Seaquest has the most: 10)
    (230, 230, 230), (255, 200, 40), (90, 150, 255), (240, 80, 60), (80, 200, 120),
    (200, 110, 230), (255, 140, 0), (40, 200, 200), (160, 160, 90), (250, 120, 170),
], dtype=np.uint8)


def minatar_picture(env: gym.Env) -> np.ndarray:
    """A MinAtar game as a picture: each of its object channels (paddle, ball, bricks, ...) in a
    colour of its own on black, a later channel drawn over an earlier one. MinAtar's own
    ``rgb_array`` render needs seaborn, which drlrun does not install."""
    state = np.asarray(env.unwrapped.game.state(), dtype=bool)  # H x W x channels
    picture = np.zeros((*state.shape[:2], 3), dtype=np.uint8)
    for channel in range(state.shape[-1]):
        picture[state[..., channel]] = MINATAR_COLOURS[channel % len(MINATAR_COLOURS)]
    return picture


# Namespaces whose games drlrun draws itself instead of calling render() (see each function).
GAME_PICTURES: dict[str, Callable[[gym.Env], np.ndarray]] = {"MinAtar": minatar_picture}


def game_frame(env: gym.vector.SyncVectorEnv) -> np.ndarray:
    """The game as it is now, as a video frame: the copy's ``render()`` (``rgb_array``), or its
    namespace's own picture; made uint8 RGB, large enough to watch, with even sides."""
    copy = env.envs[0]
    picture = GAME_PICTURES.get(namespace(copy.spec.id if copy.spec else ""))
    return video_frame(picture(copy) if picture else copy.render())


def video_frame(frame: Any) -> np.ndarray:
    """Any RGB(A) or grey frame, as uint8 or as floats in [0, 1], -> uint8 [H, W, 3], scaled up
    by a whole factor (nearest neighbour: pixels stay sharp) until its short side reaches
    ``VIDEO_MIN_SIDE``, then padded to even sides, which H.264 (yuv420p) requires."""
    if frame is None:
        raise DrlrunError("The environment's render() returned nothing with render_mode='rgb_array'; "
                          "it cannot be recorded.")
    array = np.asarray(frame)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise DrlrunError(f"The environment's render() returned an array of shape {array.shape}, not an image "
                          "(height x width x 1, 3 or 4 channels); it cannot be recorded.")
    if array.dtype != np.uint8:
        scale = 255.0 if array.dtype == np.bool_ or float(array.max(initial=0)) <= 1.0 else 1.0
        array = np.clip(array.astype(np.float64) * scale, 0, 255).round().astype(np.uint8)
    array = np.repeat(array, 3, axis=-1) if array.shape[-1] == 1 else array[..., :3]
    factor = max(1, -(-VIDEO_MIN_SIDE // min(array.shape[:2])))
    if factor > 1:
        array = array.repeat(factor, axis=0).repeat(factor, axis=1)
    height, width = array.shape[:2]
    if height % 2 or width % 2:
        array = np.pad(array, ((0, height % 2), (0, width % 2), (0, 0)))
    return np.ascontiguousarray(array)


def play(agent: Any, env: gym.vector.SyncVectorEnv, seed: int, deterministic: bool,
         on_frame: Callable[[np.ndarray], None] | None = None) -> tuple[float, int]:
    """One episode of the one-copy ``env`` (:func:`make_render_env`), acting as in evaluation: the
    agent gets the observations as training's envs give them. Each of the game's frames (the
    reset's, then one per step) goes to ``on_frame`` as it is rendered, so that recording a long
    episode (an Atari game of 27k steps) holds no more than one frame. Returns the return and the
    length."""
    obs, _ = env.reset(seed=reset_seed(env, seed))
    if on_frame is not None:
        on_frame(game_frame(env))
    total, length, done = 0.0, 0, False
    while not done:
        actions = agent.act(obs, explore=False, deterministic=deterministic)
        obs, rewards, terminated, truncated, _ = env.step(actions)
        total += float(rewards[0])
        length += 1
        done = bool(terminated[0] or truncated[0])
        if on_frame is not None:
            on_frame(game_frame(env))
    return total, length


class Mp4Writer:
    """Frames [H, W, 3] uint8 (even sides: :func:`video_frame`), one at a time, -> an H.264 MP4
    (yuv420p, which every player reads), written next to ``path`` and renamed into place only when
    complete. moviepy's ffmpeg writer gets every frame itself: a clip made of a list of them
    (``ImageSequenceClip``) loses the last frame to float rounding at some lengths (7 frames at
    30 fps come out as 6) and needs them all in memory."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path, self.fps = path, fps
        self.tmp = path.with_name(f".{path.stem}.tmp.mp4")
        self.writer: Any = None

    def __call__(self, frame: np.ndarray) -> None:
        if self.writer is None:
            from moviepy.video.io.ffmpeg_writer import FFMPEG_VideoWriter

            self.path.parent.mkdir(parents=True, exist_ok=True)
            height, width = frame.shape[:2]
            self.writer = FFMPEG_VideoWriter(str(self.tmp), (width, height), self.fps, codec="libx264",
                                             pixel_format="yuv420p")
        self.writer.write_frame(frame)

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        try:
            if self.writer is not None:
                self.writer.close()
                if exc_type is None:
                    os.replace(self.tmp, self.path)
        finally:
            self.tmp.unlink(missing_ok=True)


def write_mp4(frames: list[np.ndarray], path: Path, fps: float) -> None:
    """A list of frames to an MP4 file (:class:`Mp4Writer`)."""
    with Mp4Writer(path, fps) as mp4:
        for frame in frames:
            mp4(frame)


class GifSampler:
    """Keeps at most ``GIF_MAX_FRAMES`` evenly spaced frames of a stream of unknown length: every
    ``stride``-th, the stride doubling (and every other kept frame going) whenever the limit is
    reached. Frames are kept at most ``GIF_MAX_WIDTH`` pixels wide."""

    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []
        self.stride, self.seen = 1, 0

    def __call__(self, frame: np.ndarray) -> None:
        if self.seen % self.stride == 0:
            if len(self.frames) == GIF_MAX_FRAMES:
                self.frames = self.frames[::2]
                self.stride *= 2
            if self.seen % self.stride == 0:
                self.frames.append(shrink(frame))
        self.seen += 1

    def gif(self, fps: float) -> tuple[bytes, int, int]:
        """The kept frames as an animated GIF playing at the episode's pace; (bytes, height, width)."""
        from PIL import Image

        images = [Image.fromarray(f) for f in self.frames]
        out = io.BytesIO()
        images[0].save(out, format="GIF", save_all=True, append_images=images[1:],
                       duration=round(1000 * self.stride / fps), loop=0)
        return out.getvalue(), images[0].height, images[0].width


def shrink(frame: np.ndarray) -> np.ndarray:
    """A frame at most ``GIF_MAX_WIDTH`` pixels wide, its aspect kept."""
    height, width = frame.shape[:2]
    if width <= GIF_MAX_WIDTH:
        return frame
    from PIL import Image

    size = (GIF_MAX_WIDTH, max(1, round(height * GIF_MAX_WIDTH / width)))
    return np.asarray(Image.fromarray(frame).resize(size))


def add_to_tensorboard(writer: Any, tag: str, gif: GifSampler, fps: float, step: int) -> None:
    """The episode as an animated GIF in TensorBoard's Images tab."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    data, height, width = gif.gif(fps)
    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=data)
    writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)


ATARI_FRAMES_PER_SECOND = 60  # the console's (NTSC) frame rate: real-time play


def fps_of(env: gym.vector.SyncVectorEnv) -> float:
    """The video's frame rate: the copy's env's declared rate (30 where it says nothing), except
    under Atari preprocessing, where each recorded frame is one agent step of ``frame_skip``
    console frames, so real-time play is 60 / frame_skip frames per second (15 for the usual 4;
    ale-py's declared 30 would play it twice as fast)."""
    copy = env.envs[0]
    while isinstance(copy, gym.Wrapper):
        if isinstance(copy, gym.wrappers.AtariPreprocessing):
            return ATARI_FRAMES_PER_SECOND / copy.frame_skip
        copy = copy.env
    return float(env.envs[0].metadata.get("render_fps") or 30)


def record(agent: Any, env: gym.vector.SyncVectorEnv, seed: int, deterministic: bool, path: Path,
           writer: Any = None, tag: str = "", step: int = 0) -> float:
    """One episode to the MP4 ``path`` and, given a TensorBoard ``writer``, as a GIF under ``tag``;
    returns the episode's return. Frames are written as they come (:func:`play`)."""
    fps = fps_of(env)
    gif = GifSampler() if writer is not None else None
    with Mp4Writer(path, fps) as mp4:
        def on_frame(frame: np.ndarray) -> None:
            mp4(frame)
            if gif is not None:
                gif(frame)

        episode_return, _ = play(agent, env, seed, deterministic, on_frame)
    if gif is not None:
        add_to_tensorboard(writer, tag, gif, fps, step)
    return episode_return
