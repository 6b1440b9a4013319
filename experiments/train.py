"""Train the regime-aware transformer PPO agent.

``himari train --config experiments/configs/cpu-small.yaml [--data PATH] [--timesteps N]
[--resume RUN_DIR] [--run-dir DIR [--overwrite]]`` (also ``python -m experiments.train``).
A run folder that already holds a run is refused unless ``--resume`` or ``--overwrite``.

The run folder holds everything needed to reproduce and evaluate the run:

* ``config.json``: the resolved configuration (after command-line overrides);
* ``artifacts/``: the run bundle (:class:`himari_env.artifacts.RunArtifacts`, JSON + NPZ):
  fitted pipeline (feature scaler, EKF and labeler settings, HMM), the RSS risk config
  calibrated on train, the training tail and reward normalizer settings, data and code
  hashes, and the validation state; evaluation and ``gym.make(..., artifacts=RUN_DIR)``
  rebuild the exact observation from it without fitting anything;
* ``tb/``: TensorBoard event files and ``progress.csv`` (PPO diagnostics: fps, approx_kl,
  clip_fraction, explained_variance, entropy_loss; per-regime action shares; reward terms;
  validation metrics);
* ``checkpoints/``: periodic model zips + JSON state (``latest.json``), for ``--resume``;
* ``best/best_model.zip`` (by the validation metric, with ``best_metric.json`` and
  ``evaluations.json``) and ``final_model.zip``;
* ``training_summary.json``: wall time, steps, mean fps, best validation metric.

One seed (``train.seed``) drives the agent, the env resets and, for the synthetic market,
``env.market_seed`` drives the data.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from agents.config import ExperimentConfig, load_config


def _override(config: ExperimentConfig, *, data: str | None, timesteps: int | None, seed: int | None,
              n_envs: int | None) -> ExperimentConfig:
    env, train = config.env, config.train
    if data is not None:
        env = dataclasses.replace(env, data=str(Path(data).resolve()))
    if timesteps is not None:
        train = dataclasses.replace(train, total_timesteps=timesteps)
    if seed is not None:
        train = dataclasses.replace(train, seed=seed)
    if n_envs is not None:
        train = dataclasses.replace(train, n_envs=n_envs)
    return dataclasses.replace(config, env=env, train=train)


#: Entries of a run folder (what ``--overwrite`` removes; nothing else in the folder is touched).
RUN_ENTRIES: tuple[str, ...] = (
    "config.json", "artifacts", "pipeline", "risk_config.json", "tb", "checkpoints", "best",
    "final_model.zip", "training_summary.json", "report.json", "report.md", "actions_by_regime.png",
)
RUN_ENTRY_PATTERNS: tuple[str, ...] = ("equity_*.npz", "equity_*.png", "drawdown_*.png")


class RunDirExistsError(ValueError):
    """``train`` was pointed at a folder that already holds a run, without resume or overwrite."""


def run_entries(run_dir: Path) -> list[Path]:
    """The run-folder entries present in ``run_dir`` (empty when it is absent or holds no run)."""
    if not run_dir.is_dir():
        return []
    found = [run_dir / name for name in RUN_ENTRIES if (run_dir / name).exists()]
    for pattern in RUN_ENTRY_PATTERNS:
        found += sorted(run_dir.glob(pattern))
    return found


def _claim_run_dir(run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse to mix two runs in one folder: an existing run needs ``resume`` or ``overwrite``
    (which removes the run's entries first)."""
    import shutil

    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other: continue the run or replace it")
    existing = run_entries(run_dir)
    if resume:
        if not (run_dir / "config.json").is_file():
            raise FileNotFoundError(f"{run_dir} holds no run (config.json); cannot resume")
        return
    if existing and not overwrite:
        names = ", ".join(path.name for path in existing[:4]) + (", ..." if len(existing) > 4 else "")
        raise RunDirExistsError(
            f"run folder {run_dir} already holds a run ({names}); pass --resume {run_dir} to continue it "
            "or --overwrite to replace it"
        )
    for path in existing:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _three(fractions: tuple[float, ...]) -> tuple[float, float, float]:
    train, val, test = fractions
    return (train, val, test)


