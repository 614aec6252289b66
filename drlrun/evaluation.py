"""``drlrun-eval RUN_DIR [checkpoint=last|best|PATH] [episodes=N] [deterministic=true] [seed=S]
[video=true] [render=human]``: evaluate a trained agent on fresh seeds, watch it, record it.

The agent is rebuilt from the run's own saved configuration (``.hydra/config.yaml``, or the
settings stored in its checkpoint) and loaded from the chosen checkpoint, normalisation
statistics included and frozen, so it acts exactly as in training's evaluations. A checkpoint
made for another algorithm, environment or network is refused, naming both values.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

from drlrun import checkpoint
from drlrun.agent import Agent, EnvSpec
from drlrun.compose import build_section, to_settings
from drlrun.config import RunConfig, check_ranges, param
from drlrun.errors import DrlrunError

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


@dataclass
class Trained:
    """An agent rebuilt from a run and loaded from one of its checkpoints."""

    cfg: RunConfig
    env_id: str
    spec: EnvSpec
    agent: Agent
    path: Path
    header: dict[str, Any]


def run_settings(run_dir: Path) -> RunConfig:
    """The configuration a run was trained with."""
    saved = run_dir / ".hydra" / "config.yaml"
    if saved.is_file():
        return to_settings(OmegaConf.load(saved))
    for name in ("latest.pt", "best.pt"):
        path = run_dir / "checkpoints" / name
        if path.is_file():
            header, _ = checkpoint.load(path)
            if "settings" in header:
                return to_settings(OmegaConf.create(header["settings"]))
    raise DrlrunError(f"{str(run_dir)!r} is not a drlrun run directory: it has neither .hydra/config.yaml nor "
                      "a checkpoint that records its settings.")


def checkpoint_path(run_dir: Path, which: str) -> Path:
    if which == "best":
        path = run_dir / "checkpoints" / "best.pt"
        if not path.is_file() and (run_dir / "checkpoints" / "latest.pt").is_file():
            raise DrlrunError(f"{str(run_dir)!r} has no best checkpoint (it ran with checkpoint.save_best=false); "
                              "use checkpoint=last.")
        return path
    if which in ("last", "latest"):
        return run_dir / "checkpoints" / "latest.pt"
    return Path(which).expanduser()


def load_trained(run_dir: Path, which: str = "last", device: str = "cpu") -> Trained:
    """Rebuild the run's agent and load the checkpoint ``which`` (best, last, or a path) into it."""
    from drlrun.envs import describe, make_envs, resolve_env_id
    from drlrun.runner import build_agent, checkpoint_header, resolve_device

    if not run_dir.is_dir():
        raise DrlrunError(f"{str(run_dir)!r}: no such directory. Give the directory of a drlrun run, "
                          "e.g. outputs/2026-01-31/12-00-00_ppo_CartPole-v1_seed0.")
    cfg = run_settings(run_dir)
    path = checkpoint_path(run_dir, which)
    header, state = checkpoint.load(path)
    env_id = resolve_env_id(cfg.env.id)
    envs = make_envs(cfg.env, env_id, 1)
    try:
        spec = dataclasses.replace(describe(envs, env_id), num_envs=cfg.env.num_envs)
    finally:
        envs.close()
    checkpoint.check_header(path, header, checkpoint_header(cfg, env_id, spec))
    agent = build_agent(cfg, spec, resolve_device(device))
    checkpoint.load_agent_state(agent, state, path, cfg.algo.name)
    return Trained(cfg, env_id, spec, agent, path, header)


