"""A compact Kolmogorov-Arnold layer (Liu et al. 2024): a learned B-spline on every input-output edge.

``y_j = sum_i w_ij silu(x_i) + sum_i sum_k c_ijk B_k(x_i)``: each edge is a residual SiLU plus a cubic
B-spline on a fixed uniform grid over ``[-bound, bound]`` (inputs are squashed into it by ``tanh``, so
the grid always covers them). The bases come from the Cox-de Boor recursion, vectorized over the batch.
"""

from __future__ import annotations

import torch


class KANLinear(torch.nn.Module):
    def __init__(
        self, in_features: int, out_features: int, grid: int = 8, order: int = 3, bound: float = 1.0
    ):
        super().__init__()
        self.order = order
        step = 2 * bound / grid
        knots = torch.arange(-order, grid + order + 1, dtype=torch.float32) * step - bound
        self.register_buffer("knots", knots)  # grid + 2 * order + 1 knots -> grid + order bases
        self.base = torch.nn.Linear(in_features, out_features)
        self.spline = torch.nn.Linear(in_features * (grid + order), out_features, bias=False)
        torch.nn.init.normal_(self.spline.weight, std=0.1 / (in_features * (grid + order)) ** 0.5)

    def bases(self, x: torch.Tensor) -> torch.Tensor:
        """B-spline bases of every input, ``(batch, in_features, grid + order)``."""
        t = self.knots
        x = x[..., None]
        b = ((x >= t[:-1]) & (x < t[1:])).to(x.dtype)
        for k in range(1, self.order + 1):
            left = (x - t[: -(k + 1)]) / (t[k:-1] - t[: -(k + 1)]) * b[..., :-1]
            right = (t[k + 1 :] - x) / (t[k + 1 :] - t[1:-k]) * b[..., 1:]
            b = left + right
        return b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(x)
        return self.base(torch.nn.functional.silu(x)) + self.spline(self.bases(x).flatten(1))
