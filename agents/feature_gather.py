"""FeatureWindowGather: feature windows gathered on the model's device from bar indices.

In the batched env's index-observation mode (``HimariBTCVecEnv(..., observation_mode="index")``)
an observation carries the decision bar's index instead of the (context, F) feature window.
This module holds the market's feature table (``BatchedHimariStack.feature_table``, float32
(n_bars, F)) as a buffer, so on a GPU the table is device-resident and a rollout moves a few
numbers per env step instead of context x F floats; the rollout buffer shrinks accordingly.

``window[b] = table[bar_index[b] - context + 1 : bar_index[b] + 1]``: exactly the slice the env
copies into a window observation (bars <= t only: causal), so a policy gives identical outputs
in both modes (tests/test_feature_gather.py).

The table is a non-persistent buffer: it is not written into a model's state dict (it is the
market's data, rebuilt from the run bundle), so window and index models share state dicts.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["FeatureWindowGather"]


class FeatureWindowGather(nn.Module):
    """Map bar indices (B,) or (B, 1) to feature windows (B, context, F).

    Parameters
    ----------
    feature_table : float32 (n_bars, F)
        The observation features of every bar of the market (finite from the first bar that
        can be a decision bar).
    context : int
        Window length C in bars.

    Notes
    -----
    SB3 hands a ``Box`` observation to the extractor as float32; bar indices are integers
    below 2**24, so the float is exact and is rounded back to an integer index here. Indices
    whose window would leave the table raise ``IndexError`` (checked on CPU; on a GPU the
    check would cost a device synchronisation per forward pass, and CUDA's own bounds
    assertion fires instead).
    """

    table: torch.Tensor
    offsets: torch.Tensor

    def __init__(self, feature_table: np.ndarray | torch.Tensor, context: int) -> None:
        super().__init__()
        table = torch.tensor(np.asarray(feature_table, dtype=np.float32))  # a copy: the env's table is read-only
        if table.ndim != 2:
            raise ValueError(f"feature_table must be (n_bars, n_features), got shape {tuple(table.shape)}")
        if isinstance(context, bool) or int(context) != context or context < 1 or context > table.shape[0]:
            raise ValueError(f"context must be an int in [1, {table.shape[0]}], got {context!r}")
        self.context = int(context)
        self.n_bars, self.n_features = int(table.shape[0]), int(table.shape[1])
        self.register_buffer("table", table.contiguous(), persistent=False)
        self.register_buffer("offsets", torch.arange(-self.context + 1, 1, dtype=torch.long), persistent=False)

    def forward(self, bar_index: torch.Tensor) -> torch.Tensor:
        """(B,) or (B, 1) bar indices (integer or float) -> float32 (B, context, F)."""
        index = bar_index.reshape(-1)
        index = index.round().long() if index.is_floating_point() else index.long()
        rows = index[:, None] + self.offsets
        if rows.device.type == "cpu" and rows.numel() and (
                int(rows[:, 0].min()) < 0 or int(rows[:, -1].max()) >= self.n_bars):
            raise IndexError(f"bar indices must be in [{self.context - 1}, {self.n_bars - 1}] "
                             f"(context {self.context}, {self.n_bars} bars), got {index.tolist()}")
        return self.table[rows]
