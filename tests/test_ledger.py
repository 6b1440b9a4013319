"""The trials ledger: append-only JSON lines, stable config hash, concurrent appends."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import pytest

from experiments.ledger import (
    append_entry,
    config_hash,
    data_hash,
    ledger_path,
    read_ledger,
    record_test_look,
    record_training,
    trial_validation_sharpes,
)

CONFIG = {"name": "a", "env": {"data": "synthetic", "market_seed": 3}, "ppo": {"learning_rate": 3e-4},
          "train": {"seed": 0, "run_name": "x", "runs_dir": "runs", "total_timesteps": 10}}


def test_config_hash_ignores_seed_and_names_but_not_hyperparameters() -> None:
    other_seed = json.loads(json.dumps(CONFIG))
    other_seed["train"].update(seed=5, run_name="y", runs_dir="elsewhere")
    other_seed["name"] = "b"
    assert config_hash(other_seed) == config_hash(CONFIG)
    other_lr = json.loads(json.dumps(CONFIG))
    other_lr["ppo"]["learning_rate"] = 1e-4
    assert config_hash(other_lr) != config_hash(CONFIG)


def test_the_design_logs_risk_section_hashes_as_a_config_without_one() -> None:
    from agents.config import ExperimentConfig, RiskSettings
    from himari_env.risk.regime_multipliers import RegimeMultipliers

    with_default = ExperimentConfig().to_dict()
    without = {key: value for key, value in with_default.items() if key != "risk"}
    assert config_hash(with_default) == config_hash(without)
    other = ExperimentConfig(risk=RiskSettings(regime_multipliers=RegimeMultipliers(crisis=0.5))).to_dict()
    assert config_hash(other) != config_hash(with_default)


def test_data_hash_of_file_bytes_and_embedded_markets(tmp_path: Path) -> None:
    a = tmp_path / "a.csv"
    a.write_text("1,2\n")
    b = tmp_path / "b.csv"
    b.write_text("1,3\n")
    assert data_hash(a) != data_hash(b)
    assert data_hash(a) == data_hash(tmp_path / "a.csv")
    assert data_hash("synthetic", market_seed=4) == "synthetic:4"
    with pytest.raises(FileNotFoundError, match=r"missing\.csv"):
        data_hash(tmp_path / "missing.csv")


def test_records_are_appended_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    record_training(path, run_dir="r0", config=CONFIG, seed=0, timesteps=10,
                    validation={"metric": "sharpe", "value": 0.5, "num_timesteps": 8}, fold=1, tag="walkforward")
    record_training(path, run_dir="r1", config=CONFIG, seed=1, timesteps=10, validation=None)
    record_test_look(path, run_dir="r0", config=CONFIG, split="test", sharpe=1.2)
    entries = read_ledger(path)
    assert [e["kind"] for e in entries] == ["train", "train", "test_look"]
    assert entries[0]["fold"] == 1 and entries[0]["data_hash"] == "synthetic:3"
    assert entries[0]["test_looked"] is False and entries[2]["test_looked"] is True
    assert trial_validation_sharpes(entries) == [0.5]


def test_bad_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    append_entry({"kind": "train"}, path)
    with path.open("a") as handle:
        handle.write("{not json\n")
    with pytest.raises(ValueError, match=r"ledger.jsonl: line 2 is not JSON"):
        read_ledger(path)


def test_ledger_path_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HIMARI_LEDGER", raising=False)
    assert ledger_path("some/runs") == Path("some/runs/ledger.jsonl")
    monkeypatch.setenv("HIMARI_LEDGER", str(tmp_path / "l.jsonl"))
    assert ledger_path("some/runs") == tmp_path / "l.jsonl"


def _append_many(path: str, worker: int) -> None:
    for i in range(50):
        append_entry({"kind": "train", "worker": worker, "i": i, "pad": "x" * 2000}, path)


def test_concurrent_appends_never_interleave(tmp_path: Path) -> None:
    path = str(tmp_path / "ledger.jsonl")
    context = mp.get_context("fork")
    workers = [context.Process(target=_append_many, args=(path, w)) for w in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    entries = read_ledger(path)
    assert len(entries) == 150
    assert sorted((e["worker"], e["i"]) for e in entries) == [(w, i) for w in range(3) for i in range(50)]


def test_the_vectorization_path_is_not_a_new_configuration():
    """The batched env and the subprocess workers (window or index observations) train the
    same model bit for bit, so the trials ledger counts them as one configuration."""
    import dataclasses

    from agents.config import load_config
    from experiments.ledger import config_hash

    config = load_config("experiments/configs/cpu-small.yaml")
    subproc = dataclasses.replace(config, train=dataclasses.replace(config.train, vectorization="subproc"))
    index = dataclasses.replace(config, train=dataclasses.replace(config.train, observation_mode="index"))
    other = dataclasses.replace(config, ppo=dataclasses.replace(config.ppo, n_epochs=5))
    assert config_hash(config.to_dict()) == config_hash(subproc.to_dict()) == config_hash(index.to_dict())
    assert config_hash(config.to_dict()) != config_hash(other.to_dict())
