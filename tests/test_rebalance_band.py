"""The RSS layer's no-trade band: small re-sizings of an unchanged direction pay no fee."""

from __future__ import annotations

import numpy as np
import pytest

from himari_env.data import synthesize_market
from himari_env.pipeline import prepare_market
from himari_env.risk.composer import apply_rebalance_band
from himari_env.risk.config import RiskConfig, RiskConfigError
from wrappers.stack import make_himari_env


@pytest.mark.parametrize(
    ("size", "held", "expected"),
    [
        (0.50, 0.45, (0.45, False)),  # +11 % inside a 25 % band: keep
        (0.30, 0.45, (0.30, True)),  # -33 %: re-size
        (-0.50, -0.45, (-0.45, False)),  # shorts alike
        (-0.45, 0.45, (-0.45, True)),  # a direction change always trades
        (0.0, 0.45, (0.0, True)),  # HOLD always flattens
        (0.45, 0.0, (0.45, True)),  # entering always trades
    ],
)
def test_band_keeps_small_resizings_and_passes_everything_else(size, held, expected):
    assert apply_rebalance_band(size, held, 0.25) == expected


def test_zero_band_always_rebalances():
    assert apply_rebalance_band(0.451, 0.45, 0.0) == (0.451, True)


def test_band_outside_zero_one_is_rejected_by_name():
    with pytest.raises(RiskConfigError, match="rebalance_band"):
        RiskConfig(rebalance_band=1.5)


def test_band_cuts_turnover_of_a_constant_long_and_is_reported_in_info():
    prepared = prepare_market(synthesize_market(n_bars=3000, seed=5).frame, cache=False)

    def turnover(band):
        env = make_himari_env(prepared, context=16, episode_length=None, split="test",
                              risk_config=RiskConfig(rebalance_band=band))
        env.reset(seed=0)
        total, kept = 0.0, 0
        while True:
            _, _, terminated, truncated, info = env.step(1)
            total += info["turnover"]
            kept += not info["risk_rebalanced"]
            if terminated or truncated:
                return total, kept

    no_band, kept_without = turnover(0.0)
    with_band, kept_with = turnover(0.25)
    assert kept_without == 0 and kept_with > 0
    assert with_band < no_band, (with_band, no_band)
    assert np.isfinite(with_band)
