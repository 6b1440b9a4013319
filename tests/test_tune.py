"""``himari tune``: search-space validation, trial seeds, pruning, and a 4-trial SQLite study
run by two worker processes at once on the synthetic market."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest
import yaml

from agents.config import ConfigError, load_config
from experiments import tuning
from experiments.cli import main
from experiments.ledger import read_ledger
from experiments.train import train
from himari_env.data import synthesize_market

REPO_ROOT = Path(__file__).resolve().parents[1]

#: A few-second training run: 512 steps, a validation pass every 256 steps, no checkpoints.
TINY_CONFIG = {
    "name": "tiny",
    "env": {"data": "synthetic", "context": 16, "episode_length": 256, "risk": True},
    "extractor": {"d_model": 16, "n_layers": 1, "n_heads": 2, "dim_feedforward": 32},
    "ppo": {"n_steps": 128, "batch_size": 64, "n_epochs": 2, "ent_coef": 0.1, "device": "cpu",
            "net_arch_pi": [32], "net_arch_vf": [32]},
    "train": {"total_timesteps": 512, "n_envs": 1, "eval_freq": 256, "checkpoint_freq": 0, "verbose": 0,
              "torch_threads": 1},
}
TINY_SPACE = {
    "fixed": {"train.total_timesteps": 512},
    "params": {
        "ppo.learning_rate": {"type": "float", "low": 1.0e-4, "high": 1.0e-3, "log": True},
        "ppo.ent_coef": {"type": "float", "low": 0.05, "high": 0.15},
    },
}


def write_yaml(path: Path, document: dict) -> Path:
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def write_tiny_study(folder: Path) -> tuple[Path, Path]:
    """(config path, space path) of the tiny study, on a 3,000-bar synthetic market (the
    embedded generator, written to Parquet: its validation split is ~460 bars, so a
    validation pass takes a fraction of a second)."""
    data = folder / "synthetic-3000.parquet"
    synthesize_market(n_bars=3000, seed=5).frame.to_parquet(data)
    config = {**TINY_CONFIG, "env": {**TINY_CONFIG["env"], "data": str(data)},
              "train": {**TINY_CONFIG["train"], "runs_dir": str(folder / "runs")}}
    return write_yaml(folder / "tiny.yaml", config), write_yaml(folder / "space.yaml", TINY_SPACE)


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, Path]:
    """(config path, space path) of the tiny study."""
    return write_tiny_study(tmp_path)


# ---------------------------------------------------------------------------- search space


def test_the_shipped_space_fits_the_shipped_config() -> None:
    base = load_config(REPO_ROOT / "experiments" / "configs" / "cpu-small.yaml")
    space = tuning.load_space(REPO_ROOT / "experiments" / "spaces" / "cpu-small.yaml", base)
    keys = {spec.key for spec in space.params}
    assert {"ppo.learning_rate", "ppo.ent_coef", "env.context", "extractor.d_model"} <= keys
    assert space.fixed["train.total_timesteps"] > 0


def test_an_unknown_key_is_an_error_naming_it_and_the_space_file(tmp_path: Path) -> None:
    base = load_config(REPO_ROOT / "experiments" / "configs" / "cpu-small.yaml")
    path = write_yaml(tmp_path / "bad.yaml", {"params": {"ppo.entropy": {"type": "float", "low": 0.1, "high": 0.2}}})
    with pytest.raises(ConfigError, match=r"bad\.yaml.*'ppo\.entropy'.*ent_coef"):
        tuning.load_space(path, base)
    path = write_yaml(tmp_path / "bad2.yaml", {"fixed": {"risk.kelly": 0.5}, "params": TINY_SPACE["params"]})
    with pytest.raises(ConfigError, match=r"bad2\.yaml.*'risk\.kelly'"):
        tuning.load_space(path, base)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"train.eval_split": {"type": "categorical", "choices": ["val", "test"]}}, "cannot be tuned"),
        ({"train.seed": {"type": "int", "low": 0, "high": 9}}, "cannot be tuned"),
        ({"ppo.learning_rate": {"type": "float", "low": 1.0e-3, "high": 1.0e-4}}, "low < high"),
        ({"ppo.learning_rate": {"type": "float", "low": "3e-4", "high": 1.0e-3}}, "write 3.0e-4"),
        ({"ppo.learning_rate": {"type": "float", "low": 0.0, "high": 1.0e-3, "log": True}}, "low > 0"),
        ({"ppo.learning_rate": {"type": "normal", "low": 0.1, "high": 0.2}}, "type must be one of"),
        ({"ppo.learning_rate": {"type": "float", "low": 0.1, "high": 0.2, "scale": 2}}, "unknown field"),
        ({"ppo.learning_rate": {"type": "float", "low": -1.0, "high": 1.0e-3}}, "must be > 0"),
        ({"env.reward": {"type": "categorical", "choices": ["adaptive", "greedy"]}}, "greedy"),
        ({"env.context": {"type": "int", "low": 16.5, "high": 64}}, "integer"),
        ({"env.context": {"type": "categorical", "choices": []}}, "non-empty list"),
    ],
)
def test_invalid_spaces_are_refused_with_the_key(tmp_path: Path, params: dict, message: str) -> None:
    base = load_config(REPO_ROOT / "experiments" / "configs" / "cpu-small.yaml")
    path = write_yaml(tmp_path / "space.yaml", {"params": params})
    with pytest.raises(ConfigError, match=message) as error:
        tuning.load_space(path, base)
    assert "space.yaml" in str(error.value) and next(iter(params)) in str(error.value)


def test_overrides_replace_dotted_keys_and_are_type_checked() -> None:
    base = load_config(REPO_ROOT / "experiments" / "configs" / "cpu-small.yaml")
    changed = tuning.apply_overrides(base, {"ppo.ent_coef": 0.08, "env.context": 48, "extractor.d_model": 64})
    assert (changed.ppo.ent_coef, changed.env.context, changed.extractor.d_model) == (0.08, 48, 64)
    assert changed.ppo.learning_rate == base.ppo.learning_rate
    with pytest.raises(ConfigError, match=r"env\.context must be an integer"):
        tuning.apply_overrides(base, {"env.context": 32.5})


def test_trial_seeds_derive_from_study_and_number() -> None:
    assert tuning.trial_seed("demo", 3) == tuning.trial_seed("demo", 3)
    seeds = {tuning.trial_seed("demo", k) for k in range(100)}
    assert len(seeds) == 100 and all(0 <= seed < 2**31 for seed in seeds)
    assert tuning.trial_seed("other", 3) != tuning.trial_seed("demo", 3)


def test_the_objective_is_never_the_test_split(tmp_path: Path) -> None:
    config = {**TINY_CONFIG, "train": {**TINY_CONFIG["train"], "eval_split": "test"}}
    settings = tuning.TuneSettings(config=str(write_yaml(tmp_path / "c.yaml", config)),
                                   space=str(write_yaml(tmp_path / "s.yaml", TINY_SPACE)), study="s",
                                   storage=tuning.default_storage(tmp_path), run_dir=str(tmp_path), trials=1)
    with pytest.raises(ConfigError, match="'val' only"):
        tuning.tune(settings)


# ---------------------------------------------------------------------------- storage


def test_an_unreachable_storage_fails_with_one_line_naming_the_url(capsys: pytest.CaptureFixture[str],
                                                                   tiny: tuple[Path, Path]) -> None:
    url = "postgresql://himari:secret@127.0.0.1:1/nowhere"  # port 1: connection refused at once
    with pytest.raises(RuntimeError, match=r"cannot open the study storage postgresql://himari:\*\*\*@127\.0\.0\.1:1/nowhere"):
        tuning.open_storage(url)
    config, space = tiny
    status = main(["tune", "--config", str(config), "--space", str(space), "--trials", "1", "--study", "x",
                   "--storage", url])
    error = capsys.readouterr().err.strip()
    assert status == 2 and len(error.splitlines()) == 1
    assert "127.0.0.1:1/nowhere" in error and "secret" not in error


# ---------------------------------------------------------------------------- pruning


@pytest.mark.slow
def test_a_trial_far_below_the_median_is_pruned_early_and_still_counted(tmp_path: Path,
                                                                       tiny: tuple[Path, Path]) -> None:
    config, space = tiny
    settings = tuning.TuneSettings(config=str(config), space=str(space), study="prune",
                                   storage=tuning.default_storage(tmp_path), run_dir=str(tmp_path / "study"),
                                   trials=3)
    study = tuning.open_study(settings, create=True)
    # Two finished trials whose validation Sharpe was 50 at every pass: any real trial is
    # below their median at its first report.
    for value in (50.0, 51.0):
        study.add_trial(optuna.trial.create_trial(
            params={"ppo.learning_rate": 3.0e-4, "ppo.ent_coef": 0.1},
            distributions={"ppo.learning_rate": optuna.distributions.FloatDistribution(1.0e-4, 1.0e-3, log=True),
                           "ppo.ent_coef": optuna.distributions.FloatDistribution(0.05, 0.15)},
            value=value, intermediate_values={256: value, 512: value}))
    assert tuning.run_worker(settings) == 1
    trial = study.get_trials()[-1]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert trial.user_attrs["pruned_at"] == 256 and list(trial.intermediate_values) == [256]
    assert trial.user_attrs["timesteps"] < 512  # training stopped at the pruning point
    run_dir = Path(trial.user_attrs["run_dir"])
    assert (run_dir / "config.json").is_file() and (run_dir / "training_summary.json").is_file()
    (line,) = [e for e in read_ledger(tuning_ledger()) if e["run_dir"] == str(run_dir)]
    assert line["tag"] == "tune:prune" and line["seed"] == tuning.trial_seed("prune", trial.number)


@pytest.mark.slow
def test_the_last_validation_pass_never_prunes(tmp_path: Path, tiny: tuple[Path, Path]) -> None:
    config, _ = tiny
    # One validation pass, at the end: stopping there would save nothing, so the trial stays
    # COMPLETE with its value even though it is far below the median.
    space = write_yaml(tmp_path / "one-pass.yaml", {**TINY_SPACE, "fixed": {"train.eval_freq": 512}})
    settings = tuning.TuneSettings(config=str(config), space=str(space), study="last",
                                   storage=tuning.default_storage(tmp_path), run_dir=str(tmp_path / "study"),
                                   trials=2)
    study = tuning.open_study(settings, create=True)
    study.add_trial(optuna.trial.create_trial(
        params={"ppo.learning_rate": 3.0e-4, "ppo.ent_coef": 0.1},
        distributions={"ppo.learning_rate": optuna.distributions.FloatDistribution(1.0e-4, 1.0e-3, log=True),
                       "ppo.ent_coef": optuna.distributions.FloatDistribution(0.05, 0.15)},
        value=50.0, intermediate_values={512: 50.0}))
    tuning.run_worker(settings)
    trial = study.get_trials()[-1]
    assert trial.state == optuna.trial.TrialState.COMPLETE and list(trial.intermediate_values) == [512]
    assert trial.value is not None and trial.value < 50.0


def tuning_ledger() -> Path:
    from experiments.ledger import ledger_path

    return ledger_path()


# ---------------------------------------------------------------------------- a real study


@pytest.mark.slow
def test_two_workers_share_a_sqlite_study_and_the_best_trial_reruns_from_its_seed(
        tmp_path: Path, tiny: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    config, space = tiny
    run_dir = tmp_path / "study"
    status = main(["tune", "--config", str(config), "--space", str(space), "--trials", "4", "--n-jobs", "2",
                   "--study", "duo", "--run-dir", str(run_dir), "--heartbeat", "2"])
    assert status == 0
    out = capsys.readouterr().out
    assert "study duo" in out and "optuna-dashboard sqlite:///" in out

    study = optuna.load_study(study_name="duo", storage=tuning.default_storage(run_dir))
    trials = study.get_trials()
    states = [t.state for t in trials]
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    assert all(state in finished for state in states), states  # none running, none failed
    assert 4 <= len(trials) <= 5  # --trials 4 (a race between the two workers may add one)
    assert sorted(t.number for t in trials) == list(range(len(trials)))  # none lost
    assert len({t.user_attrs["pid"] for t in trials}) == 2  # both worker processes ran trials

    ledger = [e for e in read_ledger(tuning_ledger()) if e.get("tag") == "tune:duo"]
    assert sorted(e["run_dir"] for e in ledger) == sorted(t.user_attrs["run_dir"] for t in trials)
    for trial in trials:
        folder = Path(trial.user_attrs["run_dir"])
        assert folder.name == f"trial-{trial.number:04d}"
        assert (folder / "config.json").is_file() and (folder / "trial.yaml").is_file()
        assert any((folder / "tb").rglob("events.out.tfevents.*"))
        assert json.loads((folder / "config.json").read_text())["train"]["seed"] == tuning.trial_seed("duo", trial.number)

    (run_dir / "duo_history.png").unlink()
    assert main(["tune", "--report", "--study", "duo", "--run-dir", str(run_dir)]) == 0
    assert "| 1 | " in capsys.readouterr().out  # the best-trials table
    report = json.loads((run_dir / "duo_report.json").read_text())
    assert (run_dir / "duo_history.png").stat().st_size > 0
    assert report["counts"]["COMPLETE"] + report["counts"]["PRUNED"] == len(trials)
    assert report["best"][0]["number"] == study.best_trial.number

    # The best trial re-runs exactly from its folder's trial.yaml (its params and derived seed).
    best = study.best_trial
    assert math.isfinite(best.value)
    rerun = train(load_config(Path(best.user_attrs["run_dir"]) / "trial.yaml"), run_dir=tmp_path / "rerun")
    assert rerun["best_validation"]["value"] == best.value
    original = json.loads((Path(best.user_attrs["run_dir"]) / "best" / "evaluations.json").read_text())
    repeated = json.loads((tmp_path / "rerun" / "best" / "evaluations.json").read_text())
    assert [r["value"] for r in repeated] == [r["value"] for r in original]
