"""Train the regime-aware transformer PPO agent.

``himari train --config experiments/configs/cpu-small.yaml [--data PATH] [--timesteps N]
[--resume RUN_DIR] [--run-dir DIR]`` (also ``python -m experiments.train``).

The run folder holds everything needed to reproduce and evaluate the run:

* ``config.json``: the resolved configuration (after command-line overrides);
* ``pipeline/``: the fitted pipeline (feature scaler, EKF settings, HMM), JSON + NPZ, so
  evaluation rebuilds the exact observation without refitting;
* ``risk_config.json``: the RSS risk layer calibrated on train (when ``env.risk``);
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


class _EnvFactory:
    """Picklable env thunk factory (SubprocVecEnv sends it to worker processes)."""

    def __init__(self, env_kwargs: dict[str, Any], pipeline_dir: str) -> None:
        self.env_kwargs = env_kwargs
        self.pipeline_dir = pipeline_dir

    def __call__(self, rank: int):
        def thunk():
            import himari_env  # noqa: F401
            from wrappers.stack import make_himari_env

            return make_himari_env(**self.env_kwargs, pipeline=self.pipeline_dir)

        return thunk


def train(config: ExperimentConfig, *, run_dir: Path, resume: bool = False, fold: int | None = None,
          tag: str | None = None, ledger: str | Path | None = None,
          extra_callbacks: list | None = None) -> dict[str, Any]:
    """Run (or resume) training into ``run_dir``; returns the training summary.

    Every finished run appends one line to the trials ledger (:mod:`experiments.ledger`):
    ``ledger`` when given, else ``$HIMARI_LEDGER`` or ``<train.runs_dir>/ledger.jsonl``.
    ``fold`` and ``tag`` are recorded there (walk-forward fold index, tuning study...).
    """
    import torch

    from agents.callbacks import latest_checkpoint, make_training_callbacks
    from agents.ppo import build_ppo, count_parameters, load_ppo, make_vec_env_from_config
    from experiments.ledger import ledger_path, record_training
    from experiments.progress import TqdmProgressCallback
    from himari_env.pipeline import PipelineConfig, prepare_market
    from wrappers.stack import load_frame, make_himari_env

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    pipeline_dir = run_dir / "pipeline"
    risk_config_path = run_dir / "risk_config.json"
    if not (resume and (pipeline_dir / "pipeline.json").is_file()):
        frame = load_frame(config.env.data, seed=config.env.market_seed)
        prepared = prepare_market(frame, config=PipelineConfig(fit_hmm=config.env.regime_source == "hmm"))
        assert prepared.pipeline is not None
        prepared.pipeline.save(pipeline_dir)
        if config.env.risk:
            from himari_env.risk import calibrate_risk

            train_bars = prepared.market.splits["train"]
            calibrate_risk(prepared.market.returns[train_bars],
                           gap_before=prepared.market.gap_before[train_bars]).save(risk_config_path)

    env_kwargs = config.env.env_kwargs()
    if config.env.risk:
        env_kwargs["risk_config"] = str(risk_config_path)
    vec_env = make_vec_env_from_config(config, _EnvFactory(env_kwargs, str(pipeline_dir)))
    tb_dir = run_dir / "tb"
    if resume:
        checkpoint = latest_checkpoint(run_dir / "checkpoints")
        if checkpoint is None:
            raise FileNotFoundError(f"no checkpoint in {run_dir / 'checkpoints'}; cannot resume")
        steps_done = checkpoint.num_timesteps
        model = load_ppo(checkpoint.model_path, vec_env, config, tensorboard_log=str(tb_dir),
                         seed=config.train.seed, num_timesteps=steps_done)
    else:
        steps_done = 0
        model = build_ppo(vec_env, config, tensorboard_log=str(tb_dir), seed=config.train.seed)

    def make_validation_env():
        return make_himari_env(**{**env_kwargs, "split": config.train.eval_split, "episode_length": None},
                               pipeline=str(pipeline_dir))

    callbacks = make_training_callbacks(config, run_dir=run_dir, make_eval_env=make_validation_env)
    callbacks.callbacks.append(TqdmProgressCallback(total_timesteps=config.train.total_timesteps, initial=steps_done))
    callbacks.callbacks.extend(extra_callbacks or [])  # e.g. the Optuna pruning callback (himari tune)
    remaining = max(config.train.total_timesteps - steps_done, 0)
    started = time.perf_counter()
    model.learn(total_timesteps=remaining, callback=callbacks, reset_num_timesteps=not resume)
    wall_seconds = time.perf_counter() - started
    model.save(run_dir / "final_model.zip")
    vec_env.close()
    best_metric_path = run_dir / "best" / "best_metric.json"
    summary = {
        "timesteps": int(model.num_timesteps),
        "timesteps_this_session": int(model.num_timesteps) - steps_done,
        "wall_seconds": wall_seconds,
        "fps": (int(model.num_timesteps) - steps_done) / max(wall_seconds, 1e-9),
        "parameters": count_parameters(model),
        "device": str(model.device),
        "torch_threads": torch.get_num_threads(),
        "best_validation": json.loads(best_metric_path.read_text()) if best_metric_path.is_file() else None,
    }
    (run_dir / "training_summary.json").write_text(json.dumps(summary, indent=2))
    best = summary["best_validation"]
    record_training(
        Path(ledger) if ledger is not None else ledger_path(config.train.runs_dir),
        run_dir=run_dir, config=config.to_dict(), seed=config.train.seed, timesteps=summary["timesteps"],
        validation=None if best is None else {key: best.get(key) for key in ("metric", "value", "num_timesteps")},
        fold=fold, tag=tag,
    )
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="YAML preset (default experiments/configs/cpu-small.yaml)")
    parser.add_argument("--data", help="OHLCV file to train on (default: the config's data, e.g. synthetic)")
    parser.add_argument("--timesteps", type=int, help="total environment steps")
    parser.add_argument("--seed", type=int, help="override train.seed")
    parser.add_argument("--n-envs", type=int, help="override train.n_envs")
    parser.add_argument("--run-dir", help="run folder (default runs/<name>_seed<seed>_<time>)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its latest checkpoint")


def run_from_args(args: argparse.Namespace) -> int:
    if args.resume:
        run_dir = Path(args.resume)
        config = ExperimentConfig.from_dict(json.loads((run_dir / "config.json").read_text()),
                                            source=str(run_dir / "config.json"))
        config = _override(config, data=None, timesteps=args.timesteps, seed=None, n_envs=args.n_envs)
    else:
        config_path = Path(args.config) if args.config else Path(__file__).parent / "configs" / "cpu-small.yaml"
        config = _override(load_config(config_path), data=args.data, timesteps=args.timesteps, seed=args.seed,
                           n_envs=args.n_envs)
        run_dir = Path(args.run_dir) if args.run_dir else Path(config.train.runs_dir) / config.resolved_run_name()
    summary = train(config, run_dir=run_dir, resume=bool(args.resume))
    best = summary["best_validation"]
    compact = {key: value for key, value in summary.items() if key != "best_validation"}
    if best is not None:
        compact["best_validation"] = {key: best[key] for key in ("num_timesteps", "metric", "value", "hold_share")}
    print(json.dumps(compact, indent=2))
    print(f"run folder: {run_dir}\nnext: himari evaluate {run_dir}   |   tensorboard --logdir {run_dir / 'tb'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.train", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
