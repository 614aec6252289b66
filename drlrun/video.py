"""Watching an agent: episodes rendered to MP4 files, to TensorBoard, or to a window.

MP4 files are written with moviepy (the ``video`` extra: ``pip install 'drlrun[video]'``, which
brings its own ffmpeg). TensorBoard shows videos as animated GIFs in its Images tab; they are
encoded here with Pillow (TensorBoard's own ``add_video`` needs the moviepy 1 API).
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from drlrun.errors import DrlrunError

GIF_MAX_FRAMES = 300  # TensorBoard GIFs are subsampled to this many frames ...
GIF_MAX_WIDTH = 320  # ... and this width, so that a 1000-step episode stays a few MB


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


def make_render_env(env_cfg: Any, env_id: str, render_mode: str) -> gym.Env:
    if render_mode == "rgb_array" and not has_display():
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # off-screen pygame, without SDL's complaints
    from drlrun.envs import env_kwargs

    try:
        env = gym.make(env_id, render_mode=render_mode, **env_kwargs(env_cfg))
    except Exception as exc:
        raise DrlrunError(f"env.id={env_id!r} cannot render with render_mode={render_mode!r}: {exc}") from exc
    modes = env.metadata.get("render_modes", [])
    if render_mode not in modes:
        env.close()
        raise DrlrunError(f"env.id={env_id!r} cannot render with render_mode={render_mode!r}. "
                          f"Its render modes: {', '.join(modes) or 'none'}.")
    return env


def play(agent: Any, env: gym.Env, seed: int, deterministic: bool) -> tuple[list[np.ndarray], float, int]:
    """One episode, acting as in evaluation. Returns the frames (for ``rgb_array`` envs), the
    return and the length."""
    frames: list[np.ndarray] = []
    obs, _ = env.reset(seed=seed)
    record = env.render_mode == "rgb_array"
    if record:
        frames.append(np.asarray(env.render()))
    total, length, done = 0.0, 0, False
    while not done:
        action = agent.act(np.asarray(obs, dtype=np.float32)[None], explore=False, deterministic=deterministic)[0]
        obs, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        length += 1
        done = bool(terminated or truncated)
        if record:
            frames.append(np.asarray(env.render()))
    return frames, total, length


def write_mp4(frames: list[np.ndarray], path: Path, fps: float) -> None:
    """Frames [H, W, 3] uint8 -> an H.264 MP4, written next to ``path`` and renamed into place."""
    from moviepy import ImageSequenceClip

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.mp4")
    try:
        ImageSequenceClip(list(frames), fps=fps).write_videofile(str(tmp), codec="libx264", audio=False,
                                                                 logger=None)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def gif_bytes(frames: list[np.ndarray], fps: float) -> tuple[bytes, int, int]:
    """An animated GIF of at most GIF_MAX_FRAMES frames of at most GIF_MAX_WIDTH pixels wide."""
    from PIL import Image

    stride = max(1, -(-len(frames) // GIF_MAX_FRAMES))
    images = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames[::stride]]
    width, height = images[0].size
    if width > GIF_MAX_WIDTH:
        height = round(height * GIF_MAX_WIDTH / width)
        width = GIF_MAX_WIDTH
        images = [im.resize((width, height)) for im in images]
    out = io.BytesIO()
    images[0].save(out, format="GIF", save_all=True, append_images=images[1:],
                   duration=round(1000 * stride / fps), loop=0)
    return out.getvalue(), height, width


def add_to_tensorboard(writer: Any, tag: str, frames: list[np.ndarray], fps: float, step: int) -> None:
    """The episode as an animated GIF in TensorBoard's Images tab."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    data, height, width = gif_bytes(frames, fps)
    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=data)
    writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)


def fps_of(env: gym.Env) -> float:
    return float(env.metadata.get("render_fps") or 30)


def record(agent: Any, env: gym.Env, seed: int, deterministic: bool, path: Path, writer: Any = None,
           tag: str = "", step: int = 0) -> float:
    """One episode to the MP4 ``path`` and, given a TensorBoard ``writer``, as a GIF under ``tag``;
    returns the episode's return."""
    frames, episode_return, _ = play(agent, env, seed, deterministic)
    fps = fps_of(env)
    write_mp4(frames, path, fps)
    if writer is not None:
        add_to_tensorboard(writer, tag, frames, fps, step)
    return episode_return
