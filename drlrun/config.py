"""The configuration schema: typed dataclasses and their declared ranges. Nothing else.

Ranges (a negative size, ``gamma`` outside [0, 1], an unknown activation) are declared on the
fields with :func:`param` and checked by :func:`check_ranges`. Every component's config
dataclass (an algorithm's, a network's, a buffer's) is written with :func:`param` too, so this
module imports no component: it is the floor they all stand on. Hydra registration and turning
a composed config into these dataclasses live in ``drlrun/compose.py``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from drlrun.errors import DrlrunError


def param(default: Any = dataclasses.MISSING, *, ge: float | None = None, gt: float | None = None,
          le: float | None = None, lt: float | None = None, choices: tuple[str, ...] | None = None,
          help: str = "") -> Any:
    """A dataclass field with a declared valid range or set of choices.

    ``help`` says what the value means; it is shown in errors about the field.
    """
    meta = {"ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices, "help": help}
    if isinstance(default, (list, dict)):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata=meta)
    return field(default=default, metadata=meta)


def check_ranges(obj: Any, prefix: str) -> None:
    """Check every field of the dataclass ``obj`` (recursively) against its declared range."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}.{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(value):
            check_ranges(value, key)
            continue
        meta = f.metadata
        if not meta or value is None:
            continue
        about = f" ({meta['help']})" if meta.get("help") else ""
        if meta.get("choices") is not None and value not in meta["choices"]:
            raise DrlrunError(
                f"{key}={value!r} is not valid{about}. Valid choices: {', '.join(meta['choices'])}."
            )
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                continue
            if isinstance(v, float) and math.isnan(v):
                raise DrlrunError(f"{key} is NaN{about}; give a number.")
            for bound, ok, word in (
                (meta.get("ge"), v >= (meta.get("ge") or 0), ">="),
                (meta.get("gt"), v > (meta.get("gt") or 0), ">"),
                (meta.get("le"), v <= (meta.get("le") or 0), "<="),
                (meta.get("lt"), v < (meta.get("lt") or 0), "<"),
            ):
                if bound is not None and not ok:
                    raise DrlrunError(f"{key}={value!r} is out of range{about}: it must be {word} {bound}.")


# --------------------------------------------------------------------------- top-level settings
@dataclass
class RayEnvConfig:
    """``env.vectorization=ray``: where the env copies' Ray actors run and how long one may take.

    A copy's episodes and seeds do not depend on which actor holds it, so none of these settings
    changes what is learned: a run gives the same metrics as with env.vectorization=sync."""

    address: str | None = param(None, help="null: a Ray of this run's own on this machine; auto: the cluster this "
                                           "machine belongs to (RAY_ADDRESS, or the one 'ray start' started "
                                           "here); HOST:PORT or ray://HOST:PORT: that cluster")
    actors: int = param(2, ge=1, help="Ray actors the env copies are spread over (at most one per copy); each "
                                      "steps its copies one after another and returns them as one batch")
    timeout: float = param(60.0, gt=0, help="seconds an actor may take to reset or step its copies (to start: at "
                                            "least 120) before the run stops with a checkpoint, naming the "
                                            "actor's env copies and node")


@dataclass
class AtariConfig:
    """How an ``ALE/`` id's copies are preprocessed: Gymnasium's AtariPreprocessing (no-op starts,
    frame skip with max-pooling of the last two frames, grayscale, resize) and
    FrameStackObservation, over the id's own sticky actions (v5: 0.25). The defaults are the Nature
    DQN's (Mnih et al., 2015) on Machado et al.'s (2018) v5 protocol; see drlrun/preprocess.py."""

    noop_max: int = param(30, ge=0, help="at most this many no-op actions (a uniform draw from 1) after each "
                                         "reset; 0: none")
    frame_skip: int = param(4, ge=1, help="emulator frames per agent step, the action repeated (each frame "
                                          "sticky on its own); the observation max-pools the last two")
    screen_size: int = param(84, ge=1, help="frames are resized to screen_size x screen_size grayscale")
    frame_stack: int = param(4, ge=1, help="the observation stacks the last frame_stack frames (channels first)")
    terminal_on_life_loss: bool = param(False, help="the agent learns as if a lost life ended the episode (the "
                                                    "Nature DQN's setting); the game goes on, so episode returns "
                                                    "and evaluations stay whole games")


