"""The evaluation report's plots (PNG, matplotlib's Agg backend).

Written by :func:`plot_report` into the run folder, for each evaluated split ``<split>``:

* ``equity_<split>.png``: equity after fees on a log axis (agent solid blue, buy-and-hold
  dashed black, momentum purple, the flat start level dotted), with tick labels as returns
  (``+20%``) at readable values; under it a thin band with the regime of every bar, drawn as
  one coloured segment per regime *run* (not one stripe per bar); under that the agent's
  position. Legends sit outside the data, at the right.
* ``drawdown_<split>.png``: drawdown from the running peak, agent filled, buy-and-hold dashed.
* ``actions_by_regime.png``: the agent's HOLD/LONG/SHORT shares per regime, one panel per
  split, with the percentages written in the bars.

Every ``*_figure`` function returns the matplotlib Figure (tests inspect it); the caller
saves and closes it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from himari_env.constants import ACTION_NAMES, REGIME_NAMES

__all__ = [
    "ACTION_COLORS",
    "REGIME_COLORS",
    "actions_figure",
    "drawdown_figure",
    "equity_figure",
    "log_ticks",
    "plot_report",
    "regime_runs",
]

#: One colour per regime, in REGIME_NAMES order (LOW_VOL, TRENDING, HIGH_VOL, CRISIS).
REGIME_COLORS = ("#9ecae1", "#31a354", "#fd8d3c", "#cb181d")
#: HOLD, LONG, SHORT.
ACTION_COLORS = ("#bdbdbd", "#2ca02c", "#d62728")
AGENT_COLOR = "#1f5fbf"
#: name -> (label, colour, line style, line width), in legend order.
CURVE_STYLES: dict[str, tuple[str, str, Any, float]] = {
    "agent": ("agent", AGENT_COLOR, "-", 1.6),
    "buy_and_hold": ("buy-and-hold", "#111111", (0, (5, 2)), 1.0),
    "momentum": ("momentum (24 bars)", "#8e44ad", "-", 0.8),
}
DPI = 100
_LEGEND_KW: dict[str, Any] = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "borderaxespad": 0.0,
                              "fontsize": 8, "frameon": False}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ----------------------------------------------------------------------------- helpers


def regime_runs(regimes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run-length encoding of a regime sequence.

    Parameters
    ----------
    regimes : int (n,)

    Returns
    -------
    starts, lengths, values : int (k,) each
        Run i covers bars ``starts[i] .. starts[i] + lengths[i] - 1``, all in regime
        ``values[i]``; consecutive runs differ in regime; ``lengths.sum() == n``.
    """
    regimes = np.asarray(regimes)
    if regimes.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    change = np.flatnonzero(regimes[1:] != regimes[:-1]) + 1
    starts = np.concatenate(([0], change)).astype(np.int64)
    lengths = np.diff(np.append(starts, regimes.size)).astype(np.int64)
    return starts, lengths, regimes[starts].astype(np.int64)


def log_ticks(low: float, high: float, *, min_ticks: int = 4, max_ticks: int = 9) -> list[float]:
    """Readable tick values for a log axis spanning ``[low, high]`` (both > 0).

    The coarsest "nice" set (1-2-5 per decade, then finer mantissas) that gives at least
    ``min_ticks`` ticks inside the range; for a range too narrow for any of them, evenly
    spaced values (a log axis over a narrow range is nearly linear). Never more than
    ``max_ticks``.
    """
    if not (low > 0 and high > low and math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"log_ticks needs 0 < low < high, got {low} and {high}")
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    mantissa_sets: Sequence[Sequence[float]] = (
        (1.0,),
        (1.0, 3.0),
        (1.0, 2.0, 5.0),
        (1.0, 1.5, 2.0, 3.0, 5.0, 7.0),
        (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0),
        tuple(1.0 + 0.1 * i for i in range(10)) + tuple(2.0 + 0.25 * i for i in range(4))
        + tuple(float(v) for v in range(3, 10)),
    )
    for mantissas in mantissa_sets:
        ticks = sorted({round(m * 10.0**e, 12) for e in range(first, last + 1) for m in mantissas
                        if low <= m * 10.0**e <= high})
        if len(ticks) >= min_ticks:
            step = math.ceil(len(ticks) / max_ticks)
            return ticks[::step]
    from matplotlib.ticker import MaxNLocator

    values = MaxNLocator(nbins=min_ticks + 1, steps=[1, 2, 2.5, 5, 10]).tick_values(low, high)
    return [float(v) for v in values if low <= v <= high and v > 0]


