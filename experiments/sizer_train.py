"""Train the L3 sizer (``HimariBTCSizer-v0`` + sb3-contrib ``RecurrentPPO``).

Called by :func:`experiments.train.train` when the config's ``algo`` is ``recurrent_ppo``
(``himari train --config experiments/configs/sizer-cpu-small.yaml``). The run folder has the
L2 layout (``config.json``, ``artifacts/``, ``tb/``, ``checkpoints/``, ``best/``,
``final_model.zip``, ``training_summary.json``) and one trials-ledger line is appended.

With ``sizer.direction_source: l2_run`` the run bundle is the L2 run's (copied into
``artifacts/``), so the sizer sees the features and the risk config the L2 policy was
trained with; otherwise a bundle is fitted on the training data's train split, as for L2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agents.config import ExperimentConfig, RiskSettings


def sizer_env_factory(env_kwargs: dict[str, Any], data: Any, artifacts_dir: str) -> Any:
    """Picklable env thunk factory for ``HimariBTCSizer-v0`` (``experiments.train._EnvFactory``)."""
    from experiments.train import _EnvFactory

    return _EnvFactory(env_kwargs, data, artifacts_dir, maker="wrappers.sizer:make_himari_sizer_env")


def sizer_env_kwargs(config: ExperimentConfig, **overrides: Any) -> dict[str, Any]:
    """Keywords of :func:`wrappers.sizer.make_himari_sizer_env` from the config (no ``data``)."""
    assert config.sizer is not None
    kwargs = config.env.env_kwargs(**overrides)
    kwargs.pop("data")
    kwargs.pop("risk")
    return {**kwargs, **config.sizer.env_kwargs()}


def train_sizer(config: ExperimentConfig, *, run_dir: Path, resume: bool = False, overwrite: bool = False,
                fold: int | None = None, tag: str | None = None, ledger: str | Path | None = None,
                extra_callbacks: list | None = None) -> dict[str, Any]:
    """Run (or resume) sizer training into ``run_dir``; returns the training summary (the
    arguments mean what they mean for :func:`experiments.train.train`)."""

    from agents.ppo import make_vec_env_from_config
    from agents.recurrent import build_recurrent_ppo, load_recurrent_ppo
    from agents.sizer_callbacks import make_sizer_callbacks
    from experiments.train import _claim_run_dir, _three
    from himari_env.artifacts import ARTIFACTS_DIRNAME, RunArtifacts, build_run_artifacts
    from himari_env.pipeline import PipelineConfig, prepare_market
    from himari_env.provenance import frame_digest
    from wrappers.rewards import RewardConfig
    from wrappers.sizer import make_himari_sizer_env
    from wrappers.stack import load_frame

    sizer = config.sizer
    if sizer is None or config.algo != "recurrent_ppo":
        raise ValueError("train_sizer needs algo 'recurrent_ppo' and a sizer section")
    if not config.env.risk:
        raise ValueError("the sizer always sizes through the RSS layer: env.risk must be true")
    run_dir = Path(run_dir)
    _claim_run_dir(run_dir, resume=resume, overwrite=overwrite)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    artifacts_dir = run_dir / ARTIFACTS_DIRNAME
    frame = load_frame(config.env.data, seed=config.env.market_seed)
    if resume or sizer.l2_run is not None:
        bundle = RunArtifacts.load(artifacts_dir if resume else Path(sizer.l2_run or ""))
        if frame_digest(frame) != bundle.data_hash:
            raise ValueError(f"the data {config.env.data} are not those the run bundle was fitted on "
                             f"(data hash {frame_digest(frame)}, bundle {bundle.data_hash})")
        if not resume and bundle.risk_config is not None and RiskSettings.of(bundle.risk_config) != config.risk:
            raise ValueError(f"the risk section differs from the RSS settings of the L2 run {sizer.l2_run} whose "
                             "bundle the sizer uses; drop the risk section or copy the L2 run's settings")
        prepared = prepare_market(frame, artifacts=bundle)
        if not resume:
            bundle.save(artifacts_dir)
            bundle = RunArtifacts.load(artifacts_dir)
    else:
        reward = RewardConfig(preset=config.env.reward)
        bundle, prepared = build_run_artifacts(
            frame,
            pipeline_config=PipelineConfig(fit_hmm=config.env.regime_source == "hmm", feature_set=config.env.feature_set,
                                           split_fractions=_three(config.env.split_fractions)),
            risk=True, risk_config=config.risk.risk_config(), reward_windows=(reward.sigma_window, reward.e_window),
            source=str(config.env.data))
        bundle.save(artifacts_dir)

    env_kwargs = sizer_env_kwargs(config)
    in_process = config.train.n_envs == 1
    vec_env = make_vec_env_from_config(
        config, sizer_env_factory(env_kwargs, prepared if in_process else config.env.data, str(artifacts_dir)))
    from experiments.train import build_or_resume

    model, steps_done = build_or_resume(build_recurrent_ppo, load_recurrent_ppo, vec_env, config, run_dir=run_dir,
                                        resume=resume)

    def make_validation_env():
        kwargs = {**env_kwargs, "split": config.train.eval_split, "episode_length": None}
        return make_himari_sizer_env(prepared, **kwargs, artifacts=bundle)

    callbacks = make_sizer_callbacks(config, run_dir=run_dir, make_eval_env=make_validation_env,
                                     validation_state=bundle.validation if resume else None)
    from experiments.train import learn_and_record

    return learn_and_record(model, vec_env, callbacks, config=config, run_dir=run_dir, steps_done=steps_done,
                            resume=resume, ledger=ledger, fold=fold, tag=tag, extra_callbacks=extra_callbacks,
                            summary_extra={"algo": config.algo})
