"""Regime-conditioned transformer feature extractor for the HIMARI Dict observation.

Architecture (the design log's "RegimeConditionedPolicy", shapes for batch B, context C,
F features, width D = ``d_model``)::

    features (B, C, F) --Linear F->D--> + learned positional embedding (C, D)
        --> TransformerEncoder (pre-LayerNorm, ``n_layers`` x ``n_heads``, final LayerNorm)
        --> pooled (B, D): the last token (bar t, ``pooling="last"``) or the mean over C
    regime one-hot (B, 4) --Linear 4->D, no bias (== nn.Embedding(4, D))--+
    position (B, 1)       --Linear 1->D----------------------------------+--> state (B, D)
    output = concat(pooled, state)                                           (B, 2D)

The positional encoding is *learned* (one D-vector per slot of the fixed context window),
initialised N(0, 0.02). The window holds bars t-C+1 .. t only, so full (unmasked) attention
inside it is causal. ``features_dim`` is ``2 * d_model`` (512 for the ``full`` preset, which
feeds the log's 512 -> 256 -> 3 actor and 512 -> 256 -> 1 critic).

SB3's default orthogonal initialisation (gain sqrt(2)) is applied by the policy to every
``nn.Linear`` here after construction (``ortho_init=True``); the attention input projections
and the positional embedding keep PyTorch's / our initialisation.
"""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from agents.feature_gather import FeatureWindowGather
from himari_env.constants import N_REGIMES

__all__ = ["RegimeTransformerExtractor"]

OBSERVATION_KEYS: tuple[str, ...] = ("features", "regime", "position")
#: The index-observation mode of the batched env: the bar index replaces the window.
INDEX_OBSERVATION_KEYS: tuple[str, ...] = ("bar_index", "regime", "position")


def _check_index_observation_space(observation_space: spaces.Dict, feature_table: np.ndarray | None,
                                   context: int | None) -> tuple[int, int]:
    """``(context, n_features)`` of an index-mode space, or a ValueError naming what is missing."""
    missing = [key for key in INDEX_OBSERVATION_KEYS if key not in observation_space.spaces]
    if missing:
        raise ValueError(f"observation space lacks key(s) {missing}; it has {list(observation_space.spaces)}")
    if feature_table is None or context is None:
        raise ValueError("an index-mode observation ('bar_index' instead of 'features') needs feature_table= "
                         "(the env's BatchedHimariStack.feature_table) and context=")
    table = np.asarray(feature_table)
    if table.ndim != 2:
        raise ValueError(f"feature_table must be (n_bars, n_features), got shape {table.shape}")
    return int(context), int(table.shape[1])


def _check_observation_space(observation_space: spaces.Space) -> tuple[int, int]:
    """Return ``(context, n_features)`` or raise ValueError naming the offending key."""
    if not isinstance(observation_space, spaces.Dict):
        raise ValueError(
            f"RegimeTransformerExtractor needs a Dict observation space with keys "
            f"{list(OBSERVATION_KEYS)}, got {observation_space}"
        )
    missing = [key for key in OBSERVATION_KEYS if key not in observation_space.spaces]
    if missing:
        raise ValueError(
            f"observation space lacks key(s) {missing}; it has {list(observation_space.spaces)}"
        )
    features = observation_space["features"]
    if not isinstance(features, spaces.Box) or len(features.shape) != 2:
        raise ValueError(
            f"observation 'features' must be a Box of shape (context, n_features), got {features}"
        )
    regime = observation_space["regime"]
    if not isinstance(regime, spaces.Discrete) or int(regime.n) != N_REGIMES:
        raise ValueError(f"observation 'regime' must be Discrete({N_REGIMES}), got {regime}")
    position = observation_space["position"]
    if not isinstance(position, spaces.Box) or position.shape != (1,):
        raise ValueError(f"observation 'position' must be a Box of shape (1,), got {position}")
    context, n_features = features.shape
    return int(context), int(n_features)