@dataclass
class EnvConfig:
    """Which environment, how many copies run side by side, and how they are built."""

    id: str = param("???", help="a Gymnasium id, 'module:env-id' or 'module:EnvClass'")  # ??? = required
    num_envs: int = param(1, ge=1, help="environments stepped together in one vector env")
    vectorization: str = param("auto", choices=("auto", "native", "sync", "async", "ray"),
                               help="auto: sync; native: Gymnasium's own vector env (faster for "
                                    "CartPole from 4 copies, but a resumed run starts its episodes "
                                    "afresh); async: one process per copy; ray: the copies in "
                                    "env.ray.actors Ray actors, here or on a cluster (env.ray.*)")
    max_episode_steps: int | None = param(None, ge=1, help="override the episode time limit")
    threshold: float | None = param(None, help="return at which the task counts as solved; "
                                               "default: the environment's reward_threshold")
    kwargs: dict[str, Any] = field(default_factory=dict)
    network: str | None = param(None, help="the network this environment's observations need (cnn for frames): "
                                           "chosen when no network= is given")
    ray: RayEnvConfig = field(default_factory=RayEnvConfig)
    clip_rewards: bool = param(False, help="the agent learns from sign(reward) (the Nature DQN's clipping); "
                                           "episode returns and evaluations keep the env's own rewards")
    atari: AtariConfig = field(default_factory=AtariConfig)


@dataclass
class EvalConfig:
    """Periodic deterministic evaluation on environments separate from training."""

    interval: int = param(10_000, ge=0, help="env steps between evaluations; 0: only at the end")
    episodes: int = param(10, ge=1, help="episodes per evaluation")
    deterministic: bool = True
    early_stop: bool = param(False, help="stop once an evaluation reaches the threshold")
    target_return: float | None = param(None, help="solved threshold overriding env.threshold")
    video_every: int = param(0, ge=0, help="record one evaluation episode to videos/ and TensorBoard every N "
                                           "evaluations (needs the video extra); 0: never")


@dataclass
class CheckpointConfig:
    """When to write ``checkpoints/latest.pt`` (always also at evaluations and at the end), and
    ``best.pt`` (the weights of the best evaluation)."""

    interval: int = param(0, ge=0, help="env steps between extra 'latest' checkpoints; 0: none")
    save_best: bool = True
    enabled: bool = True
    buffer: bool = param(True, help="keep the replay buffer in latest.pt; false makes checkpoints small, "
                                    "but a resumed off-policy run refills its buffer first and does not "
                                    "repeat the uninterrupted run exactly (on-policy rollouts are always kept)")


@dataclass
class MlflowLogConfig:
    """``log.backends=[...,mlflow]``: one MLflow run per drlrun run (a parent run per multirun)."""

    tracking_uri: str | None = param(None, help="where runs are recorded: any MLflow tracking URI (http://host:5000, "
                                                "sqlite:///path.db, databricks, ...); default: "
                                                "sqlite:///<outputs>/mlflow.db")
    experiment: str = param("drlrun", help="the MLflow experiment the runs go to")
    artifacts: bool = param(True, help="upload summary.json, eval.json, videos/ and checkpoints/best.pt at the end")


@dataclass
class WandbLogConfig:
    """``log.backends=[...,wandb]``: one Weights & Biases run per drlrun run, grouped by sweep."""

    project: str = param("drlrun", help="the W&B project")
    entity: str | None = param(None, help="the W&B team or user; default: yours")
    mode: str = param("auto", choices=("auto", "online", "offline"),
                      help="auto: online where W&B is set up (WANDB_API_KEY, wandb login or WANDB_MODE), "
                           "offline otherwise (wandb sync uploads later)")
    tags: list[str] = param([], help="tags of every run")


@dataclass
class LogConfig:
    interval: int = param(1_000, ge=1, help="env steps between metric rows and progress updates")
    progress: bool = True
    tensorboard: bool = param(True, help="false leaves tensorboard out of log.backends")
    backends: list[str] = param(["tensorboard"], help="where rows, hyperparameters and artifacts go besides "
                                                       "metrics.jsonl: tensorboard, mlflow, wandb or a plug-in "
                                                       "(entry-point group drlrun.loggers)")
    mlflow: MlflowLogConfig = field(default_factory=MlflowLogConfig)
    wandb: WandbLogConfig = field(default_factory=WandbLogConfig)
    options: dict[str, Any] = field(default_factory=dict)  # a plug-in logger's settings: log.options.<name>.<key>


@dataclass
class RunConfig:
    """The root of the configuration; ``algo``/``env``/``network``/``buffer`` are config groups."""

    algo: Any = None
    env: Any = None
    network: Any = None
    buffer: Any = None
    seed: int = param(0, ge=0, help="seeds python, numpy, torch and the environments")
    device: str = param("auto", help="auto, cpu, cuda or cuda:N")
    total_steps: int = param(100_000, ge=1, help="environment steps to train for")
    torch_threads: int = param(1, ge=0, help="torch CPU threads; 0 lets torch use all cores")
    debug: bool = param(False, help="show Python tracebacks for errors")
    resume: str | None = param(None, help="a run directory to continue from its latest checkpoint")
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten a dataclass into dotted keys with primitive values (for HParams and summaries)."""
    out: dict[str, Any] = {}
    items = dataclasses.asdict(obj).items() if dataclasses.is_dataclass(obj) else obj.items()
    for key, value in items:
        full = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            out.update(flatten(value, full))
        elif isinstance(value, (list, tuple)):
            out[full] = str(list(value))
        else:
            out[full] = value
    return out
