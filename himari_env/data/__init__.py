"""The data layer: loaders, validation, gap policy, chronological splits, synthetic market,
and the Binance downloader. Every function returns or checks the canonical frame: a UTC
``DatetimeIndex`` named ``timestamp`` and float64 columns ``open, high, low, close, volume``.
"""

from __future__ import annotations

from himari_env.data.download import (
    BINANCE_VISION_URL,
    DownloadedFile,
    Transport,
    UrllibTransport,
    download_binance_klines,
    month_range,
    monthly_kline_url,
)
from himari_env.data.errors import (
    DataError,
    DataFormatError,
    DownloadError,
    OHLCVValidationError,
)
from himari_env.data.loaders import (
    BINANCE_KLINE_COLUMNS,
    load_binance_klines_csv,
    load_binance_klines_zip,
    load_ohlcv,
    load_ohlcv_csv,
    load_ohlcv_parquet,
)
from himari_env.data.splits import (
    SPLIT_NAMES,
    SplitInfo,
    SplitReport,
    chronological_splits,
    describe_splits,
    validate_unseen,
)
from himari_env.data.synthetic import SyntheticMarket, synthesize_market
from himari_env.data.validation import (
    GapRun,
    RowFault,
    ValidationReport,
    gap_mask,
    validate_ohlcv,
)

__all__ = [
    "BINANCE_KLINE_COLUMNS",
    "BINANCE_VISION_URL",
    "SPLIT_NAMES",
    "DataError",
    "DataFormatError",
    "DownloadError",
    "DownloadedFile",
    "GapRun",
    "OHLCVValidationError",
    "RowFault",
    "SplitInfo",
    "SplitReport",
    "SyntheticMarket",
    "Transport",
    "UrllibTransport",
    "ValidationReport",
    "chronological_splits",
    "describe_splits",
    "download_binance_klines",
    "gap_mask",
    "load_binance_klines_csv",
    "load_binance_klines_zip",
    "load_ohlcv",
    "load_ohlcv_csv",
    "load_ohlcv_parquet",
    "month_range",
    "monthly_kline_url",
    "synthesize_market",
    "validate_ohlcv",
    "validate_unseen",
]
