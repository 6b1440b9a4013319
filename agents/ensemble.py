"""A seed ensemble: several PPO agents of one configuration deciding together by soft vote.

Agents trained with the same configuration and data but different seeds disagree on many
decisions of a market as noisy as BTC (the spot preset's 2024 passes: 38 to 79 % of the bars
in the market, by seed). :class:`SeedEnsemble` averages their action probabilities and takes
the most probable action (a tie goes to the lower action index: HOLD), so one seed's
idiosyncratic bets need the others' agreement. It is a policy, not a training method: each
member is trained and selected on validation exactly as alone.

Members are loaded with :func:`agents.ppo.load_ppo` (tensors only, ``weights_only=True``).
:func:`seed_runs` lists the members of a ``himari train --seeds`` folder (or a walk-forward
fold folder) and checks that they are one configuration on one fitted bundle.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch


class EnsembleError(ValueError):
    """The runs given as an ensemble are not one configuration on one fitted bundle."""


def seed_runs(folder: str | Path, seeds: Sequence[int] | None = None) -> list[Path]:
    """The run folders ``folder/seed*`` (sorted by seed; only ``seeds`` when given) that form
    one seed ensemble.

    Raises :class:`EnsembleError` when there are fewer than two, when their configurations
    differ in anything but the seed and naming (:func:`experiments.ledger.config_hash`), or
    when their fitted bundles differ (:meth:`himari_env.artifacts.RunArtifacts.fingerprint`).
    """
    from agents.config import ExperimentConfig
    from experiments.ledger import config_hash
    from himari_env.artifacts import RunArtifacts

    root = Path(folder)
    # A run is finished when train wrote its summary (the marker walkforward --resume uses too):
    # a run that stopped after a validation pass has a best model but must not vote.
    runs = sorted((p for p in root.glob("seed*") if (p / "training_summary.json").is_file()),
                  key=lambda p: int(p.name[4:]) if p.name[4:].isdigit() else 10**9)
    if seeds is not None:
        missing = sorted(set(seeds) - {int(p.name[4:]) for p in runs if p.name[4:].isdigit()})
        if missing:
            raise EnsembleError(f"{root}: no finished run for seed(s) {missing}")
        runs = [p for p in runs if p.name[4:].isdigit() and int(p.name[4:]) in set(seeds)]
    if len(runs) < 2:
        raise EnsembleError(f"{root}: an ensemble needs at least two finished seed runs "
                            f"(seed*/training_summary.json), found {len(runs)}")
    hashes, fingerprints = set(), set()
    for run in runs:
        config = ExperimentConfig.from_dict(json.loads((run / "config.json").read_text()),
                                            source=str(run / "config.json"))
        if config.algo != "ppo":
            raise EnsembleError(f"{run}: only PPO direction agents form a seed ensemble (algo {config.algo!r})")
        hashes.add(config_hash(config.to_dict()))
        fingerprints.add(RunArtifacts.load(run).fingerprint())
    if len(hashes) > 1:
        raise EnsembleError(f"{root}: the seed runs differ in configuration, not only in seed "
                            f"({len(hashes)} config hashes); an ensemble is one configuration")
    if len(fingerprints) > 1:
        raise EnsembleError(f"{root}: the seed runs were fitted on different data or code "
                            f"({len(fingerprints)} bundle fingerprints)")
    return runs


class SeedEnsemble:
    """Soft vote of SB3 PPO agents with one ``Discrete(n)`` action space.

    Parameters
    ----------
    models : the member agents (same observation and action spaces).
    """

    def __init__(self, models: Sequence[Any]) -> None:
        if not models:
            raise EnsembleError("a seed ensemble needs at least one model")
        spaces = {(str(m.observation_space), str(m.action_space)) for m in models}
        if len(spaces) > 1:
            raise EnsembleError(f"ensemble members have different spaces: {sorted(spaces)}")
        self.models = list(models)
        for model in self.models:
            # SB3 switches to eval mode only inside policy.predict; the vote reads the
            # distribution directly, so dropout (extractor.dropout > 0) must be off here.
            model.policy.set_training_mode(False)

    def action_probabilities(self, observation: Any) -> np.ndarray:
        """Mean action probabilities over the members, float64 ``(n_actions,)`` for one
        observation (a dict of arrays as the env returns it)."""
        total: np.ndarray | None = None
        for model in self.models:
            obs_tensor, _ = model.policy.obs_to_tensor(observation)
            with torch.no_grad():
                probs = model.policy.get_distribution(obs_tensor).distribution.probs
            values = probs.detach().cpu().numpy().astype(np.float64).reshape(-1)
            total = values if total is None else total + values
        assert total is not None
        return total / len(self.models)

    def predict(self, observation: Any, deterministic: bool = True) -> tuple[int, None]:
        """The ensemble's action: the most probable under the mean probabilities (ties to the
        lower index). Only deterministic prediction is offered: it is an evaluation policy."""
        if not deterministic:
            raise ValueError("SeedEnsemble.predict is deterministic only (it is an evaluation policy)")
        return int(np.argmax(self.action_probabilities(observation))), None


__all__ = ["EnsembleError", "SeedEnsemble", "seed_runs"]
