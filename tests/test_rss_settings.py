"""Choosing the RSS preset settings on walk-forward windows: every window once, the score as
documented, ties to the design log, and nothing after ``end`` read."""

from __future__ import annotations

import numpy as np
import pytest

from agents.config import RiskSettings
from experiments.rss_settings import Candidate, default_candidates, score_rss_settings
from himari_env.data import synthesize_market
from himari_env.risk.drawdown_brake import DrawdownBrakeParams
from himari_env.risk.regime_multipliers import RegimeMultipliers

N_BARS = 6_000
END = "2020-08-01"  # bar 5,088 of a 2020-01-01 start: the last 912 bars lie after it

CANDIDATES = [
    Candidate("design log", RiskSettings()),
    Candidate("no brake, no regime cut", RiskSettings(drawdown_brake=DrawdownBrakeParams((0.98,), (0.0,)),
                                                      regime_multipliers=RegimeMultipliers(1, 1, 1, 1),
                                                      rebalance_band=0.5)),
    Candidate("design log again", RiskSettings()),
]


@pytest.fixture(scope="module")
def frame():
    frame = synthesize_market(n_bars=N_BARS, seed=5).frame
    assert str(frame.index[0])[:10] == "2020-01-01"
    return frame


@pytest.fixture(scope="module")
def report(frame):
    return score_rss_settings(frame, n_folds=2, end=END, candidates=CANDIDATES)


def test_every_distinct_window_is_scored_once_and_the_score_is_the_mean_of_medians(report):
    assert len(report["windows"]) == 3  # fold 0 val, fold 0 test = fold 1 val, fold 1 test
    assert all(a < b for a, b in report["windows"]) and report["windows"][-1][1] < END
    for row in report["candidates"]:
        assert set(row["per_rule"]) == {"buy_and_hold", "momentum_720_lf", "momentum_168_lf"}
        for values in row["per_rule"].values():
            assert len(values["sharpe"]) == len(values["max_drawdown"]) == 3
            assert all(np.isfinite(values["sharpe"])) and all(0.0 <= d < 1.0 for d in values["max_drawdown"])
        expected = np.mean([np.median(v["sharpe"]) for v in row["per_rule"].values()])
        assert row["score"] == pytest.approx(expected)


def test_identical_settings_score_identically_and_ties_keep_the_earlier_candidate(report):
    first, other, again = report["candidates"]
    assert first["per_rule"] == again["per_rule"]
    assert first["per_rule"] != other["per_rule"]  # the settings do reach the sizing
    assert report["best"] in ("design log", "no brake, no regime cut")
    assert report["best"] != "design log again"


def test_bars_after_end_are_never_read(frame, report):
    perturbed = frame.copy()
    after = perturbed.index >= END
    perturbed.loc[after, ["open", "high", "low", "close"]] *= 3.0
    assert score_rss_settings(perturbed, n_folds=2, end=END, candidates=CANDIDATES) == report


def test_the_default_grid_starts_with_the_design_logs_settings():
    grid = default_candidates()
    assert len(grid) == 24 and grid[0].settings == RiskSettings()
    assert len({c.label for c in grid}) == 24


def test_the_command_prints_the_candidates_best_first_with_the_unsized_rules(report):
    from experiments.commands.risk import rss_settings_table

    text = rss_settings_table(report, top=2)
    lines = text.splitlines()
    assert lines[0].startswith("3 windows (2020-")
    assert "Unsized rules" in lines[1] and "buy_and_hold" in lines[1]
    ranked = sorted(report["candidates"], key=lambda row: -row["score"])
    assert ranked[0]["label"] in lines[5] and f"{ranked[0]['score']:.2f}" in lines[5]
    assert sum(line.startswith("| design log") or line.startswith("| no brake") for line in lines) == 2
    assert lines[-1] == f"Best: {report['best']}"
