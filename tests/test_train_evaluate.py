"""End to end: a tiny training run writes a complete run folder, and its evaluation report
matches a recomputation from the saved equity curves."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from agents.config import RiskSettings, load_config
from experiments.evaluate import evaluate_run
from experiments.train import train
from himari_env.data import synthesize_market
from himari_env.metrics import performance_summary
from himari_env.risk.config import RiskConfig
from himari_env.risk.drawdown_brake import DrawdownBrakeParams
from himari_env.risk.regime_multipliers import RegimeMultipliers
from tests.conftest import REPO_ROOT
from wrappers.stack import load_frame

RUN_RISK = RiskSettings(drawdown_brake=DrawdownBrakeParams((0.10, 0.20), (0.5, 0.9)),
                        regime_multipliers=RegimeMultipliers(1.0, 1.0, 0.8, 0.5), rebalance_band=0.4)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("e2e")
    data_path = folder / "market.parquet"
    synthesize_market(n_bars=3000, seed=11).frame.to_parquet(data_path)
    config = load_config(REPO_ROOT / "experiments" / "configs" / "cpu-small.yaml")
    config = dataclasses.replace(
        config,
        env=dataclasses.replace(config.env, data=str(data_path), episode_length=128),
        ppo=dataclasses.replace(config.ppo, n_steps=64, batch_size=64, n_epochs=2),
        train=dataclasses.replace(config.train, total_timesteps=384, n_envs=1, eval_freq=192,
                                  checkpoint_freq=128, verbose=0),
        risk=RUN_RISK,
    )
    train(config, run_dir=folder / "run")
    return folder / "run"


def test_training_writes_config_pipeline_models_and_checkpoints(run_dir):
    for name in ("config.json", "artifacts/manifest.json", "artifacts/pipeline/pipeline.json",
                 "artifacts/pipeline/pipeline_scaler.npz", "artifacts/risk_config.json", "artifacts/tail.npz",
                 "artifacts/validation.json", "final_model.zip", "best/best_model.zip", "best/best_metric.json",
                 "checkpoints/latest.json", "training_summary.json"):
        assert (run_dir / name).is_file(), name
    assert not list(run_dir.rglob("*.pkl"))
    summary = json.loads((run_dir / "training_summary.json").read_text())
    assert summary["timesteps"] == 384


def test_the_configs_risk_section_is_the_runs_calibrated_rss_layer(run_dir):
    fitted = RiskConfig.load(run_dir / "artifacts" / "risk_config.json")
    assert fitted.is_calibrated
    assert fitted.drawdown_brake == RUN_RISK.drawdown_brake
    assert fitted.regime_multipliers == RUN_RISK.regime_multipliers
    assert fitted.rebalance_band == RUN_RISK.rebalance_band
    assert json.loads((run_dir / "config.json").read_text())["risk"]["rebalance_band"] == 0.4


def test_tensorboard_events_hold_the_per_regime_share_scalars(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    event_files = list((run_dir / "tb").rglob("events.out.tfevents.*"))
    assert event_files
    tags = set()
    for path in event_files:
        accumulator = EventAccumulator(str(path))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    assert any(tag.startswith("regime/") and tag.endswith("hold_share") for tag in tags), sorted(tags)
    for tag in ("train/approx_kl", "train/clip_fraction", "train/explained_variance", "train/entropy_loss",
                "time/fps"):
        assert tag in tags, tag


def test_evaluation_report_matches_a_recomputation_from_the_saved_curves(run_dir):
    report = evaluate_run(run_dir, split="all")
    assert set(report["splits"]) == {"train", "val", "test"}
    for name in ("report.json", "report.md", "equity_test.png", "drawdown_test.png", "actions_by_regime.png"):
        assert (run_dir / name).is_file(), name
    stored = json.loads((run_dir / "report.json").read_text())
    for label in ("train", "test"):
        with np.load(run_dir / f"equity_{label}.npz", allow_pickle=False) as curves:
            recomputed = performance_summary(curves["agent_equity"], curves["agent_positions"])
            for metric, value in recomputed.items():
                assert stored["splits"][label]["agent"][metric] == pytest.approx(value, rel=1e-12, abs=1e-12)
            bh = performance_summary(curves["buy_and_hold_equity"], curves["buy_and_hold_positions"])
            assert stored["splits"][label]["baselines"]["buy_and_hold"]["total_return"] == pytest.approx(bh["total_return"])
            shares = stored["splits"][label]["actions"]["Overall"]
            counts = np.bincount(curves["actions"], minlength=3) / len(curves["actions"])
            assert [shares["HOLD"], shares["LONG"], shares["SHORT"]] == pytest.approx(counts.tolist())
    assert "HOLD=" in (run_dir / "report.md").read_text()


def test_every_split_but_train_carries_the_timing_test_of_the_agents_own_decisions(run_dir):
    report = json.loads((run_dir / "report.json").read_text())
    text = (run_dir / "report.md").read_text()
    assert "timing" not in report["splits"]["train"]  # the policy was fitted there
    for label, section in report["splits"].items():
        if label == "train":
            continue
        timing = section["timing"]
        assert timing["sharpe"] == pytest.approx(section["agent"]["sharpe"], abs=1e-6)  # the replay is the pass
        assert 0.0 < timing["p_value"] <= 1.0
        assert timing["n_decisions"] == section["actions"]["Overall"]["bars"]
        assert f"- {label}, timing test: Sharpe" in text


def test_himari_timing_recomputes_the_reports_timing_test_from_the_saved_decisions(run_dir, capsys):
    from experiments.cli import main
    from experiments.timing_report import saved_pass_timing

    report = json.loads((run_dir / "report.json").read_text())
    for label in ("val", "test"):
        assert saved_pass_timing(run_dir, split=label).to_dict() == pytest.approx(report["splits"][label]["timing"])
    assert main(["timing", str(run_dir), "--split", "test"]) == 0
    assert capsys.readouterr().out.startswith("test, timing test: Sharpe ")
    assert main(["timing", str(run_dir), "--split", "unseen"]) == 2
    assert "no saved pass" in capsys.readouterr().err


def test_flat_baseline_keeps_equity_and_buy_and_hold_pays_one_fee(run_dir):
    report = json.loads((run_dir / "report.json").read_text())
    test = report["splits"]["test"]["baselines"]
    assert test["flat"]["total_return"] == 0.0 and test["flat"]["trade_count"] == 0
    assert test["buy_and_hold"]["trade_count"] == 1


def test_evaluate_full_prints_every_baseline_and_the_significance(run_dir, capsys):
    from experiments.cli import main

    assert main(["evaluate", str(run_dir), "--full"]) == 0
    out = capsys.readouterr().out
    for name in ("buy-and-hold", "vol_target_bh", "momentum_24_ls", "momentum_168_lf", "momentum_720_ls",
                 "ma_cross_ls", "ma_cross_lf", "regime_gated", "supervised_hgb", "flat", "random",
                 "buy_and_hold+rss", "momentum_720_lf+rss"):
        assert name in out, name
    assert "## Significance" in out and "PSR vs 0" in out and "DSR" in out


def test_resume_continues_from_the_checkpoint_and_keeps_the_best_model_and_history(run_dir):
    # Fault 1: on resume the validation restarted from minus infinity and an empty history, so
    # the first (worse) evaluation after it replaced best_model.zip and erased the history.
    from agents.config import ExperimentConfig
    from himari_env.artifacts import ValidationState

    before = json.loads((run_dir / "best" / "evaluations.json").read_text())
    best_before = json.loads((run_dir / "best" / "best_metric.json").read_text())
    model_before = (run_dir / "best" / "best_model.zip").read_bytes()
    config = ExperimentConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, total_timesteps=640))
    summary = train(config, run_dir=run_dir, resume=True)
    assert summary["timesteps"] == 640
    assert summary["timesteps_this_session"] == 640 - 384
    after = json.loads((run_dir / "best" / "evaluations.json").read_text())
    assert after[: len(before)] == before
    assert [record["num_timesteps"] for record in after[len(before):]] == [576]  # every 192 steps, continued
    best_after = json.loads((run_dir / "best" / "best_metric.json").read_text())
    assert best_after["value"] == max(record["value"] for record in after if record["eligible"])
    assert best_after["value"] >= best_before["value"]
    if best_after["num_timesteps"] == best_before["num_timesteps"]:
        assert (run_dir / "best" / "best_model.zip").read_bytes() == model_before
    state = ValidationState.load(run_dir / "artifacts" / "validation.json")
    assert state.history == after and state.best_value == best_after["value"]
    assert summary["best_validation"] == best_after


def test_training_into_an_existing_run_is_refused_without_resume_or_overwrite(run_dir):
    # Fault 6: a second run silently mixed its files with the first one's.
    from agents.config import ExperimentConfig
    from experiments.train import RunDirExistsError

    config = ExperimentConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    listing = sorted(path.name for path in run_dir.iterdir())
    with pytest.raises(RunDirExistsError, match=r"already holds a run .*--resume .*--overwrite"):
        train(config, run_dir=run_dir)
    with pytest.raises(ValueError, match="exclude each other"):
        train(config, run_dir=run_dir, resume=True, overwrite=True)
    assert sorted(path.name for path in run_dir.iterdir()) == listing


def test_the_cli_refuses_an_existing_run_folder_in_one_line(run_dir, capsys):
    from experiments.cli import main

    assert main(["train", "--run-dir", str(run_dir), "--timesteps", "64"]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and str(run_dir) in error and "--overwrite" in error


def test_overwrite_removes_the_previous_runs_entries_and_nothing_else(tmp_path):
    from experiments.train import _claim_run_dir

    for name in ("config.json", "report.md", "final_model.zip", "equity_test.png", "notes.txt"):
        (tmp_path / name).write_text("old")
    for folder in ("best", "checkpoints", "artifacts", "tb"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "file").write_text("old")
    _claim_run_dir(tmp_path, resume=False, overwrite=True)
    assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]
    _claim_run_dir(tmp_path / "fresh", resume=False, overwrite=False)  # an absent folder is free


def test_unseen_data_is_evaluated_with_the_runs_fitted_pipeline(run_dir, tmp_path):
    config = json.loads((run_dir / "config.json").read_text())
    in_sample = load_frame(config["env"]["data"])
    later = synthesize_market(n_bars=2000, seed=12, start=in_sample.index[-1] + pd.Timedelta(hours=1)).frame
    unseen_path = tmp_path / "later.parquet"
    later.to_parquet(unseen_path)
    report = evaluate_run(run_dir, split="unseen", data=str(unseen_path), write=False)
    assert set(report["splits"]) == {"train", "test", "unseen"}
    unseen = report["splits"]["unseen"]
    # The run bundle's training tail is prepended: the first unseen bar is already scored
    # (fault 5: about 765 warm-up bars of the file were lost), and nothing is fitted on it.
    assert pd.Timestamp(unseen["period"][0], tz="UTC") == later.index[0]
    assert pd.Timestamp(unseen["period"][1], tz="UTC") == later.index[-1]
    assert unseen["agent"]["n_bars"] == len(later) - 1
    assert "unseen" in report["hold_table"]["Overall"]


def test_unseen_data_overlapping_the_training_data_is_refused(run_dir, tmp_path):
    config = json.loads((run_dir / "config.json").read_text())
    overlapping = load_frame(config["env"]["data"]).iloc[-1500:]
    path = tmp_path / "overlap.parquet"
    overlapping.to_parquet(path)
    with pytest.raises(ValueError, match="not after the training data"):
        evaluate_run(run_dir, split="unseen", data=str(path), write=False)


def test_a_fold_trains_on_a_given_frame_with_extra_callbacks_and_is_evaluated_on_it(run_dir, tmp_path):
    from stable_baselines3.common.callbacks import BaseCallback

    from agents.config import ExperimentConfig
    from himari_env.artifacts import RunArtifacts
    from himari_env.provenance import frame_digest

    class CountSteps(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.steps = 0

        def _on_step(self) -> bool:
            self.steps += 1
            return True

    config = ExperimentConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    config = dataclasses.replace(config, env=dataclasses.replace(config.env, risk=False),  # a short fold: no EVT
                                 train=dataclasses.replace(config.train, total_timesteps=128, eval_freq=64,
                                                           checkpoint_freq=0))
    fold_frame = load_frame(config.env.data).iloc[:2_600]
    counter = CountSteps()
    train(config, run_dir=tmp_path / "fold", fold=0, frame=fold_frame, extra_callbacks=[counter])
    assert counter.steps == 128
    bundle = RunArtifacts.load(tmp_path / "fold")
    assert bundle.data_hash == frame_digest(fold_frame) and bundle.n_bars == 2_600
    assert [record["num_timesteps"] for record in bundle.validation.history] == [64, 128]
    report = evaluate_run(tmp_path / "fold", split="test", frame=fold_frame, write=False)
    assert report["splits"]["test"]["period"][1].startswith(str(fold_frame.index[-1].tz_convert(None).date()))
    with pytest.raises(ValueError, match="differ from those the run bundle"):
        evaluate_run(tmp_path / "fold", split="test", write=False)  # the whole file is not the fold
