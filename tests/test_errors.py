"""Bad input through the CLI: a clear message naming the value and the choices, no traceback."""

from __future__ import annotations

import shutil

import pytest

FAST = ("total_steps=1000", "eval.episodes=1")

CASES = [
    # (arguments, words the error must contain)
    (("algo=nope",), ["algo/nope", "dqn"]),
    (("network=nope",), ["network/nope", "dueling", "mlp"]),
    (("buffer=nope",), ["buffer/nope", "prioritized", "uniform"]),
    (("env=nope",), ["env/nope", "CartPole-v1"]),
    (("env.id=CartPol-v1",), ["Unknown environment id", "CartPole-v1"]),
    (("env.id=no_such_module:Env",), ["cannot import module 'no_such_module'"]),
    (("algo.lrr=0.1",), ["algo.lrr"]),
    (("+algo.lrr=0.1",), ["Unknown key 'algo.lrr'", "lr"]),
    (("algo.lr=fast",), ["algo.lr", "fast"]),
    (("seed=abc",), ["seed", "abc"]),
    (("algo.gamma=1.5",), ["algo.gamma=1.5", "<= 1.0"]),
    (("algo.gamma=-0.1",), ["algo.gamma=-0.1", ">= 0.0"]),
    (("algo.batch_size=0",), ["algo.batch_size=0", ">= 1"]),
    (("buffer.capacity=-5",), ["buffer.capacity=-5"]),
    (("env.num_envs=0",), ["env.num_envs=0"]),
    (("algo.batch_size=512", "buffer.capacity=100"), ["algo.batch_size=512", "buffer.capacity=100"]),
    (("algo.learning_starts=5000",), ["algo.learning_starts=5000", "total_steps=1000"]),
    (("network.activation=swish",), ["network.activation='swish'", "relu"]),
    (("device=tpu",), ["device='tpu'", "auto, cpu, cuda"]),
    (("env.id=Pendulum-v1",), ["algo=dqn needs a discrete action space", "continuous"]),
    (("env=gym",), ["env.id is required"]),
    (("algo=ppo", "buffer=prioritized"), ["buffer=prioritized would be ignored"]),
    (("algo=ppo", "env.num_envs=8", "algo.n_steps=256"), ["less than one rollout", "algo.n_steps=256"]),
    (("algo=sac", "env.id=Pendulum-v1", "eval.early_stop=true"), ["no reward threshold", "eval.target_return"]),
    (("+env.kwargs.bogus=1",), ["Could not create env.id='CartPole-v1'", "bogus"]),
    (("algo=sac",), ["algo=sac needs a continuous action space", "discrete", "dqn, ppo"]),
    (("total_steps=0",), ["total_steps=0", ">= 1"]),
    (("eval.episodes=0",), ["eval.episodes=0", ">= 1"]),
    (("checkpoint.interval=-1",), ["checkpoint.interval=-1", ">= 0"]),
    # Hydra's own errors (composition, overrides) keep the same promise: exit 2, one paragraph
    (("total_steps=abc",), ["total_steps=abc", "could not be converted to Integer"]),
    (("seed=1.5",), ["seed=1.5", "could not be converted to Integer"]),
    (("hydra/launcher=nope",), ["hydra/launcher/nope", "joblib"]),
    (("algo.lr=[1",), ["algo.lr=[1"]),
]


