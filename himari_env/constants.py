"""Names and numbers shared by every layer of HIMARI.

Regime ids are fixed by the design of record and never renumbered:
0 LOW_VOL, 1 TRENDING, 2 HIGH_VOL, 3 CRISIS.
"""

from __future__ import annotations

from typing import Final

LOW_VOL: Final = 0
TRENDING: Final = 1
HIGH_VOL: Final = 2
CRISIS: Final = 3
REGIME_NAMES: Final[tuple[str, ...]] = ("LOW_VOL", "TRENDING", "HIGH_VOL", "CRISIS")
N_REGIMES: Final = len(REGIME_NAMES)

#: Agent-facing discrete actions.
HOLD: Final = 0
LONG: Final = 1
SHORT: Final = 2
ACTION_NAMES: Final[tuple[str, ...]] = ("HOLD", "LONG", "SHORT")
#: Target position (fraction of equity) for each discrete action.
ACTION_DIRECTIONS: Final[tuple[float, ...]] = (0.0, 1.0, -1.0)

OHLCV_COLUMNS: Final[tuple[str, ...]] = ("open", "high", "low", "close", "volume")
INDEX_NAME: Final = "timestamp"

#: Hourly bars in a (365-day) year, used to annualize Sharpe, Sortino and volatility.
BARS_PER_YEAR: Final = 8760

#: Binance spot taker fee without BNB discount (0.10 % of traded notional).
DEFAULT_FEE_RATE: Final = 0.001

#: Fee rates are fractions of traded notional in [0, MAX_FEE_RATE) (the env and the config).
MAX_FEE_RATE: Final = 0.1

#: The names the env factory, the configs and the CLI accept (one vocabulary).
REWARD_PRESETS: Final[tuple[str, ...]] = ("adaptive", "adaptive-log", "simple", "opportunity", "sortino", "pnl")
REGIME_SOURCES: Final[tuple[str, ...]] = ("rules", "hmm")
