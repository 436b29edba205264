"""The macro LSTM: next-quarter US unemployment from the previous 8 quarters of 5 indicators.

Referenced from audit.toml as ``architecture = "model:MacroLSTM"`` (loaded from this folder).
Input: (N, 8, 5) windows, each indicator standardized with the training period's mean and
standard deviation (encoding.json); time index 0 is the oldest quarter. Output: (N, 1) the
forecast unemployment rate in percent.

The network forecasts the *change* from the last observed rate: output = last unemployment rate
(un-standardized with the buffers ``target_center``/``target_scale``, which travel in the weights
file) + ``target_scale`` * head(LSTM state). With the head at zero it is exactly the naive
last-value forecast, so what the LSTM adds is visible in its error against that baseline.
"""

from __future__ import annotations

import torch
from torch import nn


class MacroLSTM(nn.Module):
    """One-layer LSTM (``hidden`` units) over the window, a linear head on the last state.

    Examples
    --------
    >>> MacroLSTM()(torch.zeros(3, 8, 5)).shape
    torch.Size([3, 1])
    """

    def __init__(self, n_features: int = 5, hidden: int = 16, target_index: int = 0) -> None:
        super().__init__()
        self.target_index = target_index
        self.lstm = nn.LSTM(n_features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)
        self.register_buffer("target_center", torch.zeros(()))
        self.register_buffer("target_scale", torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        last = x[:, -1, self.target_index] * self.target_scale + self.target_center
        return last[:, None] + self.target_scale * self.head(out[:, -1])
