"""Action sets: which directions the agent may choose.

``"long_short"`` (default): Discrete(3) 0 HOLD / 1 LONG / 2 SHORT.
``"long_flat"``: Discrete(2) 0 HOLD / 1 LONG, the spot trader's action set. BTCUSDT is a spot
market; a short there needs a margin loan whose interest the env does not charge, so a
long/flat agent trades only what the accounting prices fully. The indices keep their
meaning (0 HOLD, 1 LONG), so ``info["action"]`` and the HOLD/LONG/SHORT tables are unchanged
(SHORT is then always 0 %).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from gymnasium import spaces

ACTION_SETS: tuple[str, ...] = ("long_short", "long_flat")


class LongFlatActions(gym.ActionWrapper):
    """Narrow a Discrete(3) HOLD/LONG/SHORT env to Discrete(2) HOLD/LONG."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        inner = env.action_space
        if not isinstance(inner, spaces.Discrete) or inner.n != 3:
            raise ValueError(f"LongFlatActions needs a Discrete(3) HOLD/LONG/SHORT env, got {inner}")
        self.action_space = spaces.Discrete(2)

    def action(self, action: Any) -> int:
        try:
            index = int(action)
        except (TypeError, ValueError) as error:
            raise ValueError(f"action must be 0 HOLD or 1 LONG (action_set 'long_flat'), got {action!r}") from error
        if index != action or index not in (0, 1):
            raise ValueError(f"action must be 0 HOLD or 1 LONG (action_set 'long_flat'), got {action!r}")
        return index