class _EnvFactory:
    """Picklable env thunk factory (SubprocVecEnv sends it to worker processes).

    ``data`` is a :class:`~himari_env.pipeline.PreparedMarket` (in-process envs, or a fold's
    frame) or the config's data (``"synthetic"`` or a path: each worker prepares it from the
    disk cache); ``artifacts_dir`` is the run bundle: nothing is fitted in a worker.
    """

    def __init__(self, env_kwargs: dict[str, Any], data: Any, artifacts_dir: str,
                 maker: str = "wrappers.stack:make_himari_env", mirrored: Any = None,
                 mirror_from_rank: int | None = None) -> None:
        self.env_kwargs = env_kwargs
        self.data = data
        self.artifacts_dir = artifacts_dir
        self.maker = maker  # "module:function", imported in the worker
        # ranks >= mirror_from_rank step ``mirrored`` (the mirrored market, train.mirror_envs)
        self.mirrored = mirrored
        self.mirror_from_rank = mirror_from_rank

    def data_for(self, rank: int) -> Any:
        """The market env ``rank`` steps: the mirrored one for the last ``train.mirror_envs`` ranks."""
        if self.mirror_from_rank is not None and rank >= self.mirror_from_rank:
            return self.mirrored
        return self.data

    def __call__(self, rank: int):
        data = self.data_for(rank)

        def thunk():
            import importlib

            import himari_env  # noqa: F401

            # getattr: a factory pickled by an older process has no ``maker``.
            module_name, function_name = getattr(self, "maker", "wrappers.stack:make_himari_env").split(":")
            make_env = getattr(importlib.import_module(module_name), function_name)
            return make_env(data, **self.env_kwargs, artifacts=self.artifacts_dir)

        return thunk


def uses_batched_env(config: ExperimentConfig) -> bool:
    """True when a PPO run steps its ``n_envs > 1`` episodes in the batched env
    (``train.vectorization: batched``, the default) or uses index observations
    (``train.observation_mode: index``, which only the batched env gives); False for one
    window-observation env or ``subproc``."""
    return config.train.observation_mode == "index" or (
        config.train.n_envs > 1 and config.train.vectorization == "batched")


def with_observation_mode(env: Any, config: ExperimentConfig) -> Any:
    """The single-env stack as the policy sees it: wrapped in
    :class:`~wrappers.index_observation.BarIndexObservation` when the run uses index
    observations (``train.observation_mode: index``), else unchanged."""
    if config.train.observation_mode != "index":
        return env
    from wrappers.index_observation import BarIndexObservation

    return BarIndexObservation(env)


def make_batched_vec_env(config: ExperimentConfig, prepared: Any, env_kwargs: dict[str, Any], artifacts_dir: str) -> Any:
    """``train.n_envs`` episodes of the configured stack in one
    :class:`~himari_env.vector.HimariBTCVecEnv` (training infos), monitored and seeded exactly
    as :func:`agents.ppo.make_vec_env_from_config` seeds its workers: env k resets first with
    ``train.seed + k`` and continues its own generator after that."""
    from stable_baselines3.common.vec_env import VecMonitor

    from himari_env.vector import HimariBTCVecEnv

    batched = HimariBTCVecEnv(config.train.n_envs, prepared, info_level="training", artifacts=artifacts_dir,
                              observation_mode=config.train.observation_mode, **env_kwargs)
    vec_env = VecMonitor(batched)
    vec_env.seed(config.train.seed)
    return vec_env


