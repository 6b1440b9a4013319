"""Walk-forward folds: expanding windows that never reach past their own test window, the
outputs, the trials ledger; and ``himari train --seeds``."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments.ledger import read_ledger
from experiments.walkforward import LEADING_BLOCKS, aggregate, fold_table, walkforward_folds


def test_folds_expand_and_tile_the_last_blocks_before_end():
    index = pd.date_range("2020-01-01", periods=35_064 + 8_784, freq="h", tz="UTC")  # 2020-2024
    folds = walkforward_folds(index, 4, end="2024-01-01")
    end = int(index.searchsorted(pd.Timestamp("2024-01-01", tz="UTC")))
    block = end // (4 + LEADING_BLOCKS)
    assert [f.test_end - f.val_end for f in folds] == [block] * 4
    assert all(f.val_end - f.train_end == block for f in folds)
    assert [f.train_end for f in folds] == [3 * block, 4 * block, 5 * block, 6 * block]
    assert folds[-1].test_end <= end  # 2024 stays the final test
    for earlier, later in itertools.pairwise(folds):
        assert later.val_end == earlier.test_end  # each fold validates where the previous one tested
    train, val, test = folds[0].split_fractions(720)
    assert train + val + test == pytest.approx(1.0) and val == pytest.approx(test)


def test_too_many_folds_is_a_named_error():
    index = pd.date_range("2020-01-01", periods=3_000, freq="h", tz="UTC")
    with pytest.raises(ValueError, match="--folds 20"):
        walkforward_folds(index, 20, end=None)


def _tiny_config(data: Path):
    from agents.config import load_config

    config = load_config("experiments/configs/cpu-small.yaml")
    return dataclasses.replace(
        config,
        env=dataclasses.replace(config.env, data=str(data), episode_length=256, decision_interval=4, context=8),
        ppo=dataclasses.replace(config.ppo, n_steps=64, batch_size=64, n_epochs=1),
        train=dataclasses.replace(config.train, n_envs=1, total_timesteps=128, eval_freq=64, checkpoint_freq=0,
                                  verbose=0),
    )


@pytest.mark.slow
def test_walkforward_end_to_end_on_a_small_market(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from experiments.walkforward import run_walkforward
    from himari_env.data import synthesize_market

    data = tmp_path / "market.parquet"
    frame = synthesize_market(7_200, 2).frame
    frame.to_parquet(data)
    ledger = tmp_path / "ledger.jsonl"
    document = run_walkforward(_tiny_config(data), data=str(data), n_folds=2, seeds=[0, 1], run_dir=tmp_path / "wf",
                               end=None, ledger=ledger, ensemble=True)
    saved = json.loads((tmp_path / "wf" / "walkforward.json").read_text())
    assert len(saved["folds"]) == 2 and all(set(f["seeds"]) == {"0", "1"} for f in saved["folds"])
    for fold in saved["folds"]:
        # No fold is given a bar after its own test window.
        fold_data = pd.read_parquet(tmp_path / "wf" / f"fold{fold['fold']}" / "data.parquet")
        assert str(fold_data.index[-1]) == fold["windows"]["test"][1]
        for seed in fold["seeds"].values():
            test = seed["splits"]["test"]
            assert {"buy_and_hold", "momentum_168_ls", "ma_cross_ls", "regime_gated", "supervised_hgb",
                    "vol_target_bh", "flat", "random"} <= set(test["baselines"])
            assert {"psr_vs_zero", "dsr", "bootstrap_pvalue_vs_best_baseline"} <= set(test["significance"])
    entries = read_ledger(ledger)
    assert len(entries) == 4 and {e["fold"] for e in entries} == {0, 1}  # the ensembles add no line
    for fold in saved["folds"]:  # each fold's seed ensemble, scored on the same windows
        fold_dir = tmp_path / "wf" / f"fold{fold['fold']}"
        assert fold["ensemble"]["splits"]["test"]["period"] == fold["seeds"]["0"]["splits"]["test"]["period"]
        assert (fold_dir / "ensemble" / "report.json").is_file()
        assert json.loads((fold_dir / "ensemble" / "report.json").read_text())["model"].count("best_model.zip") == 2
    ensemble_row = aggregate(saved)["agent (seed ensemble)"]["sharpe"]
    assert ensemble_row["n"] == 2
    assert ensemble_row["median"] == pytest.approx(
        float(np.median([f["ensemble"]["splits"]["test"]["agent"]["sharpe"] for f in saved["folds"]])))
    assert "| agent (seed ensemble) " in (tmp_path / "wf" / "walkforward.md").read_text()
    with pytest.raises(ValueError, match="--ensemble needs at least two seeds"):
        run_walkforward(_tiny_config(data), data=str(data), n_folds=2, seeds=[0], run_dir=tmp_path / "wf1",
                        end=None, ledger=ledger, ensemble=True)

    # --resume adds a seed: the finished runs are scored again, not retrained.
    import experiments.train

    trained: list[str] = []
    real_train = experiments.train.train

    def counting_train(config, **kwargs):
        trained.append(str(kwargs["run_dir"]))
        return real_train(config, **kwargs)

    monkeypatch.setattr(experiments.train, "train", counting_train)
    again = run_walkforward(_tiny_config(data), data=str(data), n_folds=2, seeds=[0, 1, 2], run_dir=tmp_path / "wf",
                            end=None, ledger=ledger, resume=True)
    assert sorted(Path(p).name for p in trained) == ["seed2", "seed2"]
    for before, after in zip(document["folds"], again["folds"], strict=True):
        assert after["seeds"]["0"]["splits"]["test"]["agent"] == before["seeds"]["0"]["splits"]["test"]["agent"]
    assert len(read_ledger(ledger)) == 6
    other = _tiny_config(data)
    other = dataclasses.replace(other, ppo=dataclasses.replace(other.ppo, learning_rate=1e-3))
    with pytest.raises(ValueError, match=r"--resume: .*seed0 was trained with other settings"):
        run_walkforward(other, data=str(data), n_folds=2, seeds=[0], run_dir=tmp_path / "wf", end=None,
                        ledger=ledger, resume=True)
    assert all(e["kind"] == "train" and e["tag"] == "walkforward" for e in entries)
    table = aggregate(document)
    assert table["agent"]["sharpe"]["n"] == 4 and table["buy_and_hold"]["sharpe"]["n"] == 2
    markdown = (tmp_path / "wf" / "walkforward.md").read_text()
    assert "median [IQR]" in markdown and (tmp_path / "wf" / "walkforward_sharpe.png").stat().st_size > 10_000
    assert table["agent"]["timing_p"]["n"] == 4
    # One value a fold (the median seed), like a baseline's row; the pooled row has one a run.
    per_fold = [np.median([seed["splits"]["test"]["agent"]["sharpe"] for seed in fold["seeds"].values()])
                for fold in document["folds"]]
    assert table["agent (median seed per fold)"]["sharpe"]["n"] == 2
    assert table["agent (median seed per fold)"]["sharpe"]["median"] == pytest.approx(np.median(per_fold))
    rows = fold_table(document)
    assert [row["agent_median"] for row in rows] == pytest.approx(per_fold)
    assert all(row["best_baseline_sharpe"] >= row["buy_and_hold"] for row in rows)
    assert "## test Sharpe per fold" in markdown and "The median seed beats buy-and-hold in" in markdown
    assert "Agent timing test (its holding periods reordered: same trades, same time long): p median" in markdown


@pytest.mark.slow
def test_train_seeds_aggregates_validation_without_looking_at_test(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from experiments.walkforward import run_seeds
    from himari_env.data import synthesize_market

    data = tmp_path / "market.parquet"
    synthesize_market(5_000, 1).frame.to_parquet(data)
    ledger = tmp_path / "ledger.jsonl"
    monkeypatch.setenv("HIMARI_LEDGER", str(ledger))
    document = run_seeds(_tiny_config(data), seeds=[0, 1], run_dir=tmp_path / "seeds")
    assert set(document["folds"][0]["seeds"]) == {"0", "1"}
    assert "test" not in document["folds"][0]["seeds"]["0"]["splits"]
    entries = read_ledger(ledger)
    assert [e["kind"] for e in entries] == ["train", "train"]  # no test look
    assert (tmp_path / "seeds" / "seeds.md").read_text().count("agent") >= 1
