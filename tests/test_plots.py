"""The report's plots, rendered on real-size data (the 43,000-bar synthetic market, or the
2020-2024 file when present), are readable: regimes as merged runs, legends outside the
data, distinct curves, enough log-axis tick labels."""

from __future__ import annotations

import struct
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest

from experiments.evaluate import action_distribution, format_markdown
from experiments.plots import (
    CURVE_STYLES,
    REGIME_COLORS,
    actions_figure,
    drawdown_figure,
    equity_figure,
    log_ticks,
    plot_report,
    regime_runs,
)
from himari_env.data import synthesize_market
from tests.conftest import REAL_DATA_PATH

N_BARS = 43_000


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


@pytest.fixture(scope="module")
def market() -> dict[str, Any]:
    """Timestamps, regimes and closes of a real-size market."""
    if REAL_DATA_PATH.is_file():
        from wrappers.stack import prepare

        prepared = prepare(str(REAL_DATA_PATH))  # the labeler's regimes, as in an evaluation
        regimes = np.maximum(np.asarray(prepared.market.regime_ids, dtype=np.int64), 0)
        return {"timestamps": prepared.market.timestamps, "close": prepared.market.close, "regimes": regimes}
    synthetic = synthesize_market(N_BARS, seed=0)
    frame, regimes = synthetic.frame, np.asarray(synthetic.regime_ids, dtype=np.int64)
    return {"timestamps": frame.index.tz_convert(None).to_numpy(), "close": frame["close"].to_numpy(),
            "regimes": regimes}