def train(config: ExperimentConfig, *, run_dir: Path, resume: bool = False, overwrite: bool = False,
          fold: int | None = None, tag: str | None = None, ledger: str | Path | None = None,
          extra_callbacks: list | None = None, frame: pd.DataFrame | None = None) -> dict[str, Any]:
    """Run (or resume) training into ``run_dir``; returns the training summary.

    Parameters
    ----------
    config : the resolved configuration (written to ``run_dir/config.json``).
    run_dir : the run folder. A folder that already holds a run is refused
        (:class:`RunDirExistsError`) unless ``resume`` (continue it from its latest
        checkpoint, its run bundle and its validation state) or ``overwrite`` (remove the
        run's entries first).
    fold, tag : recorded in the trials ledger (walk-forward fold index, tuning study...).
    ledger : the trials ledger (:mod:`experiments.ledger`); default ``$HIMARI_LEDGER`` or
        ``<train.runs_dir>/ledger.jsonl``. Every finished run appends one line.
    extra_callbacks : SB3 callbacks appended to the standard set (e.g. a tuner's reporter).
    frame : the training bars (a canonical OHLCV frame, e.g. a walk-forward fold's window)
        instead of loading ``config.env.data``; the run bundle records its data hash. On
        resume, the same bars must be given again.
    """
    if config.algo == "recurrent_ppo":  # the L3 sizer (HimariBTCSizer-v0 + RecurrentPPO)
        from experiments.sizer_train import train_sizer

        if frame is not None:
            raise ValueError("train(frame=...) is not supported for the sizer (algo 'recurrent_ppo')")
        return train_sizer(config, run_dir=Path(run_dir), resume=resume, overwrite=overwrite, fold=fold, tag=tag,
                           ledger=ledger, extra_callbacks=extra_callbacks)

    from agents.callbacks import make_training_callbacks
    from agents.ppo import build_ppo, load_ppo, make_vec_env_from_config
    from himari_env.artifacts import ARTIFACTS_DIRNAME, RunArtifacts, build_run_artifacts
    from himari_env.pipeline import PipelineConfig, prepare_market
    from himari_env.provenance import frame_digest
    from wrappers.rewards import RewardConfig
    from wrappers.stack import load_frame, make_himari_env

    run_dir = Path(run_dir)
    _claim_run_dir(run_dir, resume=resume, overwrite=overwrite)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    artifacts_dir = run_dir / ARTIFACTS_DIRNAME
    own_frame = frame is not None
    if frame is None:
        frame = load_frame(config.env.data, seed=config.env.market_seed)
    if resume:
        bundle = RunArtifacts.load(artifacts_dir)
        if frame_digest(frame) != bundle.data_hash:
            raise ValueError(
                f"the training data of {run_dir} changed since the run started (data hash "
                f"{frame_digest(frame)}, bundle {bundle.data_hash}); resume with the same bars"
            )
        prepared = prepare_market(frame, artifacts=bundle)
    else:
        reward = RewardConfig(preset=config.env.reward)
        bundle, prepared = build_run_artifacts(
            frame,
            pipeline_config=PipelineConfig(fit_hmm=config.env.regime_source == "hmm", feature_set=config.env.feature_set,
                                           split_fractions=_three(config.env.split_fractions)),
            risk=config.env.risk,
            risk_config=config.risk.risk_config(),
            reward_windows=(reward.sigma_window, reward.e_window),
            source=f"fold {fold}" if own_frame and fold is not None
            else ("frame" if own_frame else str(config.env.data)),
        )
        bundle.save(artifacts_dir)

    env_kwargs = config.env.env_kwargs()
    env_kwargs.pop("data")
    if uses_batched_env(config):
        vec_env = make_batched_vec_env(config, prepared, env_kwargs, str(artifacts_dir))
    else:
        in_process = config.train.n_envs == 1 or own_frame
        mirrored = None
        n_mirror = config.train.mirror_envs
        if n_mirror:
            from himari_env.data.augment import mirror_ohlcv

            # the real bars' run bundle transforms the mirror: nothing is fitted on it
            mirrored = prepare_market(mirror_ohlcv(frame), pipeline=bundle.pipeline)
        vec_env = make_vec_env_from_config(
            config, _EnvFactory(env_kwargs, prepared if in_process else config.env.data, str(artifacts_dir),
                                mirrored=mirrored,
                                mirror_from_rank=config.train.n_envs - n_mirror if n_mirror else None)
        )
    model, steps_done = build_or_resume(build_ppo, load_ppo, vec_env, config, run_dir=run_dir, resume=resume)

    def make_validation_env(first_decision_bars: int | None = None):
        env = make_himari_env(prepared, **{**env_kwargs, "split": config.train.eval_split, "episode_length": None},
                              artifacts=bundle, first_decision_bars=first_decision_bars)
        return with_observation_mode(env, config)

    callbacks = make_training_callbacks(config, run_dir=run_dir, make_eval_env=make_validation_env,
                                        validation_state=bundle.validation if resume else None)
    return learn_and_record(model, vec_env, callbacks, config=config, run_dir=run_dir, steps_done=steps_done,
                            resume=resume, ledger=ledger, fold=fold, tag=tag, extra_callbacks=extra_callbacks)


def build_or_resume(build: Any, load: Any, vec_env: Any, config: ExperimentConfig, *, run_dir: Path,
                    resume: bool) -> tuple[Any, int]:
    """A fresh model (``build``), or the latest checkpoint's (``load``) when resuming; returns
    the model and the steps already done. Shared by PPO and RecurrentPPO runs."""
    from agents.callbacks import latest_checkpoint

    tb_dir = str(run_dir / "tb")
    if not resume:
        return build(vec_env, config, tensorboard_log=tb_dir, seed=config.train.seed), 0
    checkpoint = latest_checkpoint(run_dir / "checkpoints")
    if checkpoint is None:
        raise FileNotFoundError(f"no checkpoint in {run_dir / 'checkpoints'}; cannot resume")
    steps_done = checkpoint.num_timesteps
    return load(checkpoint.model_path, vec_env, config, tensorboard_log=tb_dir, seed=config.train.seed,
                num_timesteps=steps_done), steps_done