class RegimeTransformerExtractor(BaseFeaturesExtractor):
    """Transformer over the feature window, concatenated with a regime/position embedding.

    Parameters
    ----------
    observation_space : gymnasium.spaces.Dict
        ``features`` Box (context, n_features), ``regime`` Discrete(4), ``position`` Box (1,).
    d_model : int
        Token width D (must be divisible by ``n_heads``).
    n_layers, n_heads : int
        Encoder depth and attention heads.
    dim_feedforward : int
        Hidden width of each encoder layer's feed-forward block.
    dropout : float
        Dropout inside the encoder, in [0, 1). PPO recomputes log-probabilities of its own
        rollouts, so the presets use 0.0.
    pooling : {"last", "mean"}
        ``"last"``: the token of bar t (newest); ``"mean"``: average over the window.
    context : int or None
        Expected window length; a mismatch with the observation space raises ValueError
        (the config's ``env.context`` against the env actually built). None: take it from
        the space. Required in index mode.
    feature_table : float32 (n_bars, F) or None
        Index mode (the batched env's ``observation_mode="index"``: ``bar_index`` instead of
        ``features``): the market's feature table
        (:attr:`himari_env.vector.BatchedHimariStack.feature_table`); windows are gathered
        from it on the model's device by :class:`agents.feature_gather.FeatureWindowGather`.
        The outputs equal the window mode's for the same bars and weights.

    Notes
    -----
    Input (as SB3 preprocesses it): ``features`` float (B, C, F) or ``bar_index`` float
    (B, 1), ``regime`` one-hot float (B, 4) or (B, 1, 4), ``position`` float (B, 1). Output
    float (B, 2 * d_model).
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        d_model: int = 256,
        n_layers: int = 3,
        n_heads: int = 4,
        dim_feedforward: int = 1024,
        dropout: float = 0.0,
        pooling: str = "last",
        context: int | None = None,
        feature_table: np.ndarray | None = None,
    ) -> None:
        index_mode = isinstance(observation_space, spaces.Dict) and "bar_index" in observation_space.spaces \
            and "features" not in observation_space.spaces
        if index_mode:
            space_context, n_features = _check_index_observation_space(observation_space, feature_table, context)
        else:
            space_context, n_features = _check_observation_space(observation_space)
        if context is not None and context != space_context:
            raise ValueError(
                f"context mismatch: the extractor expects a window of {context} bars but the "
                f"observation 'features' has {space_context} (shape {observation_space['features'].shape}); "
                "build the env and the agent from the same env.context"
            )
        for name, value in (
            ("d_model", d_model),
            ("n_layers", n_layers),
            ("n_heads", n_heads),
            ("dim_feedforward", dim_feedforward),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if d_model % n_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if pooling not in ("last", "mean"):
            raise ValueError(f"pooling must be 'last' or 'mean', got {pooling!r}")
        super().__init__(observation_space, features_dim=2 * d_model)
        self.context = space_context
        self.n_features = n_features
        self.pooling = pooling
        self.gather = None
        if index_mode:
            assert feature_table is not None  # checked above
            self.gather = FeatureWindowGather(feature_table, space_context)

        self.feature_projection = nn.Linear(n_features, d_model)
        self.positional_embedding = nn.Parameter(torch.empty(space_context, d_model))
        nn.init.normal_(self.positional_embedding, mean=0.0, std=0.02)
        layer = nn.TransformerEncoderLayer(
            d_model=d_model,
            nhead=n_heads,
            dim_feedforward=dim_feedforward,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        # Pre-LN layers need the final LayerNorm; nested tensors do not apply (no padding).
        self.encoder = nn.TransformerEncoder(
            layer, num_layers=n_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False
        )
        self.regime_embedding = nn.Linear(N_REGIMES, d_model, bias=False)
        self.position_embedding = nn.Linear(1, d_model)

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        """Map a batch of observations to (B, 2 * d_model) features."""
        features = observations["features"] if self.gather is None else self.gather(observations["bar_index"])
        tokens = self.feature_projection(features) + self.positional_embedding
        encoded = self.encoder(tokens)
        pooled = encoded[:, -1, :] if self.pooling == "last" else encoded.mean(dim=1)
        # SB3 one-hot encodes Discrete entries as (B, 4) at predict time but (B, 1, 4) from
        # its rollout buffer, which stores them with shape (1,).
        regime_one_hot = observations["regime"].reshape(-1, N_REGIMES)
        state = self.regime_embedding(regime_one_hot) + self.position_embedding(
            observations["position"].reshape(-1, 1)
        )
        return torch.cat([pooled, state], dim=1)
