"""RiskConfig: every RSS risk-layer setting and train fit in one typed, JSON-persisted object.

The JSON document mirrors the dataclasses (one object per method). Loading is strict (the
shared decoder :func:`himari_env.config_codec.decode_dataclass`): an unknown key, a missing
required value or a value of the wrong type raises a :class:`RiskConfigError` that names the
key path (e.g. ``evt.long_tail.xi``). Never pickle.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from himari_env.config_codec import decode_dataclass, encode_dataclass
from himari_env.risk.drawdown_brake import DrawdownBrakeParams
from himari_env.risk.evt import EVTParams, TailFit
from himari_env.risk.kelly import KellyParams
from himari_env.risk.leverage import LeverageParams
from himari_env.risk.portfolio_var import PortfolioVaRParams
from himari_env.risk.regime_multipliers import RegimeMultipliers
from himari_env.risk.risk_budget import RiskBudgetParams
from himari_env.risk.safe_margin import SafeMarginParams
from himari_env.risk.vol_target import VolTargetParams

RISK_CONFIG_VERSION = 1


class RiskConfigError(ValueError):
    """A risk configuration document is malformed (the message names the key path)."""


@dataclass(frozen=True)
class RiskConfig:
    """Settings of the eight RSS methods and the regime multipliers.

    Attributes
    ----------
    evt, kelly, vol_target, drawdown_brake, portfolio_var, safe_margin, leverage,
    risk_budget : per-method parameters (H1 .. H8); see each module.
    regime_multipliers : size factor per regime.
    rebalance_band : float
        No-trade band, a fraction of the current size: while the direction is unchanged and
        the newly computed size differs from the held one by at most this fraction, the held
        position is kept (no turnover, no fee). Without it the vol target re-sizes every bar
        and the fees on that drift cost more than the sizing gains. 0 disables it.
    fitted_on : dict
        Provenance of the train fit (counts, period); empty before calibration.
    version : int
        Document version.
    """

    evt: EVTParams = field(default_factory=EVTParams)
    kelly: KellyParams = field(default_factory=KellyParams)
    vol_target: VolTargetParams = field(default_factory=VolTargetParams)
    drawdown_brake: DrawdownBrakeParams = field(default_factory=DrawdownBrakeParams)
    portfolio_var: PortfolioVaRParams = field(default_factory=PortfolioVaRParams)
    safe_margin: SafeMarginParams = field(default_factory=SafeMarginParams)
    leverage: LeverageParams = field(default_factory=LeverageParams)
    risk_budget: RiskBudgetParams = field(default_factory=RiskBudgetParams)
    regime_multipliers: RegimeMultipliers = field(default_factory=RegimeMultipliers)
    rebalance_band: float = 0.25
    fitted_on: dict[str, Any] = field(default_factory=dict)
    version: int = RISK_CONFIG_VERSION

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rebalance_band) and 0.0 <= self.rebalance_band < 1.0):
            raise RiskConfigError(f"rebalance_band must be in [0, 1), got {self.rebalance_band!r}")

    @property
    def is_calibrated(self) -> bool:
        """True when the train-fitted values (EVT tails, volatility target) are present."""
        return self.evt.is_fitted and self.vol_target.target_vol is not None

    def replace(self, **changes: Any) -> RiskConfig:
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return encode_dataclass(self, error=RiskConfigError)

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> RiskConfig:
        if not isinstance(document, dict):
            raise RiskConfigError(f"a risk config must be a JSON object, got {type(document).__name__}")
        version = document.get("version", RISK_CONFIG_VERSION)
        if version != RISK_CONFIG_VERSION:
            raise RiskConfigError(f"risk config version {version!r} is not supported (expected {RISK_CONFIG_VERSION})")
        return decode_dataclass(cls, document, error=RiskConfigError)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> RiskConfig:
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise RiskConfigError(f"risk config is not valid JSON: {error}") from error
        return cls.from_dict(document)

    def save(self, path: str | Path) -> Path:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(self.to_json() + "\n", encoding="utf-8")
        return target

    @classmethod
    def load(cls, path: str | Path) -> RiskConfig:
        source = Path(path)
        try:
            text = source.read_text(encoding="utf-8")
        except OSError as error:
            raise RiskConfigError(f"cannot read risk config {source}: {error}") from error
        try:
            return cls.from_json(text)
        except RiskConfigError as error:
            raise RiskConfigError(f"{source}: {error}") from error


__all__ = ["RISK_CONFIG_VERSION", "RiskConfig", "RiskConfigError", "TailFit"]
