"""DecisionInterval: the agent decides every ``k`` bars; the stack below steps every bar.

Why: a decision every bar gives PPO a per-step signal-to-noise ratio of about
(annual Sharpe) / sqrt(8,760), 0.03 for a good strategy, and a stochastic policy that
re-samples its direction every hour pays the 0.10 % fee on every flip, which drowns any
edge while it is being learned. Holding each decision for ``k`` bars raises the signal per
decision by sqrt(k) and bounds the flips, without changing the market, the fee or the
accounting: the core env, the reward and the RSS layer still step hourly underneath (the
risk layer re-sizes every bar inside its no-trade band).

Per decision the wrapper returns the observation after the last bar, the **sum** of the
``k`` hourly rewards (fewer at the end of an episode), and the last bar's ``info`` with
``reward_terms``, ``fee`` and ``turnover`` summed over the bars, plus ``decision_bars``
(how many bars this decision was held). ``k = 1`` is the identity.

``first_bars`` (default ``k``) holds the first decision after each ``reset`` that many bars
instead: a grid of decisions offset from the split's first bar, as one sleeve of a staggered
policy (:mod:`agents.sleeves`) trades it.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

_SUMMED_INFO = ("fee", "turnover")


class DecisionInterval(gym.Wrapper):
    """Repeat each action for ``bars`` steps of the wrapped env and sum the rewards."""

    def __init__(self, env: gym.Env, bars: int, *, first_bars: int | None = None) -> None:
        super().__init__(env)
        if isinstance(bars, bool) or int(bars) != bars or bars < 1:
            raise ValueError(f"decision_interval must be an int >= 1 (bars per decision), got {bars!r}")
        self.bars = int(bars)
        if first_bars is not None and (isinstance(first_bars, bool) or int(first_bars) != first_bars
                                       or not 1 <= first_bars <= self.bars):
            raise ValueError(f"first_bars must be an int in [1, {self.bars}] (bars the first decision is held), "
                             f"got {first_bars!r}")
        self.first_bars = self.bars if first_bars is None else int(first_bars)
        self._hold_next = self.first_bars

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        self._hold_next = self.first_bars
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        total = 0.0
        sums = dict.fromkeys(_SUMMED_INFO, 0.0)
        term_sums: dict[str, float] = {}
        held = 0
        hold, self._hold_next = self._hold_next, self.bars
        while True:
            observation, reward, terminated, truncated, info = self.env.step(action)
            held += 1
            total += float(reward)
            for key in _SUMMED_INFO:
                if key in info:
                    sums[key] += float(info[key])
            for name, value in info.get("reward_terms", {}).items():
                term_sums[name] = term_sums.get(name, 0.0) + float(value)
            if terminated or truncated or held >= hold:
                break
        if hold > 1:
            for key in _SUMMED_INFO:
                if key in info:
                    info[key] = sums[key]
            if "reward_terms" in info:
                info["reward_terms"] = term_sums
        info["decision_bars"] = held
        return observation, total, terminated, truncated, info