def parse_args(argv: list[str], cls: type, usage: str) -> tuple[Path, Any]:
    """``RUN_DIR key=value ...`` -> (run directory, a range-checked ``cls``)."""
    if not argv or argv[0] in ("-h", "--help"):
        def shown(value: Any) -> str:
            return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)

        fields = "\n".join(f"  {f.name + '=' + shown(f.default):<22} {f.metadata.get('help', '')}"
                           for f in dataclasses.fields(cls))
        print(f"usage: {usage}\n\n{fields}", file=sys.stdout if argv else sys.stderr)
        sys.exit(0 if argv else 2)
    run_dir, rest = Path(argv[0]).expanduser(), argv[1:]
    bad = [a for a in rest if "=" not in a]
    if bad:
        raise DrlrunError(f"Arguments are key=value; got {bad[0]!r}. Valid keys: "
                          f"{', '.join(f.name for f in dataclasses.fields(cls))}.")
    values = OmegaConf.to_container(OmegaConf.from_dotlist(rest))
    assert isinstance(values, dict)
    args = build_section(cls, values, "")
    check_ranges(args, "")
    return run_dir, args


def evaluate_run(run_dir: Path, args: EvalArgs, console: Console) -> dict[str, Any]:
    """Evaluate, record and show as ``args`` says; write ``eval.json``; return its content."""
    from drlrun.envs import make_envs
    from drlrun.runner import evaluate
    from drlrun.video import make_render_env, play, record, require_display, require_moviepy

    if args.video:
        require_moviepy("video=true")
    if args.render == "human":
        require_display()
    trained = load_trained(run_dir, args.checkpoint, args.device)
    cfg, agent = trained.cfg, trained.agent
    seed = cfg.seed + EVAL_CLI_SEED_OFFSET if args.seed is None else args.seed
    envs = make_envs(cfg.env, trained.env_id, min(args.episodes, 16))
    try:
        returns, lengths = evaluate(agent, envs, args.episodes, seed, args.deterministic)
    finally:
        envs.close()
    step = int(trained.header.get("step", 0))
    videos: list[str] = []
    if args.video:
        env = make_render_env(cfg.env, trained.env_id, "rgb_array")
        writer = None
        try:
            if args.tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                writer = SummaryWriter(log_dir=str(run_dir))
            for episode in range(args.video_episodes):
                video = run_dir / "videos" / f"{trained.path.stem}-step{step}-seed{seed + episode}.mp4"
                ret = record(agent, env, seed + episode, args.deterministic, video, writer,
                             f"videos/{trained.path.stem}_episode{episode}", step)
                videos.append(str(video))
                console.print(f"video: {video} (return {ret:.1f})", highlight=False)
        finally:
            env.close()
            if writer is not None:
                writer.close()
    if args.render == "human":
        env = make_render_env(cfg.env, trained.env_id, "human")
        try:
            for episode in range(args.episodes):
                _, ret, length = play(agent, env, seed + episode, args.deterministic)
                console.print(f"episode {episode}: return {ret:.1f}, length {length}", highlight=False)
        finally:
            env.close()
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
    return result


def result_table(result: dict[str, Any]) -> Table:
    table = Table(title=f"{result['algo']} on {result['env']}: {result['episodes']} episodes from seed "
                        f"{result['seed']} ({'deterministic' if result['deterministic'] else 'sampled'} actions)",
                  title_justify="left")
    for column in ("mean return", "std", "min", "max", "mean length"):
        table.add_column(column, justify="right")
    table.add_row(*(f"{result[k]:.1f}" for k in ("return_mean", "return_std", "return_min", "return_max",
                                                 "length_mean")))
    return table


def run_command(argv: list[str] | None, cls: type, usage: str, action: Any) -> tuple[Path, Any]:
    """Parse ``RUN_DIR key=value ...`` into ``cls`` and return ``(run_dir, action(run_dir, args))``;
    a user error prints as one paragraph and exits 2 (``debug=true`` shows the traceback)."""
    from drlrun.cli import EXIT_USER_ERROR, print_error

    argv = sys.argv[1:] if argv is None else argv
    try:
        run_dir, args = parse_args(argv, cls, usage)
        return run_dir, action(run_dir, args)
    except DrlrunError as exc:
        if "debug=true" in argv:
            raise
        print_error(exc)
        sys.exit(EXIT_USER_ERROR)


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

