"""Training-data augmentation: the mirrored market.

BTC's training years are mostly a bull market, so a policy can score well in them by being
long whatever its observation says, and the agent does (README, "What was tried on real
data": it earns what its exposure earns). The mirrored market is the same bars with every
log return negated: the log price reflected about the first close,

    p'[t] = 2 * log(close[0]) - p[t],   so   log(close'[t] / close'[t-1]) = -log(close[t] / close[t-1]),

with ``open' = c0^2 / open``, ``close' = c0^2 / close``, ``high' = c0^2 / low``,
``low' = c0^2 / high`` (the reflection swaps the bar's extremes) and the volume unchanged.
Volatility, ranges and volume keep their paths; every trend, drawdown and run-up changes
sign. Training on both leaves an unconditional long bias with no net reward, so only what
the observation says about the next bars can pay (`train.mirror_envs`). The transform is
pointwise in time, so it keeps causality: bar t of the mirror depends on bar t only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from himari_env.data.validation import validate_ohlcv


def mirror_ohlcv(frame: pd.DataFrame) -> pd.DataFrame:
    """The mirrored market of a canonical OHLCV frame (same index, same length).

    Parameters
    ----------
    frame : canonical OHLCV frame (UTC ``DatetimeIndex``; float64 ``open, high, low, close,
        volume``; prices > 0), validated here.

    Returns
    -------
    pd.DataFrame
        Prices ``c0^2 / x`` with ``c0 = close[0]`` (high and low swapped), the volume as is:
        close-to-close log returns are exactly the negated ones (up to float64 rounding),
        the first close is unchanged, and mirroring twice gives the frame back.
    """
    validate_ohlcv(frame)
    if frame.empty:
        raise ValueError("mirror_ohlcv: the frame has no bars")
    anchor = float(frame["close"].iloc[0])
    square = anchor * anchor
    mirrored = pd.DataFrame(
        {
            "open": square / frame["open"].to_numpy(dtype=np.float64),
            "high": square / frame["low"].to_numpy(dtype=np.float64),
            "low": square / frame["high"].to_numpy(dtype=np.float64),
            "close": square / frame["close"].to_numpy(dtype=np.float64),
            "volume": frame["volume"].to_numpy(dtype=np.float64, copy=True),
        },
        index=frame.index.copy(),
    )
    validate_ohlcv(mirrored)
    return mirrored