@pytest.mark.parametrize(("args", "words"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_fails_cleanly(cli, tmp_path, args, words):
    result = cli(*FAST, *args, f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "HYDRA_FULL_ERROR" not in result.stderr and len(result.stderr.strip().splitlines()) <= 3
    for word in words:
        assert word in result.stderr, result.stderr
    assert not (tmp_path / "run" / "summary.json").exists()


def test_two_hydra_modes_at_once_fail_cleanly(cli):
    """Hydra checks its mode flags with a plain ValueError; drlrun turns it into one line, exit 2."""
    result = cli("-m", "--cfg", "job", "algo=ppo")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "Only one of --run, --multirun, --cfg" in result.stderr and "keep one of them" in result.stderr


def test_cuda_without_a_gpu_says_so(cli, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU, so device=cuda is valid here")
    result = cli(*FAST, "device=cuda", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2 and "no CUDA GPU" in result.stderr and "Traceback" not in result.stderr


def test_debug_shows_the_traceback(cli, tmp_path):
    result = cli(*FAST, "algo.gamma=2", "debug=true", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode != 0 and "Traceback" in result.stderr and "algo.gamma=2" in result.stderr


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A real (tiny) run: resuming it wrongly must fail and leave its files untouched."""
    from conftest import run_cli

    root = tmp_path_factory.mktemp("finished")
    result = run_cli(*FAST, "log.progress=false", f"hydra.run.dir={root / 'run'}", cwd=root)
    assert result.returncode == 0, result.stderr
    return root / "run"


def _resume_cases():
    """(name, build(finished_run, tmp_path) -> arguments, words the error must contain)."""
    import torch

    def corrupt(run, tmp):
        bad = shutil.copytree(run, tmp / "corrupt")
        (bad / "checkpoints" / "latest.pt").write_bytes(b"\x00" * 100)
        return (f"resume={bad}",)

    def foreign(run, tmp):
        bad = shutil.copytree(run, tmp / "foreign")
        torch.save({"weights": torch.zeros(3)}, bad / "checkpoints" / "latest.pt")
        return (f"resume={bad}",)

    def no_checkpoint(run, tmp):
        bad = shutil.copytree(run, tmp / "nockpt")
        (bad / "checkpoints" / "latest.pt").unlink()
        return (f"resume={bad}",)

    def not_a_run(run, tmp):
        (tmp / "empty").mkdir()
        return (f"resume={tmp / 'empty'}",)

    return [
        ("missing directory", lambda run, tmp: (f"resume={tmp / 'nowhere'}",), ["no such directory"]),
        ("not a run", not_a_run, ["is not a drlrun run directory"]),
        ("run without a checkpoint", no_checkpoint, ["no checkpoint to continue from"]),
        ("corrupt checkpoint", corrupt, ["not a readable checkpoint"]),
        ("foreign checkpoint", foreign, ["not a drlrun checkpoint"]),
        ("already finished", lambda run, tmp: (f"resume={run}",), ["already reached step 1,000", "total_steps=2000"]),
        ("changed experiment", lambda run, tmp: (f"resume={run}", "total_steps=2000", "algo.lr=0.5"),
         ["'algo.lr' cannot change when resuming", "total_steps"]),
        ("changed algorithm", lambda run, tmp: (f"resume={run}", "algo=ppo"), ["'algo' cannot change"]),
        ("resume in a sweep", lambda run, tmp: ("-m", f"resume={run}", "seed=1,2"), ["cannot be combined with -m"]),
        ("output under a file", lambda run, tmp: (f"hydra.run.dir={run / 'summary.json' / 'sub'}",),
         ["cannot be created", "is a file"]),
        ("output where no directory can be made", lambda run, tmp: ("hydra.run.dir=/proc/drlrun-run",),
         ["hydra.run.dir='/proc/drlrun-run' cannot be created"]),
    ]


RESUME_CASES = _resume_cases()


@pytest.mark.parametrize(("name", "build", "words"), RESUME_CASES, ids=[c[0] for c in RESUME_CASES])
def test_bad_resume_or_output_fails_cleanly_and_keeps_what_was_written(cli, tmp_path, finished_run, name, build,
                                                                       words):
    before = {p: p.read_bytes() for p in finished_run.rglob("*") if p.is_file()}
    result = cli(*build(finished_run, tmp_path))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for word in words:
        assert word in result.stderr, result.stderr
    assert {p: p.read_bytes() for p in finished_run.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "nowhere").exists()