def learn_and_record(model: Any, vec_env: Any, callbacks: Any, *, config: ExperimentConfig, run_dir: Path,
                     steps_done: int, resume: bool, ledger: str | Path | None, fold: int | None, tag: str | None,
                     extra_callbacks: list | None, summary_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The part of a run shared by PPO and RecurrentPPO: the progress bar, ``learn`` to the
    configured total, ``final_model.zip``, ``training_summary.json`` and the ledger line."""
    import torch

    from agents.ppo import count_parameters
    from experiments.ledger import ledger_path, record_training
    from experiments.progress import TqdmProgressCallback

    callbacks.callbacks.append(TqdmProgressCallback(total_timesteps=config.train.total_timesteps, initial=steps_done))
    callbacks.callbacks.extend(extra_callbacks or [])
    remaining = max(config.train.total_timesteps - steps_done, 0)
    started = time.perf_counter()
    model.learn(total_timesteps=remaining, callback=callbacks, reset_num_timesteps=not resume)
    wall_seconds = time.perf_counter() - started
    model.save(run_dir / "final_model.zip")
    vec_env.close()
    best_metric_path = run_dir / "best" / "best_metric.json"
    summary: dict[str, Any] = {
        **(summary_extra or {}),
        "timesteps": int(model.num_timesteps),
        "timesteps_this_session": int(model.num_timesteps) - steps_done,
        "wall_seconds": wall_seconds,
        "fps": (int(model.num_timesteps) - steps_done) / max(wall_seconds, 1e-9),
        "parameters": count_parameters(model),
        "device": str(model.device),
        "torch_threads": torch.get_num_threads(),
        "best_validation": json.loads(best_metric_path.read_text()) if best_metric_path.is_file() else None,
        "ledger": str(Path(ledger) if ledger is not None else ledger_path(config.train.runs_dir)),
    }
    (run_dir / "training_summary.json").write_text(json.dumps(summary, indent=2))
    best = summary["best_validation"]
    record_training(
        Path(summary["ledger"]),
        run_dir=run_dir, config=config.to_dict(), seed=config.train.seed, timesteps=summary["timesteps"],
        validation=None if best is None else {key: best.get(key) for key in ("metric", "value", "num_timesteps")},
        fold=fold, tag=tag,
    )
    return summary


DEFAULT_CONFIG = Path(__file__).parent / "configs" / "cpu-small.yaml"


def _preset_note(key: str) -> str:
    """``"; cpu-small: 50000"``: the default preset's value of ``train.<key>`` or ``env.<key>``."""
    try:
        config = load_config(DEFAULT_CONFIG)
    except (OSError, ValueError):
        return ""
    section, name = key.split(".")
    value = getattr(getattr(config, section), name)
    if value == "synthetic":
        value = "the seeded synthetic market"
    return f"; {config.name}: {value}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, metavar="YAML",
                        help="YAML preset (default: experiments/configs/cpu-small.yaml)")
    parser.add_argument("--data", metavar="PATH",
                        help=f"OHLCV file to train on (default: the config's env.data{_preset_note('env.data')})")
    parser.add_argument("--timesteps", type=int, metavar="N",
                        help="total environment steps, rounded up to whole rollouts (default: the config's "
                             f"train.total_timesteps{_preset_note('train.total_timesteps')})")
    parser.add_argument("--seed", type=int, help="seed of the agent, envs and synthetic market (default: the "
                                                  f"config's train.seed{_preset_note('train.seed')})")
    parser.add_argument("--n-envs", type=int, metavar="N",
                        help=f"parallel envs (default: the config's train.n_envs{_preset_note('train.n_envs')})")
    parser.add_argument("--run-dir", metavar="DIR",
                        help="run folder (default: <train.runs_dir>/<name>_seed<seed>_<time>)")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue the run in RUN_DIR from its latest checkpoint (default: a new run)")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="-v: also print SB3's diagnostic table after every rollout (they always go "
                             "to progress.csv and TensorBoard); -vv: SB3 debug output "
                             "(default: %(default)s: progress bar and validation lines only)")
    parser.add_argument("--seeds", metavar="K,K,...", default=None,
                        help="train one run per seed into RUN_DIR/seed<K> and aggregate their validation "
                             "metrics next to every baseline (seeds.json, seeds.md; no look at test) "
                             "(default: one run with --seed)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run already in --run-dir (default: refuse an existing run folder)")
    parser.add_argument("--json", action="store_true",
                        help="print the end-of-run summary as JSON instead of text")


def _format_duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{seconds:.1f} s"


