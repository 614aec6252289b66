"""Bad input through the CLI: a clear message naming the value and the choices, no traceback."""

from __future__ import annotations

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
]


@pytest.mark.parametrize(("args", "words"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_fails_cleanly(cli, tmp_path, args, words):
    result = cli(*FAST, *args, f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    for word in words:
        assert word in result.stderr, result.stderr
    assert not (tmp_path / "run" / "summary.json").exists()


def test_cuda_without_a_gpu_says_so(cli, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU, so device=cuda is valid here")
    result = cli(*FAST, "device=cuda", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2 and "no CUDA GPU" in result.stderr and "Traceback" not in result.stderr


def test_debug_shows_the_traceback(cli, tmp_path):
    result = cli(*FAST, "algo.gamma=2", "debug=true", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode != 0 and "Traceback" in result.stderr and "algo.gamma=2" in result.stderr
