"""Loggers as components: MLflow and Weights & Biases beside TensorBoard, read back through their
own stores (an MLflow SQLite database, W&B's offline run files), and a logger's failure never
losing a run. W&B runs offline here (WANDB_MODE=offline): no network is touched."""

from __future__ import annotations

import json
import shutil
import socket
import struct
from pathlib import Path
from typing import ClassVar

import pytest

from drlrun.errors import DrlrunError
from drlrun.registry import LOGGERS

mlflow = pytest.importorskip("mlflow")
wandb = pytest.importorskip("wandb")

TINY = ("env=gym", "env.id=fake_envs:GuessEnv", "total_steps=400", "eval.interval=100", "eval.episodes=2", "log.interval=100",
        "algo.learning_starts=150", "algo.batch_size=16", "log.progress=false", "device=cpu")
QUIET = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
         "COLUMNS": "250"}


@pytest.fixture
def track(cli):
    def _run(*args: str, **kwargs):
        return cli(*args, env_vars=QUIET, **kwargs)

    return _run


def client(tmp_path: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")


def runs(tmp_path: Path) -> list:
    c = client(tmp_path)
    return c.search_runs([c.get_experiment_by_name("drlrun").experiment_id])


def series(tmp_path: Path, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, round(m.value, 6)) for m in client(tmp_path).get_metric_history(run_id, key))


def rows(run_dir: Path, key: str) -> list[tuple[int, float]]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], round(r[key], 6)) for r in lines if r.get(key) is not None]


def artifacts(tmp_path: Path, run_id: str, folder: str | None = None) -> set[str]:
    out: set[str] = set()
    for item in client(tmp_path).list_artifacts(run_id, folder):
        out |= artifacts(tmp_path, run_id, item.path) if item.is_dir else {item.path}
    return out


def tensorboard_points(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0}).Reload()
    return [(e.step, round(e.value, 6)) for e in events.Scalars(tag)]


def wandb_records(run_dir: Path) -> list:
    """Every record of the run directory's offline W&B runs, read from W&B's own ``.wandb`` files
    (a LevelDB-style log of ``wandb_internal_pb2.Record`` protobufs, after a 7-byte header)."""
    from wandb.proto import wandb_internal_pb2 as pb

    found = []
    for path in sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb")):
        data = path.read_bytes()
        assert data[:4] == b":W&B"
        pos, block, parts = 7, 32768, b""
        while pos + 7 <= len(data):
            if block - pos % block < 7:  # a block's tail too short for a header is padding
                pos += block - pos % block
                continue
            _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
            payload, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
            if kind == 0:
                continue
            parts = payload if kind in (1, 2) else parts + payload  # full/first, middle/last
            if kind in (1, 4):
                record = pb.Record()
                record.ParseFromString(parts)
                found.append(record)
    return found