def format_summary(summary: dict[str, Any], run_dir: Path) -> list[str]:
    """The end-of-run lines: steps, time, speed, best validation, where the run is, what next."""
    lines = [
        f"trained {summary['timesteps_this_session']:,} steps in {_format_duration(summary['wall_seconds'])} "
        f"({summary['fps']:.0f} steps/s; {summary['parameters']:,} parameters on {summary['device']}, "
        f"{summary['torch_threads']} torch thread(s))"
    ]
    best = summary.get("best_validation")
    if best is not None:
        from experiments.progress import metric_label

        metric = str(best.get("metric", "sharpe"))
        value = float(best["value"])
        shown = f"{value:+.1%}" if metric == "total_return" else f"{value:.3f}"
        lines.append(f"best validation {metric_label(metric)} {shown} at step {int(best['num_timesteps']):,} "
                     f"(HOLD {float(best['hold_share']):.1%}): {run_dir / 'best' / 'best_model.zip'}")
    else:
        lines.append("no eligible validation pass (none ran, or every pass was collapsed): "
                     "evaluate uses final_model.zip")
    lines.append(f"run folder: {run_dir} (full record: training_summary.json)")
    lines.append(f"next: himari evaluate {run_dir}   |   tensorboard --logdir {run_dir / 'tb'}")
    return lines


class _OneLineWarnings:
    """While training from the CLI, print each warning as one line that does not break the bar."""

    def __enter__(self) -> _OneLineWarnings:
        import warnings

        self._saved = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
            from tqdm.auto import tqdm

            tqdm.write(f"warning: {category.__name__}: {message}", file=sys.stderr)

        warnings.showwarning = show
        return self

    def __exit__(self, *exc: object) -> None:
        import warnings

        warnings.showwarning = self._saved


def _with_verbosity(config: ExperimentConfig, verbose: int) -> ExperimentConfig:
    """The console verbosity is the command line's (``-v``), whatever the preset says."""
    return dataclasses.replace(config, train=dataclasses.replace(config.train, verbose=min(int(verbose), 2)))


def run_from_args(args: argparse.Namespace) -> int:
    verbose = int(getattr(args, "verbose", 0) or 0)
    if args.resume:
        run_dir = Path(args.resume)
        config_path = run_dir / "config.json"
        if not config_path.is_file():
            raise FileNotFoundError(f"not a run folder: no config.json in {run_dir} (--resume needs a folder "
                                    "written by himari train)")
        config = ExperimentConfig.from_dict(json.loads(config_path.read_text()), source=str(config_path))
        config = _override(config, data=None, timesteps=args.timesteps, seed=None, n_envs=args.n_envs)
    else:
        config_path = Path(args.config) if args.config else DEFAULT_CONFIG
        config = _override(load_config(config_path), data=args.data, timesteps=args.timesteps, seed=args.seed,
                           n_envs=args.n_envs)
        run_dir = Path(args.run_dir) if args.run_dir else Path(config.train.runs_dir) / config.resolved_run_name()
    config = _with_verbosity(config, verbose)
    if getattr(args, "seeds", None):
        if args.resume:
            raise ValueError("--seeds cannot be combined with --resume: resume each RUN_DIR/seed<K> on its own")
        from experiments.walkforward import format_seeds, run_seeds

        try:
            seeds = [int(part) for part in str(args.seeds).split(",") if part.strip()]
        except ValueError:
            raise ValueError(f"--seeds must be comma-separated integers, got {args.seeds!r}") from None
        with _OneLineWarnings():
            document = run_seeds(config, seeds=seeds, run_dir=run_dir, overwrite=bool(getattr(args, "overwrite", False)))
        print(json.dumps(document, indent=2, default=float) if getattr(args, "json", False) else format_seeds(document))
        return 0
    with _OneLineWarnings():
        summary = train(config, run_dir=run_dir, resume=bool(args.resume), overwrite=bool(getattr(args, "overwrite", False)))
    if getattr(args, "json", False):
        best = summary["best_validation"]
        compact = {key: value for key, value in summary.items() if key != "best_validation"}
        if best is not None:
            compact["best_validation"] = {key: best[key] for key in ("num_timesteps", "metric", "value", "hold_share")}
        print(json.dumps(compact, indent=2))
    else:
        print("\n".join(format_summary(summary, run_dir)))
    return 0


#: ``himari train --help`` description.
DESCRIPTION = (
    "Train the regime-aware transformer PPO agent into a run folder (config, fitted pipeline, "
    "risk config, TensorBoard logs and progress.csv, checkpoints, best and final models). "
    "The console shows one progress bar and one line per validation pass; -v adds SB3's "
    "diagnostic tables. Then: himari evaluate RUN_DIR."
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.train", description=DESCRIPTION)
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
