"""``drlrun-eval RUN_DIR [checkpoint=last|best|PATH] [episodes=N] [deterministic=true] [seed=S]
[video=true] [render=human]``: evaluate a trained agent on fresh seeds, watch it, record it.

The agent is rebuilt from the run's own saved configuration (``.hydra/config.yaml``, or the
settings stored in its checkpoint) and loaded from the chosen checkpoint, normalisation
statistics included and frozen, so it acts exactly as in training's evaluations. A checkpoint
made for another algorithm, environment or network is refused, naming both values.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from drlrun import checkpoint
from drlrun.build import Trained, load_trained
from drlrun.commands import run_command
from drlrun.config import param
from drlrun.tracking import attach

EVAL_CLI_SEED_OFFSET = 2_000_006  # drlrun-eval's default seeds: neither training's nor its evaluations'


@dataclass
class EvalArgs:
    """The ``key=value`` arguments of drlrun-eval."""

    checkpoint: str = param("last", help="last (the policy training ended with, which the run's final "
                             "evaluation scored), best (its best evaluation), or a checkpoint file")
    episodes: int = param(10, ge=1, help="episodes to evaluate")
    deterministic: bool = param(True, help="the most likely action (true) or a sampled one (false)")
    seed: int | None = param(None, ge=0, help="the evaluation's seed, from which every episode's is made; "
                                               "default: fresh seeds, used neither in training nor in its "
                                               "evaluations (the run's seed + 1000003 repeats its evaluations)")
    device: str = param("cpu", help="cpu, cuda, cuda:N or auto")
    video: bool = param(False, help="record episodes to MP4 files in RUN_DIR/videos")
    video_episodes: int = param(1, ge=1, help="episodes to record with video=true")
    tensorboard: bool = param(False, help="with video=true: also add the videos to the run's TensorBoard")
    render: str = param("none", choices=("none", "human"), help="human: show the episodes in a window")
    debug: bool = param(False, help="show Python tracebacks for errors")


def evaluate_run(run_dir: Path, args: EvalArgs, console: Console) -> dict[str, Any]:
    """Evaluate, record and show as ``args`` says; write ``eval.json``; return its content."""
    from drlrun.envs import make_envs
    from drlrun.episodes import evaluate
    from drlrun.video import require_display, require_moviepy

    if args.video:
        require_moviepy("video=true")
    if args.render == "human":
        require_display()
    trained = load_trained(run_dir, args.checkpoint, args.device)
    cfg = trained.cfg
    seed = cfg.seed + EVAL_CLI_SEED_OFFSET if args.seed is None else args.seed
    envs = make_envs(cfg.env, trained.env_id, min(args.episodes, 16))
    try:
        returns, lengths = evaluate(trained.agent, envs, args.episodes, seed, args.deterministic)
    finally:
        envs.close()
    step = int(trained.header.get("step", 0))
    videos = record_videos(run_dir, trained, args, seed, step, console) if args.video else []
    if args.render == "human":
        show(trained, args, seed, console)
    result = {
        "run_dir": str(run_dir), "checkpoint": str(trained.path), "checkpoint_step": step,
        "algo": cfg.algo.name, "env": trained.env_id, "episodes": int(args.episodes), "seed": seed,
        "deterministic": args.deterministic, "return_mean": float(returns.mean()),
        "return_std": float(returns.std()), "return_min": float(returns.min()), "return_max": float(returns.max()),
        "length_mean": float(lengths.mean()), "returns": [float(r) for r in returns],
        "lengths": [int(n) for n in lengths], "videos": videos,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    checkpoint.write_json(run_dir / "eval.json", result)
    attach(run_dir, [run_dir / "eval.json", *(Path(v) for v in videos)])  # (to the run's MLflow run, if any)
    return result


def record_videos(run_dir: Path, trained: Trained, args: EvalArgs, seed: int, step: int,
                  console: Console) -> list[str]:
    """``args.video_episodes`` episodes to MP4 files in ``RUN_DIR/videos`` (and to TensorBoard with
    ``tensorboard=true``); returns the files."""
    from drlrun.video import make_render_env, record

    videos: list[str] = []
    env = make_render_env(trained.cfg.env, trained.env_id, "rgb_array")
    writer = None
    try:
        if args.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(log_dir=str(run_dir))
        for episode in range(args.video_episodes):
            video = run_dir / "videos" / f"{trained.path.stem}-step{step}-seed{seed + episode}.mp4"
            ret = record(trained.agent, env, seed + episode, args.deterministic, video, writer,
                         f"videos/{trained.path.stem}_episode{episode}", step)
            videos.append(str(video))
            console.print(f"video: {video} (return {ret:.1f})", highlight=False)
    finally:
        env.close()
        if writer is not None:
            writer.close()
    return videos


def show(trained: Trained, args: EvalArgs, seed: int, console: Console) -> None:
    """``render=human``: the episodes in a window."""
    from drlrun.video import make_render_env, play

    env = make_render_env(trained.cfg.env, trained.env_id, "human")
    try:
        for episode in range(args.episodes):
            ret, length = play(trained.agent, env, seed + episode, args.deterministic)
            console.print(f"episode {episode}: return {ret:.1f}, length {length}", highlight=False)
    finally:
        env.close()


def result_table(result: dict[str, Any]) -> Table:
    table = Table(title=f"{result['algo']} on {result['env']}: {result['episodes']} episodes from seed "
                        f"{result['seed']} ({'deterministic' if result['deterministic'] else 'sampled'} actions)",
                  title_justify="left")
    for column in ("mean return", "std", "min", "max", "mean length"):
        table.add_column(column, justify="right")
    table.add_row(*(f"{result[k]:.1f}" for k in ("return_mean", "return_std", "return_min", "return_max",
                                                 "length_mean")))
    return table


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    console = Console()
    run_dir, result = run_command(argv, EvalArgs, "drlrun-eval RUN_DIR [key=value ...]",
                                  lambda run_dir, args: evaluate_run(run_dir, args, console))
    console.print(result_table(result))
    console.print(f"checkpoint {result['checkpoint']} (step {result['checkpoint_step']:,}); "
                  f"written: {run_dir / 'eval.json'}", highlight=False, soft_wrap=True)


if __name__ == "__main__":
    main()

