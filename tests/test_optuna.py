"""hydra/sweeper=optuna: drlrun's Hydra sweeper plugin on current Optuna, with median pruning."""

from __future__ import annotations

import json

import pytest
import yaml

pytest.importorskip("optuna", reason="optuna comes with pip install 'drlrun[optuna]' (CI installs it)")

CONST = ("hydra/sweeper=optuna", "hydra.sweeper.sampler=random", "env.id=fake_envs:ConstEnv",
         "total_steps=200", "eval.interval=50", "eval.episodes=2", "algo.learning_starts=100", "algo.batch_size=16")


def rows(sweep_dir):
    return json.loads((sweep_dir / "sweep_summary.json").read_text())


def test_the_ready_ppo_search_space_runs_three_tiny_trials(cli, tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = cli("-m", "+search=ppo_CartPole-v1", "hydra.sweeper.n_trials=3", "total_steps=1024", "eval.interval=512",
                 "eval.episodes=2", f"hydra.sweep.dir={sweep_dir}", timeout=600)
    assert result.returncode == 0, result.stderr
    jobs = rows(sweep_dir)
    assert len(jobs) == 3 and all(job["status"] == "completed" for job in jobs)
    assert all("algo.lr=" in job["overrides"] and "algo.n_steps=" in job["overrides"] for job in jobs)
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert results["trials"] == {"complete": 3}
    assert results["best_value"] == max(job["final_return_mean"] for job in jobs)
    assert set(results["best_params"]) == {"algo.lr", "algo.n_steps", "algo.batch_size", "algo.n_epochs",
                                           "algo.gamma", "algo.gae_lambda", "algo.clip_range", "algo.ent_coef"}
    config = yaml.safe_load(next(sweep_dir.glob("0_*/.hydra/config.yaml")).read_text())
    assert config["algo"]["name"] == "ppo" and config["total_steps"] == 1024  # the search's algo, our override


def test_trials_that_trail_the_median_are_pruned_at_their_first_evaluation(cli, tmp_path):
    # ConstEnv pays exactly the sampled reward, so a 0.0 trial trails every 1.0 trial from its
    # first evaluation (step 50) on; with n_startup_trials=1 the pruner acts from trial 1 on.
    sweep_dir = tmp_path / "sweep"
    # (algo.gamma makes every trial's values differ, so no trial repeats an earlier one)
    result = cli("-m", *CONST, "hydra.sweeper.n_trials=5", "hydra.sweeper.n_startup_trials=1",
                 "algo.gamma=interval(0.9,0.99)", "+env.kwargs.reward=choice(0.0,1.0)", f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 0, result.stderr  # pruning is an outcome of a search, not a failure
    jobs = rows(sweep_dir)
    rewards = [job["overrides"].split("=")[-1] for job in jobs]
    first_good = rewards.index("1.0")
    for i, (job, reward) in enumerate(zip(jobs, rewards, strict=True)):
        expected = "pruned" if reward == "0.0" and i > first_good else "completed"
        assert job["status"] == expected, (i, reward, job)
    pruned = [job for job in jobs if job["status"] == "pruned"]
    assert pruned, "this seed of the random sampler draws a 0.0 after a 1.0"
    summary = json.loads((tmp_path / "sweep" / pruned[0]["dir"].split("/")[-1] / "summary.json").read_text())
    assert summary["status"] == "pruned" and summary["total_steps"] == 50
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert results["trials"]["pruned"] == len(pruned) and results["best_value"] == 1.0


def test_each_trial_can_average_several_seeds(cli, tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = cli("-m", *CONST, "hydra.sweeper.n_trials=2", "hydra.sweeper.seeds_per_trial=2", "hydra.sweeper.pruner=none",
                 "+env.kwargs.reward=interval(0.0,1.0)", f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 0, result.stderr
    jobs = rows(sweep_dir)
    seeds = [json.loads((sweep_dir / job["dir"].split("/")[-1] / "summary.json").read_text())["seed"] for job in jobs]
    assert seeds == [0, 1, 0, 1]  # two trials, each run with seeds 0 and 1
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert results["trials"] == {"complete": 2}
    finals = [job["final_return_mean"] for job in jobs]
    assert results["best_value"] == pytest.approx(max((finals[0] + finals[1]) / 2, (finals[2] + finals[3]) / 2))


def test_a_trial_that_repeats_an_earlier_ones_values_is_not_trained_again(cli, tmp_path):
    # One setting only: two trials per batch (the second repeats the first within its batch),
    # then a batch of one that repeats an earlier batch. Only trial 0 trains, on its two seeds.
    import optuna

    sweep_dir = tmp_path / "sweep"
    result = cli("-m", *CONST, "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=2", "hydra.sweeper.seeds_per_trial=2",
                 "+env.kwargs.reward=choice(0.5)", f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 0, result.stderr
    assert len(rows(sweep_dir)) == 2  # trial 0's seeds 0 and 1, nothing else
    assert "Trial 2 repeats trial 0's values: not trained again (complete, 0.5)" in result.stdout + result.stderr
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{sweep_dir / 'optuna.db'}")
    assert [t.value for t in study.trials] == [0.5, 0.5, 0.5]
    assert [t.user_attrs.get("repeat_of") for t in study.trials] == [None, 0, 0]
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert results["trials"] == {"complete": 3} and results["repeats"] == 2

    # Continued in the same directory with other seeds, the earlier trials are not reused.
    again = cli("-m", *CONST, "seed=7", "hydra.sweeper.n_trials=1", "+env.kwargs.reward=choice(0.5)",
                f"hydra.sweep.dir={sweep_dir}")
    assert again.returncode == 0, again.stderr
    assert len(list(sweep_dir.glob("*/summary.json"))) == 3  # one more run: seed 7
    assert "repeat_of" not in optuna.load_study(study_name=None, storage=f"sqlite:///{sweep_dir / 'optuna.db'}").trials[-1].user_attrs


def test_a_search_with_nothing_to_search_is_refused(cli, tmp_path):
    result = cli("-m", "hydra/sweeper=optuna", "seed=1", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert result.returncode == 2
    assert "nothing to search" in result.stderr and "Traceback" not in result.stderr