def pass_arrays(market: dict[str, Any], start: int, stop: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Arrays shaped like one evaluation pass over bars start..stop-1."""
    rng = np.random.default_rng(seed)
    bars = np.arange(start, stop)
    close = market["close"][start:stop + 1]
    n = bars.size
    positions = rng.choice([-0.5, 0.0, 0.0, 0.7], size=n)
    returns = close[1:] / close[:-1] - 1.0
    agent = np.concatenate(([1.0], np.cumprod(1.0 + positions * returns)))
    momentum = np.concatenate(([1.0], np.cumprod(1.0 + np.sign(rng.standard_normal(n)) * returns - 0.0004)))
    actions = rng.integers(0, 3, size=n)
    return {"bar_indices": bars, "regimes": market["regimes"][start:stop], "actions": actions,
            "agent_positions": positions, "agent_equity": agent, "buy_and_hold_equity": close / close[0],
            "momentum_equity": momentum, "flat_equity": np.ones(n + 1)}


@pytest.fixture(scope="module")
def rendered(market: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    n = len(market["close"])
    cuts = {"train": (720, 720 + int(0.6 * (n - 721))), "test": (n - 1 - int(0.2 * (n - 721)), n - 1)}
    curves = {label: pass_arrays(market, a, b, seed=i) for i, (label, (a, b)) in enumerate(cuts.items())}
    report = {"splits": {label: {"actions": action_distribution(arrays["actions"], arrays["regimes"])}
                         for label, arrays in curves.items()}}
    prepared = {label: SimpleNamespace(market=SimpleNamespace(timestamps=market["timestamps"])) for label in curves}
    folder = tmp_path_factory.mktemp("plots")
    written = plot_report(folder, report, curves, prepared)
    return {"folder": folder, "written": written, "curves": curves, "report": report, "market": market}


def x_of(rendered: dict[str, Any], label: str) -> np.ndarray:
    bars = rendered["curves"][label]["bar_indices"]
    return rendered["market"]["timestamps"][np.append(bars, bars[-1] + 1)]


def test_every_plot_is_written_as_a_modest_png(rendered: dict[str, Any]) -> None:
    names = sorted(path.name for path in rendered["written"])
    assert names == ["actions_by_regime.png", "drawdown_test.png", "drawdown_train.png", "equity_test.png",
                     "equity_train.png"]
    for path in rendered["written"]:
        width, height = png_size(path)
        assert 800 <= width <= 1600 and 250 <= height <= 800, (path.name, width, height)
        assert 10_000 < path.stat().st_size < 400_000, (path.name, path.stat().st_size)


def test_regime_band_draws_one_segment_per_run_not_per_bar(rendered: dict[str, Any]) -> None:
    arrays = rendered["curves"]["train"]
    fig = equity_figure(x_of(rendered, "train"), arrays, title="train")
    band = fig.axes[1]
    starts, lengths, _ = regime_runs(arrays["regimes"])
    drawn = sum(len(collection.get_paths()) for collection in band.collections)
    assert drawn == starts.size
    assert drawn < arrays["regimes"].size / 5  # merged into runs: far fewer shapes than bars
    colors = {tuple(np.round(c.get_facecolor()[0], 3)) for c in band.collections}
    assert len(colors) == len(band.collections) <= len(REGIME_COLORS)
    # The band lies under the equity panel, not behind the curves.
    assert band.get_position().y1 <= fig.axes[0].get_position().y0
    plt.close(fig)


def test_legends_sit_outside_the_data(rendered: dict[str, Any]) -> None:
    for make in (equity_figure, drawdown_figure):
        fig = make(x_of(rendered, "test"), rendered["curves"]["test"], title="test")
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            legend = ax.get_legend()
            if legend is not None:
                assert legend.get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1
        plt.close(fig)
    fig = actions_figure(rendered["report"])
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    rightmost = max(ax.get_window_extent(renderer).x1 for ax in fig.axes)
    assert fig.legends and fig.legends[0].get_window_extent(renderer).x0 >= rightmost
    plt.close(fig)


def test_agent_and_buy_and_hold_are_distinct_and_buy_and_hold_is_dashed(rendered: dict[str, Any]) -> None:
    fig = equity_figure(x_of(rendered, "test"), rendered["curves"]["test"], title="test")
    lines = {line.get_label().split(":")[0]: line for line in fig.axes[0].get_lines()}
    agent, hold = lines[CURVE_STYLES["agent"][0]], lines[CURVE_STYLES["buy_and_hold"][0]]
    assert agent.get_color() != hold.get_color()
    assert agent.get_linestyle() == "-" and hold.get_linestyle() != "-"
    assert agent.get_linewidth() > hold.get_linewidth()
    plt.close(fig)


def test_the_log_axis_has_several_readable_tick_labels(rendered: dict[str, Any]) -> None:
    for label in ("train", "test"):
        fig = equity_figure(x_of(rendered, label), rendered["curves"][label], title=label)
        fig.canvas.draw()
        ax = fig.axes[0]
        low, high = ax.get_ylim()
        shown = [t.get_text() for t, v in zip(ax.get_yticklabels(), ax.get_yticks(), strict=True)
                 if low <= v <= high and t.get_text()]
        assert 3 <= len(shown) <= 9 and len(set(shown)) == len(shown), shown
        plt.close(fig)


@pytest.mark.parametrize(("low", "high"), [(0.93, 1.08), (0.7, 2.3), (0.12, 2.1), (0.003, 3.5), (0.999, 1.001)])
def test_log_ticks_give_four_to_nine_values_inside_the_range(low: float, high: float) -> None:
    ticks = log_ticks(low, high)
    assert 3 <= len(ticks) <= 9, ticks
    assert all(low <= t <= high for t in ticks) and ticks == sorted(ticks)


def test_regime_runs_encode_the_sequence() -> None:
    starts, lengths, values = regime_runs(np.array([2, 2, 0, 0, 0, 3, 2, 2]))
    assert starts.tolist() == [0, 2, 5, 6] and lengths.tolist() == [2, 3, 1, 2] and values.tolist() == [2, 0, 3, 2]


def test_report_markdown_embeds_the_plots_and_shows_times_to_the_minute() -> None:
    section = {
        "period": ["2020-01-31T00:00:00.000000000", "2023-02-10T23:00:00.000000000"],
        "agent": {"total_return": 0.1, "sharpe": 1.0}, "baselines": {"buy_and_hold": {"total_return": 0.5}},
        "actions": {"Overall": {"HOLD": 0.5, "LONG": 0.25, "SHORT": 0.25, "bars": 100}},
        "reward_terms": {"fee": -0.001},
    }
    report = {"run_dir": "runs/x", "model": "best_model.zip", "data": "synthetic", "fee_rate": 0.001,
              "splits": {"train": section, "test": section}, "hold_table": {"Overall": {"train": 0.5, "test": 0.5}}}
    text = format_markdown(report)
    assert "2020-01-31 00:00 .. 2023-02-10 23:00 UTC" in text
    assert ".000000000" not in text
    for name in ("equity_test.png", "drawdown_test.png", "actions_by_regime.png", "equity_train.png"):
        assert f"]({name})" in text
    assert text.index("equity_test.png") < text.index("equity_train.png")
