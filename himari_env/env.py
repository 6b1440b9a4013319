"""HimariBTCEnv: the core BTC 1-hour market environment.

Time convention (DESIGN.md, "Time and causality"): at step k the agent has seen the close of
bar ``t = bar_index``; its action is a target position held over bar ``t + 1``.

Accounting (exact, unit-tested by hand; :func:`himari_env.accounting.accounting_step`, the rule
the risk backtest and the Sortino calibration share):

* ``turnover = |p_t - p_{t-1}|`` (fraction of equity traded at ``close[t]``),
* ``fee = fee_rate * turnover * equity_t`` (charged at ``close[t]``),
* ``equity_{t+1} = (equity_t - fee) * (1 + p_t * r[t+1])`` with ``r[t+1] = close[t+1]/close[t] - 1``,
* base reward ``= ln(equity_{t+1} / equity_t)`` (net log return after fees),
* ``drawdown = 1 - equity / running peak of equity``.

The position is a *constant target weight*: it is rebalanced to ``p_t`` at each close, and
fees are charged only on changes of the target (DESIGN: fees on turnover
``|position[t] - position[t-1]|``). With ``p = 1`` this is exactly buy-and-hold. If equity
would reach zero or below (only possible with leverage > 1 or a short through a > 100 %
rally), the episode terminates with ``info["bankrupt"] = True`` and a finite reward.

Speed: every array comes precomputed in :class:`~himari_env.market.MarketData`; ``step`` does
scalar Python arithmetic on lists and copies one contiguous slice for the feature window
(Gymnasium requires fresh observation data each call); it allocates only the observation and
the info dict.
"""

from __future__ import annotations

import math
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from himari_env.accounting import EQUITY_FLOOR, accounting_step, drawdown
from himari_env.constants import DEFAULT_FEE_RATE, MAX_FEE_RATE, N_REGIMES, REGIME_NAMES
from himari_env.market import MarketData

ObsType = dict[str, Any]
ActType = np.ndarray


