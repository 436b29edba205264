"""The bad-input model: the shared MLP, but it returns one row more than it was given."""
import torch
import torch.nn as nn


class ExtraRow(nn.Sequential):
    def __init__(self):
        super().__init__(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 1))

    def forward(self, x):
        out = super().forward(x)
        return torch.cat([out, out[:1]])