def wandb_history(run_dir: Path) -> list[dict]:
    return [{item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
            for r in wandb_records(run_dir) if r.WhichOneof("record_type") == "history"]


def test_an_mlflow_run_has_the_config_every_row_at_its_step_and_the_files(track, tmp_path):
    run_dir = tmp_path / "outputs" / "run"
    result = track(*TINY, "log.backends=[tensorboard,mlflow]", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    (run,) = runs(tmp_path)  # the default store: sqlite:///<outputs>/mlflow.db
    run_id = run.info.run_id
    assert run.info.status == "FINISHED" and run.data.tags["drlrun.status"] == "completed"
    params = run.data.params
    assert params["algo.name"] == "dqn" and params["total_steps"] == "400" and params["algo.batch_size"] == "16"
    assert params["env.id"] == "fake_envs:GuessEnv" and params["log.backends"] == "['tensorboard', 'mlflow']"
    for key in ("charts/episodic_return", "eval/return_mean", "losses/td_loss"):
        assert series(tmp_path, run_id, key) == rows(run_dir, key), key
    assert [s for s, _ in series(tmp_path, run_id, "eval/return_mean")] == [100, 200, 300, 400]
    assert [s for s, _ in series(tmp_path, run_id, "charts/episodic_return")] == [100, 200, 300, 400]
    assert "hparams/final_return_mean" in run.data.metrics
    assert artifacts(tmp_path, run_id) == {"summary.json", "checkpoints/best.pt"}
    summary = json.loads((run_dir / "summary.json").read_text())
    ui = f"mlflow ui --backend-store-uri sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}"
    assert summary["tracking"] == {"mlflow_run_id": run_id, "mlflow_ui": ui}
    assert ui in result.stdout  # in the final table
    assert list(run_dir.glob("events.out.tfevents.*"))  # TensorBoard still on

    # drlrun-eval's eval.json, written after the run, joins its MLflow run
    result = track(str(run_dir), "episodes=2", exe="drlrun-eval")
    assert result.returncode == 0, result.stderr
    assert "eval.json" in artifacts(tmp_path, run_id)


def test_a_three_seed_multirun_is_one_parent_run_with_three_children(track, tmp_path):
    result = track("-m", *TINY, "seed=0,1,2", "log.backends=[mlflow,wandb]")
    assert result.returncode == 0, result.stderr
    found = runs(tmp_path)
    parents = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and len(found) == 4
    parent = parents[0]
    children = [r for r in found if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.params["seed"] for r in children) == ["0", "1", "2"]
    assert all(r.info.status == "FINISHED" for r in found)
    sweep_dir = Path(parent.data.tags["drlrun.sweep_dir"])
    assert sweep_dir.parent.parent == (tmp_path / "outputs" / "multirun").resolve()
    # W&B: the sweep directory is the group of every job's run
    job_dirs = sorted(p for p in sweep_dir.iterdir() if (p / "summary.json").is_file())
    assert len(job_dirs) == 3
    for job_dir in job_dirs:
        (run_record,) = [r.run for r in wandb_records(job_dir) if r.WhichOneof("record_type") == "run"]
        assert run_record.run_group == str(sweep_dir.relative_to(tmp_path.resolve()))


def test_a_resumed_run_goes_on_in_the_same_runs_with_no_step_sent_twice(track, tmp_path):
    """The second resume starts again from the checkpoint at step 200 after rows up to 400 were
    sent already (as a process killed after its last checkpoint leaves them)."""
    run_dir = tmp_path / "outputs" / "run"
    first = track(*TINY, "total_steps=200", "log.backends=[tensorboard,mlflow,wandb]", f"hydra.run.dir={run_dir}")
    assert first.returncode == 0, first.stderr
    at_200 = tmp_path / "latest-200.pt"
    shutil.copy(run_dir / "checkpoints" / "latest.pt", at_200)
    state = json.loads((run_dir / "tracking.json").read_text())
    for _ in range(2):
        resumed = track(f"resume={run_dir}", "total_steps=400")
        assert resumed.returncode == 0, resumed.stderr
        shutil.copy(at_200, run_dir / "checkpoints" / "latest.pt")
    (run,) = runs(tmp_path)
    assert run.info.run_id == state["mlflow"]["run_id"] and run.info.status == "FINISHED"
    assert run.data.tags["drlrun.resumes"] == "2"
    for key in ("charts/episodic_return", "eval/return_mean", "charts/SPS"):
        steps = [s for s, _ in series(tmp_path, run.info.run_id, key)]
        assert steps == [100, 200, 300, 400], key  # each step once
    # W&B: the same run id, each step once over the three offline segments
    assert json.loads((run_dir / "tracking.json").read_text())["wandb"]["id"] == state["wandb"]["id"]
    segments = sorted(run_dir.glob("wandb/offline-run-*"))
    assert len(segments) == 3 and all(p.name.endswith(state["wandb"]["id"]) for p in segments)
    assert sorted(row["_step"] for row in wandb_history(run_dir)) == [100, 200, 300, 400]


def test_a_wandb_offline_run_has_the_rows_of_metrics_jsonl(track, tmp_path):
    run_dir = tmp_path / "outputs" / "run"
    result = track(*TINY, "log.backends=[tensorboard,wandb]", "log.wandb.tags=[smoke]", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    history = wandb_history(run_dir)
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    keys = {k for row in lines for k in row} - {"step", "wall_time"}
    assert {k for row in history for k in row if not k.startswith("_")} == keys
    assert [row["_step"] for row in history] == [100, 200, 300, 400]
    by_step = {row["_step"]: row for row in history}
    for step, value in rows(run_dir, "eval/return_mean"):
        assert by_step[step]["eval/return_mean"] == pytest.approx(value)
    (run_record,) = [r.run for r in wandb_records(run_dir) if r.WhichOneof("record_type") == "run"]
    config = {item.key: json.loads(item.value_json) for item in run_record.config.update}
    assert config["algo.name"] == "dqn" and config["total_steps"] == 400
    assert list(run_record.tags) == ["smoke"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["tracking"]["wandb_sync"].startswith(f"wandb sync {run_dir}/wandb/offline-run-")


def test_wandb_is_offline_unless_it_is_set_up(monkeypatch, tmp_path):
    from drlrun.sink_wandb import resolve_mode

    for key in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert resolve_mode("auto") == "offline"
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password " + "x" * 40 + "\n")
    assert resolve_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert resolve_mode("auto") == "offline"
    assert resolve_mode("online") == "online"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_tracking_server_that_does_not_answer_fails_before_training(track, tmp_path):
    run_dir = tmp_path / "outputs" / "run"
    result = track(*TINY, "log.backends=[tensorboard,mlflow]", f"log.mlflow.tracking_uri=http://127.0.0.1:{free_port()}",
                   f"hydra.run.dir={run_dir}", timeout=120)
    assert result.returncode == 2, result.stderr
    assert "MLflow cannot record this run" in result.stderr and "log.mlflow.tracking_uri" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (run_dir / "metrics.jsonl").exists() and not (run_dir / "checkpoints").exists()


def test_an_unknown_logger_fails_with_the_valid_choices(track, tmp_path):
    result = track(*TINY, "log.backends=[tensorbord]", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert "Did you mean 'tensorboard'?" in result.stderr and "mlflow, tensorboard, wandb" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run" / "metrics.jsonl").exists()


class Dying:
    """A logger that breaks at its third row (a tracker that goes away while training)."""

    calls: ClassVar[list[str]] = []

    def __init__(self, ctx) -> None:
        self.rows = 0

    def scalars(self, step, values) -> None:
        self.rows += 1
        Dying.calls.append(f"scalars {step}")
        if self.rows == 3:
            raise ConnectionError("the tracking server went away")

    def close(self, *, status, artifacts) -> None:
        Dying.calls.append(f"close {status}")


def test_a_logger_dying_mid_run_leaves_the_run_completed_and_tensorboard_whole(tmp_path, capsys):
    from hydra import compose, initialize_config_module

    from drlrun.compose import to_settings
    from drlrun.runner import train

    if "dying" not in LOGGERS:
        LOGGERS.register("dying")(Dying)
    Dying.calls.clear()
    with initialize_config_module(config_module="drlrun.conf", version_base="1.3"):
        cfg = compose("config", overrides=[*TINY, "log.backends=[dying,tensorboard]"])
    run_dir = tmp_path / "outputs" / "run"
    summary = train(to_settings(cfg), run_dir, progress=False)
    assert summary["status"] == "completed" and summary["total_steps"] == 400
    assert "ConnectionError: the tracking server went away" in summary["tracking"]["dying_error"]
    err = capsys.readouterr().err
    assert err.count("the dying logger failed") == 1 and "goes on with metrics.jsonl, tensorboard" in err
    # left out after its failure (no more rows), closed once as failed
    assert Dying.calls == ["scalars 100", "scalars 100", "scalars 200", "close failed"]
    assert tensorboard_points(run_dir, "eval/return_mean") == rows(run_dir, "eval/return_mean")
    assert [s for s, _ in rows(run_dir, "eval/return_mean")] == [100, 200, 300, 400]


def test_a_logger_class_must_fulfil_the_contract():
    class NoClose:
        def scalars(self, step, values): ...

    with pytest.raises(DrlrunError, match=r"lacks the required method\(s\) close"):
        LOGGERS.register("no_close")(NoClose)

    class OldClose(NoClose):
        def close(self): ...

    with pytest.raises(DrlrunError, match="keywords status and artifacts"):
        LOGGERS.register("old_close")(OldClose)


def test_log_tensorboard_false_leaves_tensorboard_out():
    from drlrun.config import LogConfig
    from drlrun.tracking import backends

    assert backends(LogConfig()) == ["tensorboard"]
    assert backends(LogConfig(tensorboard=False, backends=["tensorboard", "mlflow", "mlflow"])) == ["mlflow"]


def test_a_job_of_an_optuna_sweep_knows_its_trial_number(monkeypatch, tmp_path):
    import optuna

    from drlrun.pruning import ENV_STORAGE, ENV_TRIAL
    from drlrun.tracking import trial_number

    assert trial_number() is None
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=storage, study_name="s")
    study.ask()
    second = study.ask()
    monkeypatch.setenv(ENV_STORAGE, storage)
    monkeypatch.setenv(ENV_TRIAL, str(second._trial_id))
    assert trial_number() == 1