class HimariBTCEnv(gym.Env[ObsType, ActType]):
    """Trade one instrument on hourly bars with a continuous target position.

    Parameters
    ----------
    market : MarketData
        Precomputed causal arrays.
    split : str or None
        Which decision range of ``market.splits`` to trade (``None`` or ``"all"``: all bars).
    context : int
        Bars in the observation window (default 100).
    fee_rate : float
        Fee as a fraction of traded notional (default 0.001 = Binance spot taker 0.10 %).
    max_leverage : float
        Bound of the action space: positions in ``[-max_leverage, max_leverage]``.
    episode_length : int or None
        ``int``: random start (seeded through ``reset(seed=...)``) and that many steps;
        ``None``: one deterministic pass from the first decision bar to the end of the split.
    render_mode : "rgb_array", "human" or None
    """

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 4}

    def __init__(
        self,
        market: MarketData,
        *,
        split: str | None = None,
        context: int = 100,
        fee_rate: float = DEFAULT_FEE_RATE,
        max_leverage: float = 1.0,
        episode_length: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        if not isinstance(market, MarketData):
            raise TypeError(f"market must be a MarketData, got {type(market).__name__}")
        if int(context) != context or context < 1:
            raise ValueError(f"context must be a positive integer, got {context!r}")
        if not (math.isfinite(fee_rate) and 0.0 <= fee_rate < MAX_FEE_RATE):
            raise ValueError(f"fee_rate must be in [0, {MAX_FEE_RATE}) (a fraction of notional), got {fee_rate!r}")
        if not (math.isfinite(max_leverage) and max_leverage > 0):
            raise ValueError(f"max_leverage must be a positive number, got {max_leverage!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}"
            )
        self.market = market
        self.split = split
        self.context = int(context)
        self.fee_rate = float(fee_rate)
        self.max_leverage = float(max_leverage)
        self.render_mode = render_mode
        self._first_decision, self._end_decision = market.decision_range(split, self.context)
        n_decisions = self._end_decision - self._first_decision
        if episode_length is not None:
            if int(episode_length) != episode_length or episode_length < 1:
                raise ValueError(f"episode_length must be a positive integer or None, got {episode_length!r}")
            if episode_length > n_decisions:
                raise ValueError(
                    f"episode_length={episode_length} exceeds the {n_decisions} decision bars "
                    f"of split {split!r}"
                )
        self.episode_length = None if episode_length is None else int(episode_length)

        self.action_space = spaces.Box(-self.max_leverage, self.max_leverage, shape=(1,), dtype=np.float32)
        self.observation_space = spaces.Dict(
            {
                "features": spaces.Box(
                    -np.inf, np.inf, shape=(self.context, market.n_features), dtype=np.float32
                ),
                "regime": spaces.Discrete(N_REGIMES),
                "position": spaces.Box(-self.max_leverage, self.max_leverage, shape=(1,), dtype=np.float32),
            }
        )

        # Python lists make scalar reads ~5x cheaper than numpy scalar indexing in step().
        self._close = market.close.tolist()
        self._returns = market.returns.tolist()
        self._regimes = market.regime_ids.tolist()
        self._gap_before = market.gap_before.tolist()
        self._features = market.features
        self._timestamps = market.timestamps
        # The arrays the observation shows (replaced by use_observation_arrays).
        self._obs_features = market.features
        self._obs_regimes = self._regimes

        self._bar_index = self._first_decision
        self._start_bar = self._first_decision
        self._stop_bar = self._end_decision
        self._position = 0.0
        self._equity = 1.0
        self._peak_equity = 1.0
        self._steps = 0
        max_steps = self.episode_length or n_decisions
        self._equity_curve = np.ones(max_steps + 1, dtype=np.float64)
        self._position_path = np.zeros(max_steps, dtype=np.float64)
        self._figure: Any = None

    # ----------------------------------------------------------------- read-only state
    @property
    def bar_index(self) -> int:
        """Index of the bar whose close was just observed (the current decision bar)."""
        return self._bar_index

    @property
    def position(self) -> float:
        return self._position

    @property
    def equity(self) -> float:
        return self._equity

    @property
    def peak_equity(self) -> float:
        return self._peak_equity

    @property
    def drawdown(self) -> float:
        return drawdown(self._equity, self._peak_equity)

    @property
    def episode_bounds(self) -> tuple[int, int]:
        """(first decision bar, last decision bar + 1) of the current episode."""
        return self._start_bar, self._stop_bar

    def episode_equity(self) -> np.ndarray:
        """Equity after each step of the current episode, starting with 1.0: shape (steps + 1,)."""
        return self._equity_curve[: self._steps + 1].copy()

    def episode_positions(self) -> np.ndarray:
        """Target position held over each step of the current episode: shape (steps,)."""
        return self._position_path[: self._steps].copy()

    # ---------------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[ObsType, dict[str, Any]]:
        super().reset(seed=seed)
        if self.episode_length is None:
            start = self._first_decision
            stop = self._end_decision
        else:
            latest_start = self._end_decision - self.episode_length
            start = int(self.np_random.integers(self._first_decision, latest_start + 1))
            stop = start + self.episode_length
        if options and "start_bar" in options:
            start = int(options["start_bar"])
            if not self._first_decision <= start < self._end_decision:
                raise ValueError(
                    f"options['start_bar']={start} outside the decision range "
                    f"[{self._first_decision}, {self._end_decision})"
                )
            stop = self._end_decision if self.episode_length is None else min(
                start + self.episode_length, self._end_decision
            )
        self._start_bar, self._stop_bar = start, stop
        self._bar_index = start
        self._position = 0.0
        self._equity = 1.0
        self._peak_equity = 1.0
        self._steps = 0
        self._equity_curve[0] = 1.0
        info = self._info(fee=0.0, turnover=0.0, reward=0.0, spans_gap=False)
        return self._observation(), info

    def step(self, action: ActType) -> tuple[ObsType, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._bar_index >= self._stop_bar:
            raise RuntimeError("step() called after the episode ended; call reset() first")
        target = self._parse_action(action)
        t = self._bar_index
        equity = self._equity
        turnover, fee, new_equity, bankrupt = accounting_step(
            equity, self._position, target, self._returns[t + 1], self.fee_rate
        )
        reward = math.log(max(new_equity, EQUITY_FLOOR) / equity)

        self._position_path[self._steps] = target
        self._steps += 1
        self._equity_curve[self._steps] = new_equity
        self._position = target
        self._equity = new_equity
        if new_equity > self._peak_equity:
            self._peak_equity = new_equity
        self._bar_index = t + 1

        truncated = self._bar_index >= self._stop_bar and not bankrupt
        info = self._info(fee=fee, turnover=turnover, reward=reward, spans_gap=self._gap_before[t + 1])
        if bankrupt:
            info["bankrupt"] = True
            self._stop_bar = self._bar_index
        return self._observation(), reward, bankrupt, truncated, info

    # -------------------------------------------------------------------- internals
    def _parse_action(self, action: ActType) -> float:
        try:
            target = float(action.item() if type(action) is np.ndarray else action[0])
        except (TypeError, ValueError, IndexError) as error:
            raise ValueError(
                f"action must be an array of shape (1,) holding a target position, got {action!r}"
            ) from error
        limit = self.max_leverage
        if -limit <= target <= limit:  # the fast path; NaN fails it
            return target
        if math.isfinite(target) and abs(target) <= limit * (1 + 1e-6):
            return limit if target > 0 else -limit  # float32 rounding of a bound
        raise ValueError(
            f"action {target!r} is not a finite target position in [-{limit}, {limit}] (max_leverage)"
        )

    def _observation(self) -> ObsType:
        t = self._bar_index
        return {
            "features": self._obs_features[t - self.context + 1 : t + 1].copy(),
            "regime": self._obs_regimes[t],
            "position": np.array([self._position], dtype=np.float32),
        }

    def use_observation_arrays(self, features: np.ndarray, regime_ids: list[int],
                               observation_space: spaces.Dict) -> None:
        """Show ``features`` (float32 (n_bars, F')) and ``regime_ids`` (n_bars ints) in the
        observation instead of the market's, with ``observation_space``.

        For an observation wrapper that replaces both (the stack's
        :class:`~wrappers.observations.RegimeFeatureObservation`): the core then copies the
        one window the agent sees instead of a window that would be thrown away. ``info``,
        accounting and rendering keep the market's arrays.
        """
        if features.shape[0] != self.market.n_bars or len(regime_ids) != self.market.n_bars:
            raise ValueError(f"observation arrays need {self.market.n_bars} rows, got {features.shape[0]} "
                             f"features and {len(regime_ids)} regimes")
        self._obs_features = features
        self._obs_regimes = regime_ids
        self.observation_space = observation_space

    def _info(self, *, fee: float, turnover: float, reward: float, spans_gap: bool) -> dict[str, Any]:
        t = self._bar_index
        return {
            "timestamp": self._timestamps[t],
            "bar_index": t,
            "price": self._close[t],
            "regime": self._regimes[t],
            "position": self._position,
            "equity": self._equity,
            "fee": fee,
            "turnover": turnover,
            "drawdown": drawdown(self._equity, self._peak_equity),
            "spans_gap": spans_gap,
            "reward_terms": {"pnl": reward},
        }

    # ------------------------------------------------------------------- rendering
    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            gym.logger.warn("render() called without render_mode; pass render_mode='rgb_array' to make()")
            return None
        import matplotlib

        if self.render_mode == "rgb_array":
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        first = self._start_bar
        last = self._bar_index
        bars = np.arange(first, last + 1)
        close = self.market.close[first : last + 1]
        regimes = self.market.regime_ids[first : last + 1]
        positions = self._position_path[: self._steps]
        equity = self._equity_curve[: self._steps + 1]

        if self._figure is None:
            self._figure = plt.figure(figsize=(8, 5), dpi=80)
        fig = self._figure
        fig.clf()
        price_ax, equity_ax = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
        colors = ("#dfe9f5", "#dff5e1", "#fbeed5", "#f7d9d9")
        for regime_id, color in enumerate(colors):
            mask = regimes == regime_id
            if mask.any():
                price_ax.fill_between(bars, 0, 1, where=mask, color=color, step="mid",
                                      transform=price_ax.get_xaxis_transform(),
                                      label=REGIME_NAMES[regime_id])
        price_ax.plot(bars, close, color="black", linewidth=0.8)
        if len(positions):
            held = bars[:-1]
            price_ax.scatter(held[positions > 0], close[:-1][positions > 0], marker="^", s=8, color="green")
            price_ax.scatter(held[positions < 0], close[:-1][positions < 0], marker="v", s=8, color="red")
        price_ax.set_ylabel("close")
        price_ax.legend(loc="upper left", fontsize=7, ncol=4)
        equity_ax.plot(bars[: len(equity)], equity, color="navy", linewidth=0.9)
        equity_ax.set_ylabel("equity")
        equity_ax.set_xlabel("bar")
        fig.tight_layout()
        if self.render_mode == "human":
            plt.pause(0.001)
            return None
        fig.canvas.draw()
        return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()

    def close(self) -> None:
        if self._figure is not None:
            import matplotlib.pyplot as plt

            plt.close(self._figure)
            self._figure = None


def core_env(env: gym.Env) -> HimariBTCEnv:
    """The :class:`HimariBTCEnv` under any wrapper stack (a clear error otherwise)."""
    core = env.unwrapped
    if not isinstance(core, HimariBTCEnv):
        raise TypeError(f"expected a HIMARI env stack, got an env whose unwrapped env is {type(core).__name__}")
    return core