def _return_label(value: float, _position: Any = None) -> str:
    """An equity multiple as a return: 1.2 -> ``+20%``, 0.95 -> ``-5%``, 1.025 -> ``+2.5%``."""
    change = round(100.0 * (value - 1.0), 1)
    if change == 0:
        return "0%"
    text = f"{change:+.0f}" if abs(change) >= 10 or change.is_integer() else f"{change:+.1f}"
    return f"{text}%"


def _multiple_label(value: float, _position: Any = None) -> str:
    """An equity multiple: 0.03 -> ``x0.03``, 2 -> ``x2``."""
    return f"\u00d7{value:g}"


def _time_axis(timestamps: np.ndarray) -> np.ndarray:
    """datetime64[ns] (tz-naive, UTC) for matplotlib."""
    values = np.asarray(timestamps)
    if values.dtype.kind == "M":
        return values.astype("datetime64[ns]")
    import pandas as pd

    index = pd.DatetimeIndex(values)
    if index.tz is not None:
        index = index.tz_convert(None)
    return index.to_numpy().astype("datetime64[ns]")


def _dates(ax: Any) -> None:
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(minticks=4, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def _total_return(equity: np.ndarray) -> float:
    return float(equity[-1] / equity[0] - 1.0)


# ----------------------------------------------------------------------------- figures


def equity_figure(x: np.ndarray, arrays: dict[str, np.ndarray], *, title: str) -> Any:
    """Equity (log), the regime band and the agent's position over one split.

    Parameters
    ----------
    x : datetime64 (n + 1,)
        Time of each equity point (the decision bars and the bar after the last).
    arrays : dict
        ``agent_equity``, ``buy_and_hold_equity``, ``momentum_equity`` (each (n + 1,), the
        equity after fees, starting at the same value), ``regimes`` (n,), ``agent_positions``
        (n,).
    title : str

    Returns
    -------
    matplotlib.figure.Figure
        Axes: ``fig.axes[0]`` equity, ``[1]`` the regime band (one rectangle per regime run,
        grouped in one collection per regime), ``[2]`` position.
    """
    import matplotlib.dates as mdates
    from matplotlib.patches import Patch
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    plt = _pyplot()
    x = _time_axis(x)
    fig, (ax, band, pos) = plt.subplots(
        3, 1, figsize=(11, 5.6), dpi=DPI, sharex=True,
        gridspec_kw={"height_ratios": [5.0, 0.45, 1.3], "hspace": 0.08},
    )
    start = float(arrays["agent_equity"][0])
    curves = []
    for name, (label, color, style, width) in CURVE_STYLES.items():
        key = f"{name}_equity"
        if key not in arrays:
            continue
        equity = np.asarray(arrays[key], dtype=np.float64) / start
        curves.append(equity)
        ax.plot(x, equity, color=color, linestyle=style, linewidth=width,
                label=f"{label}: {_total_return(equity):+.1%}", zorder=3 if name == "agent" else 2)
    ax.axhline(1.0, color="#888888", linewidth=0.8, linestyle=":", label="flat: 0%", zorder=1)
    ax.set_yscale("log")
    stacked = np.concatenate([c[np.isfinite(c) & (c > 0)] for c in curves] + [np.array([1.0])])
    low, high = float(stacked.min()), float(stacked.max())
    if high / low < 1.02:
        low, high = low / 1.01, high * 1.01
    ticks = log_ticks(low, high)
    ax.set_ylim(low / 1.03, high * 1.03)
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    # Within a decade returns read best (+20%); over several, multiples (x0.01, x0.1, x1, x3).
    wide = high / low > 10.0
    ax.yaxis.set_major_formatter(FuncFormatter(_multiple_label if wide else _return_label))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.grid(True, axis="y", color="#e5e5e5", linewidth=0.6)
    ax.set_ylabel("equity multiple (log scale)" if wide else "return (log scale)")
    ax.set_title(title, loc="left", fontsize=11)
    ax.legend(title="total return", title_fontproperties={"size": 8}, **_LEGEND_KW)

    # Regime band: one rectangle per run (consecutive bars in one regime).
    starts, lengths, values = regime_runs(arrays["regimes"])
    edges = mdates.date2num(x)
    for regime_id, color in enumerate(REGIME_COLORS):
        chosen = values == regime_id
        if not chosen.any():
            continue
        left = edges[starts[chosen]]
        right = edges[starts[chosen] + lengths[chosen]]
        # No anti-aliasing: runs narrower than a pixel keep their colour instead of blending.
        band.broken_barh(list(zip(left, right - left, strict=True)), (0.0, 1.0), facecolors=color,
                         edgecolor="none", linewidth=0, antialiased=False, label=REGIME_NAMES[regime_id])
    band.set_ylim(0, 1)
    band.set_yticks([])
    band.set_ylabel("regime", rotation=0, ha="right", va="center", fontsize=8)
    for spine in band.spines.values():
        spine.set_visible(False)
    counts = np.bincount(np.asarray(arrays["regimes"], dtype=np.int64), minlength=len(REGIME_NAMES))
    shares = counts / max(int(counts.sum()), 1)
    band.legend(handles=[Patch(color=c, label=f"{n} {100 * s:.0f}%") for n, c, s in
                         zip(REGIME_NAMES, REGIME_COLORS, shares, strict=True)],
                ncol=1, **{**_LEGEND_KW, "bbox_to_anchor": (1.01, 1.6), "loc": "upper left"})

    positions = np.asarray(arrays["agent_positions"], dtype=np.float64)
    pos.fill_between(x[:-1], positions, 0.0, step="post", color=AGENT_COLOR, alpha=0.55, linewidth=0)
    bound = max(1.0, float(np.nanmax(np.abs(positions))) if positions.size else 1.0)
    pos.set_ylim(-1.05 * bound, 1.05 * bound)
    pos.set_yticks([-bound, 0, bound], [f"short {bound:g}", "flat", f"long {bound:g}"], fontsize=7)
    pos.axhline(0.0, color="#888888", linewidth=0.5)
    pos.set_ylabel("agent\nposition", fontsize=8)
    _dates(pos)
    ax.set_xlim(x[0], x[-1])
    fig.subplots_adjust(left=0.09, right=0.79, top=0.93, bottom=0.08)
    return fig


def drawdown_figure(x: np.ndarray, arrays: dict[str, np.ndarray], *, title: str) -> Any:
    """Drawdown from the running peak (%), agent filled, buy-and-hold dashed."""
    plt = _pyplot()
    x = _time_axis(x)
    fig, ax = plt.subplots(figsize=(11, 3.0), dpi=DPI)
    for name in ("agent", "buy_and_hold"):
        label, color, style, width = CURVE_STYLES[name]
        equity = np.asarray(arrays[f"{name}_equity"], dtype=np.float64)
        drawdown = 100.0 * (1.0 - equity / np.maximum.accumulate(equity))
        if name == "agent":
            ax.fill_between(x, -drawdown, 0.0, color=color, alpha=0.35, linewidth=0)
        ax.plot(x, -drawdown, color=color, linestyle=style, linewidth=width,
                label=f"{label}: max {drawdown.max():.1f}%")
    ax.set_ylabel("drawdown (%)")
    ax.set_title(title, loc="left", fontsize=11)
    ax.grid(True, axis="y", color="#e5e5e5", linewidth=0.6)
    ax.set_xlim(x[0], x[-1])
    _dates(ax)
    ax.legend(**_LEGEND_KW)
    fig.subplots_adjust(left=0.08, right=0.79, top=0.88, bottom=0.15)
    return fig


def actions_figure(report: dict[str, Any]) -> Any:
    """The agent's HOLD/LONG/SHORT shares per regime, one panel per split in ``report``."""
    plt = _pyplot()
    labels = list(report["splits"])
    fig, axes = plt.subplots(1, len(labels), figsize=(3.6 * len(labels) + 1.6, 3.8), dpi=DPI,
                             squeeze=False, sharey=True)
    for ax, label in zip(axes[0], labels, strict=True):
        table = report["splits"][label]["actions"]
        names = [name for name in ("Overall", *REGIME_NAMES) if name in table]
        bottom = np.zeros(len(names))
        for action, color in zip(ACTION_NAMES, ACTION_COLORS, strict=True):
            shares = np.array([100.0 * table[name][action] for name in names])
            bars = ax.bar(range(len(names)), shares, bottom=bottom, color=color, width=0.75,
                          label=action if ax is axes[0][0] else None)
            for bar, share, base in zip(bars, shares, bottom, strict=True):
                if share >= 8.0:
                    ax.text(bar.get_x() + bar.get_width() / 2, base + share / 2, f"{share:.0f}",
                            ha="center", va="center", fontsize=7)
            bottom += shares
        ax.set_xticks(range(len(names)),
                      [f"{n.replace('_', ' ')}\n{table[n]['bars']:,}" for n in names], fontsize=7)
        ax.set_title(f"{label}", fontsize=10)
        ax.set_ylim(0, 100)
    axes[0][0].set_ylabel("% of bars (agent)")
    fig.legend(loc="upper left", bbox_to_anchor=(1.0 - 1.4 / fig.get_figwidth(), 0.9), frameon=False,
               fontsize=8, title="action", title_fontsize=8)
    fig.suptitle("Agent actions by regime (bars per regime under each label)", fontsize=10, x=0.02, ha="left")
    fig.subplots_adjust(left=0.07, right=1.0 - 1.6 / fig.get_figwidth(), top=0.85, bottom=0.17, wspace=0.08)
    return fig


def plot_report(run_dir: Path, report: dict[str, Any], curves: dict[str, dict[str, np.ndarray]],
                prepared_by_label: dict[str, Any]) -> list[Path]:
    """Write every plot of the module docstring into ``run_dir``; returns the files written.

    ``curves[label]`` holds the pass arrays (``bar_indices`` (n,), ``regimes``,
    ``agent_positions``, ``<policy>_equity`` (n + 1,)); ``prepared_by_label[label].market``
    gives the timestamps.
    """
    plt = _pyplot()
    written: list[Path] = []
    for label, arrays in curves.items():
        timestamps = prepared_by_label[label].market.timestamps
        bars = np.asarray(arrays["bar_indices"])
        x = np.asarray(timestamps)[np.append(bars, bars[-1] + 1)]
        for name, figure in (
            (f"equity_{label}.png", equity_figure(x, arrays, title=f"{label}: equity after fees")),
            (f"drawdown_{label}.png", drawdown_figure(x, arrays, title=f"{label}: drawdown from the running peak")),
        ):
            figure.savefig(run_dir / name)
            plt.close(figure)
            written.append(run_dir / name)
    figure = actions_figure(report)
    figure.savefig(run_dir / "actions_by_regime.png")
    plt.close(figure)
    written.append(run_dir / "actions_by_regime.png")
    return written
