"""The seed ensemble: a soft vote of one configuration's seed runs, evaluated like one run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from stable_baselines3.common.vec_env import DummyVecEnv

from agents.ensemble import EnsembleError, SeedEnsemble, seed_runs
from experiments.ledger import read_ledger
from tests.test_walkforward import _tiny_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def seeds_dir(tmp_path_factory):
    from experiments.walkforward import run_seeds
    from himari_env.data import synthesize_market

    folder = tmp_path_factory.mktemp("ensemble")
    data = folder / "market.parquet"
    synthesize_market(5_000, 3).frame.to_parquet(data)
    run_seeds(_tiny_config(data), seeds=[0, 1, 2], run_dir=folder / "seeds")
    return folder / "seeds"


def _members(seeds_dir: Path):
    from agents.config import ExperimentConfig
    from agents.ppo import load_ppo
    from himari_env.artifacts import RunArtifacts
    from himari_env.pipeline import prepare_market
    from wrappers.stack import load_frame, make_himari_env

    runs = seed_runs(seeds_dir)
    config = ExperimentConfig.from_dict(json.loads((runs[0] / "config.json").read_text()))
    bundle = RunArtifacts.load(runs[0])
    prepared = prepare_market(load_frame(config.env.data), artifacts=bundle)
    kwargs = config.env.env_kwargs(split="test", episode_length=None)
    kwargs.pop("data")
    kwargs.pop("seed")

    def make_env():
        return make_himari_env(prepared, **kwargs, artifacts=bundle)

    probe = DummyVecEnv([make_env])
    models = [load_ppo(run / "best" / "best_model.zip", probe, config) for run in runs]
    return models, make_env


def test_the_vote_is_the_argmax_of_the_members_mean_probabilities(seeds_dir):
    models, make_env = _members(seeds_dir)
    ensemble = SeedEnsemble(models)
    alone = SeedEnsemble(models[:1])
    env = make_env()
    observation, _ = env.reset(seed=0)
    for _ in range(60):
        member_probs = []
        for model in models:
            obs_tensor, _ = model.policy.obs_to_tensor(observation)
            with torch.no_grad():
                member_probs.append(model.policy.get_distribution(obs_tensor).distribution.probs.numpy().ravel())
        mean = np.mean(np.asarray(member_probs, dtype=np.float64), axis=0)
        np.testing.assert_allclose(ensemble.action_probabilities(observation), mean, rtol=1e-12)
        action, _ = ensemble.predict(observation)
        assert action == int(np.argmax(mean))
        assert alone.predict(observation)[0] == int(models[0].predict(observation, deterministic=True)[0])
        observation, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            break
    with pytest.raises(ValueError, match="deterministic only"):
        ensemble.predict(observation, deterministic=False)


def test_the_vote_is_deterministic_with_dropout_in_the_extractor():
    import dataclasses

    from agents.ppo import build_ppo
    from tests.test_extractor import TinyRegimeEnv, tiny_config

    config = tiny_config()
    config = dataclasses.replace(config, extractor=dataclasses.replace(config.extractor, dropout=0.5))
    env = DummyVecEnv([TinyRegimeEnv])
    models = [build_ppo(env, config, tensorboard_log=None, seed=seed) for seed in (0, 1)]
    assert all(model.policy.training for model in models)  # as SB3 builds (and load_ppo loads) them
    ensemble = SeedEnsemble(models)
    observation, _ = TinyRegimeEnv().reset(seed=0)
    first = ensemble.action_probabilities(observation)
    for _ in range(5):
        np.testing.assert_array_equal(ensemble.action_probabilities(observation), first)
    alone = SeedEnsemble(models[:1])
    assert alone.predict(observation)[0] == int(models[0].predict(observation, deterministic=True)[0])


def test_a_tie_goes_to_hold(seeds_dir):
    models, make_env = _members(seeds_dir)
    with torch.no_grad():
        for model in models:
            model.policy.action_net.weight.zero_()
            model.policy.action_net.bias.zero_()
    observation, _ = make_env().reset(seed=0)
    probs = SeedEnsemble(models).action_probabilities(observation)
    assert np.allclose(probs, probs[0]) and SeedEnsemble(models).predict(observation)[0] == 0


def test_members_must_be_one_configuration_on_one_bundle(seeds_dir, tmp_path):
    assert [p.name for p in seed_runs(seeds_dir)] == ["seed0", "seed1", "seed2"]
    assert [p.name for p in seed_runs(seeds_dir, [2, 0])] == ["seed0", "seed2"]
    with pytest.raises(EnsembleError, match=r"no finished run for seed\(s\) \[5\]"):
        seed_runs(seeds_dir, [0, 5])
    lone = tmp_path / "lone"
    shutil.copytree(seeds_dir / "seed0", lone / "seed0")
    with pytest.raises(EnsembleError, match="at least two finished seed runs"):
        seed_runs(lone)
    mixed = tmp_path / "mixed"
    shutil.copytree(seeds_dir / "seed0", mixed / "seed0")
    shutil.copytree(seeds_dir / "seed1", mixed / "seed1")
    config = json.loads((mixed / "seed1" / "config.json").read_text())
    config["ppo"]["learning_rate"] = 1e-3
    (mixed / "seed1" / "config.json").write_text(json.dumps(config))
    with pytest.raises(EnsembleError, match="differ in configuration"):
        seed_runs(mixed)
    unfinished = tmp_path / "unfinished"
    for seed in ("seed0", "seed1", "seed2"):
        shutil.copytree(seeds_dir / seed, unfinished / seed)
    (unfinished / "seed2" / "training_summary.json").unlink()  # stopped after a validation pass
    assert [p.name for p in seed_runs(unfinished)] == ["seed0", "seed1"]
    with pytest.raises(EnsembleError, match=r"no finished run for seed\(s\) \[2\]"):
        seed_runs(unfinished, [0, 2])
    refitted = tmp_path / "refitted"
    shutil.copytree(seeds_dir / "seed0", refitted / "seed0")
    shutil.copytree(seeds_dir / "seed1", refitted / "seed1")
    risk_file = refitted / "seed1" / "artifacts" / "risk_config.json"
    risk = json.loads(risk_file.read_text())
    risk["vol_target"]["target_vol"] *= 1.5  # a bundle fitted on other data
    risk_file.write_text(json.dumps(risk))
    with pytest.raises(EnsembleError, match="fitted on different data or code"):
        seed_runs(refitted)


def test_the_ensemble_is_evaluated_like_a_run_and_its_test_look_is_recorded(seeds_dir):
    from experiments.evaluate import evaluate_run

    members_before = {seed: (seeds_dir / seed / "report.json").read_bytes() for seed in ("seed0", "seed1", "seed2")}
    report = evaluate_run(seeds_dir, split="test", ensemble=True)
    out = seeds_dir / "ensemble"
    assert (out / "report.json").is_file() and (out / "report.md").is_file() and (out / "equity_test.npz").is_file()
    assert report["model"].startswith("seed ensemble (soft vote) of ") and report["model"].count("best_model.zip") == 3
    test = report["splits"]["test"]
    assert np.isfinite(test["agent"]["sharpe"]) and "buy_and_hold" in test["baselines"]
    ledger = Path(json.loads((seeds_dir / "seed0" / "training_summary.json").read_text())["ledger"])
    looks = [e for e in read_ledger(ledger) if e["kind"] == "test_look" and e["run_dir"] == str(out)]
    assert len(looks) == 1 and looks[0]["tag"] == "seed-ensemble" and looks[0]["split"] == "test"
    from experiments.evaluate import run_pass

    models, make_env = _members(seeds_dir)
    ensemble = SeedEnsemble(models)
    replay = run_pass(make_env(), lambda observation, bar: ensemble.predict(observation)[0], seed=0)
    np.testing.assert_array_equal(np.load(out / "equity_test.npz")["actions"], replay.actions)
    np.testing.assert_array_equal(np.load(out / "equity_test.npz")["agent_equity"], replay.equity)
    for seed, before in members_before.items():
        assert (seeds_dir / seed / "report.json").read_bytes() == before  # the members' reports are left alone
