"""The digits CNN: a small convolutional network for 8x8 grayscale digits.

Referenced from audit.toml as ``architecture = "model:DigitsCNN"``; the audit runner loads this
file from the config's folder, so nothing needs installing. Input: (N, 1, 8, 8) pixel intensities
scaled to [0, 1] (raw 0..16 divided by 16); output: 10 logits, one per digit 0..9.
"""

from __future__ import annotations

import torch
from torch import nn


class DigitsCNN(nn.Module):
    """conv3x3(1->c1) - ReLU - conv3x3(c1->c2) - ReLU - maxpool2 - linear(c2*16->hidden) - ReLU -
    linear(hidden->10). ``padding=1`` keeps 8x8 through both convolutions; pooling gives 4x4.

    Examples
    --------
    >>> DigitsCNN()(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """

    def __init__(self, c1: int = 8, c2: int = 16, hidden: int = 32, n_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(c2 * 16, hidden), nn.ReLU(), nn.Linear(hidden, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
