"""Market regimes: the balanced rule-based labeler and the Student-t HMM with its causal filter.

Regime ids are fixed (see :mod:`himari_env.constants`): 0 LOW_VOL, 1 TRENDING, 2 HIGH_VOL,
3 CRISIS; ``-1`` marks the labeler's warm-up rows.
"""

from __future__ import annotations

from himari_env.regimes.labeler import (
    TARGET_SHARES,
    WARMUP_LABEL,
    LabelerConfig,
    RegimeLabelStats,
    label_regimes,
    labeler_warmup_bars,
    persistence_filter,
    regime_label_stats,
    tune_labeler_thresholds,
)
from himari_env.regimes.student_t_hmm import (
    ForwardFilter,
    StudentTHMM,
    fit_student_t,
    forward_filter,
    forward_filter_with_evidence,
    gaussian_hmm_from_labels,
    label_transition_probabilities,
)

__all__ = [
    "TARGET_SHARES",
    "WARMUP_LABEL",
    "ForwardFilter",
    "LabelerConfig",
    "RegimeLabelStats",
    "StudentTHMM",
    "fit_student_t",
    "forward_filter",
    "forward_filter_with_evidence",
    "gaussian_hmm_from_labels",
    "label_regimes",
    "label_transition_probabilities",
    "labeler_warmup_bars",
    "persistence_filter",
    "regime_label_stats",
    "tune_labeler_thresholds",
]
