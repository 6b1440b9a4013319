"""The HIMARI agent: transformer feature extractor, PPO builder, callbacks, configuration.

Modules: :mod:`agents.config` (typed YAML configs, no torch), :mod:`agents.extractor`
(``RegimeTransformerExtractor``), :mod:`agents.ppo` (``build_ppo``, ``load_ppo``,
``make_vec_env_from_config``), :mod:`agents.callbacks` (regime action stats, collapse
detector, validation, checkpoints). Names below are imported lazily so that
``import agents`` does not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ExperimentConfig": "agents.config",
    "EnvConfig": "agents.config",
    "ExtractorConfig": "agents.config",
    "PPOConfig": "agents.config",
    "TrainConfig": "agents.config",
    "ConfigError": "agents.config",
    "load_config": "agents.config",
    "RegimeTransformerExtractor": "agents.extractor",
    "build_ppo": "agents.ppo",
    "load_ppo": "agents.ppo",
    "make_vec_env_from_config": "agents.ppo",
    "count_parameters": "agents.ppo",
    "CollapseDetector": "agents.callbacks",
    "PolicyCollapseWarning": "agents.callbacks",
    "RegimeActionStatsCallback": "agents.callbacks",
    "ResumableCheckpointCallback": "agents.callbacks",
    "ValidationCallback": "agents.callbacks",
    "latest_checkpoint": "agents.callbacks",
    "make_training_callbacks": "agents.callbacks",
    "run_deterministic_pass": "agents.callbacks",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'agents' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
