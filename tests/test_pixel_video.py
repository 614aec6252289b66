"""Videos and exports of agents that act on pixels.

A video shows what the environment renders (``render_mode="rgb_array"``): the game, not the
frames the agent acts on, while the agent still gets its own observations from a copy built as
training's are. MinAtar's games are drawn by drlrun (its own render needs seaborn). drlrun-export
of a frames policy takes the frames as the env gives them: uint8 stacks, or MinAtar's booleans
(tests/test_pixels.py).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from frame_envs import LENGTH, PICTURE, SIDE, STACK

from drlrun.config import EnvConfig
from drlrun.envs import resolve_env_id
from drlrun.errors import DrlrunError
from drlrun.export import ExportArgs, export_run
from drlrun.video import (
    GIF_MAX_FRAMES,
    GIF_MAX_WIDTH,
    MINATAR_COLOURS,
    VIDEO_MIN_SIDE,
    GifSampler,
    Mp4Writer,
    make_render_env,
    minatar_picture,
    video_frame,
    write_mp4,
)

STACKED = ("env.id=frame_envs:StackedFramesEnv", "network=cnn", "network.channels=[8]", "network.kernels=[3]",
           "network.strides=[1]", "network.hidden_sizes=[16]", "log.progress=false", "device=cpu")


def mp4(path: Path) -> tuple[tuple[int, int], int, np.ndarray]:
    """(width, height), the number of frames (decoded and counted by ffmpeg) and the first frame
    of an MP4 file."""
    import imageio_ffmpeg
    from moviepy import VideoFileClip

    clip = VideoFileClip(str(path))
    try:
        size, first = tuple(clip.size), clip.get_frame(0)
    finally:
        clip.close()
    return size, imageio_ffmpeg.count_frames_and_secs(str(path))[0], first


# ----------------------------------------------------------------------------- frames for a video
def test_small_float_frames_become_uint8_rgb_scaled_up_by_a_whole_factor():
    grey = np.zeros((10, 10), dtype=np.float32)
    grey[2, 3] = 1.0
    frame = video_frame(grey)
    factor = -(-VIDEO_MIN_SIDE // 10)
    assert frame.dtype == np.uint8 and frame.shape == (10 * factor, 10 * factor, 3)
    block = frame[2 * factor:3 * factor, 3 * factor:4 * factor]
    assert (block == 255).all() and frame.sum() == block.sum()  # nearest neighbour: one sharp square


def test_frames_are_padded_to_even_sides_and_lose_their_alpha():
    rgba = np.full((211, 161, 4), 7, dtype=np.uint8)
    frame = video_frame(rgba)
    assert frame.shape == (212, 162, 3)  # H.264 (yuv420p) needs even sides
    assert (frame[:211, :161] == 7).all() and (frame[211] == 0).all() and (frame[:, 161] == 0).all()
    assert video_frame(np.zeros((210, 160, 3), dtype=np.uint8)).shape == (210, 160, 3)  # Atari's: as it is


def test_a_render_that_is_no_image_is_refused():
    with pytest.raises(DrlrunError, match=r"shape \(4, 12, 12, 5\)"):
        video_frame(np.zeros((4, 12, 12, 5)))
    with pytest.raises(DrlrunError, match="returned nothing"):
        video_frame(None)


def test_an_env_that_declares_no_rgb_render_is_refused_before_it_is_built():
    env_id = resolve_env_id("fake_envs:CountEnv")  # (its __init__ takes no render_mode)
    with pytest.raises(DrlrunError, match=r"cannot render with render_mode='rgb_array'. Its render modes: none"):
        make_render_env(EnvConfig(id=env_id), env_id, "rgb_array")


def test_a_minatar_state_is_drawn_one_colour_per_object_channel():
    class Game:
        def state(self) -> np.ndarray:
            s = np.zeros((10, 10, 4), dtype=bool)
            s[9, 4, 0] = True  # paddle
            s[5, 5, 1] = s[5, 5, 2] = True  # ball over its trail: the later channel wins
            return s

    class Env:
        unwrapped = type("Unwrapped", (), {"game": Game()})()

    picture = minatar_picture(Env())
    assert picture.shape == (10, 10, 3) and picture.dtype == np.uint8
    np.testing.assert_array_equal(picture[9, 4], MINATAR_COLOURS[0])
    np.testing.assert_array_equal(picture[5, 5], MINATAR_COLOURS[2])
    assert picture.sum() == MINATAR_COLOURS[0].sum() + MINATAR_COLOURS[2].sum()  # black elsewhere


@pytest.mark.parametrize("n", [7, 30])
def test_an_mp4_holds_every_frame(tmp_path, n):
    """(moviepy's ImageSequenceClip drops the last of 7 or 30 frames at 30 fps: float rounding)"""
    frames = [np.full((16, 16, 3), 8 * i, dtype=np.uint8) for i in range(n)]
    write_mp4(frames, tmp_path / "v.mp4", 30.0)
    size, n_frames, first = mp4(tmp_path / "v.mp4")
    assert size == (16, 16) and n_frames == n and int(first.mean()) <= 2


def test_a_failed_recording_leaves_no_file(tmp_path):
    path = tmp_path / "v.mp4"
    with pytest.raises(RuntimeError, match="env broke"), Mp4Writer(path, 30.0) as mp4:
        mp4(np.zeros((16, 16, 3), dtype=np.uint8))
        raise RuntimeError("env broke")
    assert list(tmp_path.iterdir()) == []  # neither the video nor its temporary file


def test_the_tensorboard_gif_keeps_evenly_spaced_frames_of_a_long_episode():
    gif = GifSampler()
    for i in range(1000):  # a long episode, frame i painted with its number
        gif(np.full((4, 640, 3), i % 256, dtype=np.uint8))
    assert gif.stride == 4 and len(gif.frames) == 250 <= GIF_MAX_FRAMES  # frames 0, 4, ..., 996
    assert [int(f[0, 0, 0]) for f in gif.frames] == [i % 256 for i in range(0, 1000, 4)]
    assert gif.frames[0].shape == (2, GIF_MAX_WIDTH, 3)  # shrunk, its aspect kept
    data, height, width = gif.gif(fps=50.0)
    assert data[:6] == b"GIF89a" and (height, width) == (2, GIF_MAX_WIDTH)


# ----------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def stacked_run(tmp_path_factory) -> Path:
    """A tiny PPO run on uint8 frame stacks ([4, 12, 12], channels first, as Atari's)."""
    root = tmp_path_factory.mktemp("stacked")
    run = root / "run"
    result = run_cli("algo=ppo", *STACKED, "total_steps=256", "algo.n_steps=64", "algo.batch_size=32",
                     "algo.n_epochs=1", "eval.interval=256", "eval.episodes=2", f"hydra.run.dir={run}", cwd=root)
    assert result.returncode == 0, result.stderr
    return run


def test_the_video_of_a_frames_agent_shows_the_rendered_game_not_its_input(stacked_run, tmp_path):
    result = run_cli(str(stacked_run), "episodes=1", "video=true", cwd=tmp_path, exe="drlrun-eval")
    assert result.returncode == 0, result.stderr
    [video] = json.loads((stacked_run / "eval.json").read_text())["videos"]
    size, n_frames, first = mp4(Path(video))
    factor = -(-VIDEO_MIN_SIDE // min(PICTURE))
    assert size == (PICTURE[1] * factor, PICTURE[0] * factor)  # the render's 48x64 picture, scaled up
    assert n_frames == LENGTH + 1  # the reset's picture and one per step of the whole episode
    assert first[..., 1].mean() > 100 and first[..., 2].mean() < 20  # green, as drawn: not grey frames


def test_a_uint8_frame_stack_policy_exports_and_takes_uint8_stacks(stacked_run, tmp_path):
    result = run_cli(str(stacked_run), cwd=tmp_path, exe="drlrun-export")
    assert result.returncode == 0, result.stderr
    info = json.loads((stacked_run / "export" / "policy.pt2.json").read_text())
    assert info["input"] == {"name": "obs", "dtype": "uint8", "shape": ["batch", STACK, SIDE, SIDE]}
    assert info["checked_observations"] == 100 and info["max_action_difference"] == 0.0
    assert "dtype=torch.uint8" in info["usage"]
    scripted = export_run(stacked_run, ExportArgs(format="torchscript", output=str(tmp_path / "policy.pt")))
    assert scripted["input"] == info["input"] and scripted["checked_observations"] == 100

    obs = np.random.default_rng(0).integers(0, 256, size=(5, STACK, SIDE, SIDE), dtype=np.uint8)
    policy = torch.export.load(str(stacked_run / "export" / "policy.pt2")).module()
    actions = policy(torch.from_numpy(obs)).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # (TorchScript is deprecated; still exported)
        scripted_policy = torch.jit.load(str(tmp_path / "policy.pt"))
    np.testing.assert_array_equal(scripted_policy(torch.from_numpy(obs)).numpy(), actions)
    assert actions.shape == (5,) and set(actions.tolist()) <= {0, 1}
    with pytest.raises(Exception, match="4"):  # a stack of another depth is not this policy's input
        policy(torch.from_numpy(obs[:, :3].copy()))


def test_training_records_videos_of_the_rendered_game_for_a_frames_agent(tmp_path):
    run = tmp_path / "run"
    result = run_cli("algo=ppo", *STACKED, "total_steps=128", "algo.n_steps=64", "algo.batch_size=32",
                     "algo.n_epochs=1", "eval.interval=64", "eval.episodes=1", "eval.video_every=2",
                     f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [video] = sorted((run / "videos").iterdir())
    assert video.name == "eval-step128.mp4"
    size, n_frames, _ = mp4(video)
    assert size[0] / size[1] == PICTURE[1] / PICTURE[0] and n_frames == LENGTH + 1


def test_a_minatar_video_shows_the_game_in_colour(tmp_path):
    pytest.importorskip("minatar")
    run = tmp_path / "run"
    result = run_cli("algo=dqn", "env=MinAtar-Breakout-v1", "total_steps=200", "algo.learning_starts=100",
                     "eval.interval=200", "eval.episodes=1", "log.progress=false", "device=cpu",
                     f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    result = run_cli(str(run), "episodes=1", "seed=5", "video=true", cwd=tmp_path, exe="drlrun-eval")
    assert result.returncode == 0, result.stderr
    report = json.loads((run / "eval.json").read_text())
    size, n_frames, first = mp4(Path(report["videos"][0]))
    assert size == (160, 160)  # MinAtar's 10x10 board, 16 pixels a cell
    assert n_frames == report["lengths"][0] + 1  # (the video's episode is the first evaluated one: seed 5)
    cell = first[8::16, 8::16].astype(int)  # each cell's centre, away from H.264's blur at the edges
    bricks = np.abs(cell - MINATAR_COLOURS[3]).sum(axis=-1) < 60
    assert bricks[1:4].all() and not bricks[4:].any()  # Breakout's three rows of bricks, in colour
