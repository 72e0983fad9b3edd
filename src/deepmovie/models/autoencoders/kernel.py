"""Kernelized layers (Muller et al., ICML 2018, "Kernelized Synaptic Weight Matrices") and the
full-batch L-BFGS that trains them: what sparse-fc and GLocal-K share.

A kernel layer has a weight ``W`` (``n_in x n_out``), a bias, and a learned ``d``-dimensional vector
per input unit (``u``, ``n_in x d``) and per output unit (``v``, ``n_out x d``). Its effective weight is
``W * K(u, v)`` with the finite-support kernel ``K_ij = max(0, 1 - |u_i - v_j|^2)``: a connection
fades as its two units' vectors move apart and is exactly zero beyond distance 1, so the kernel
learns which connections to keep. The regularizer (as the references write it with TensorFlow's
``l2_regularizer``) is ``lambda_2 / 2 |W|^2 + lambda_s / 2 |K|^2`` per layer; the data term is
``1/2`` the squared error on the observed entries (``tf.nn.l2_loss``).

Both references (github.com/lorenzMuller/kernelNet_MovieLens, github.com/usydnlp/Glocal_K) train
on the whole dense rating matrix at once with scipy's L-BFGS-B, a fresh run of a few iterations per
"epoch" (``maxcor=10``); :func:`lbfgs_epoch` is that run with ``torch.optim.LBFGS``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch

INIT_STD = 1e-3  # u and v: truncated normal(0, 1e-3), so every K_ij starts at ~1 (a dense layer)
EVALS_PER_ITERATION = 25  # cap on loss evaluations (the line searches) per L-BFGS iteration


def finite_support_kernel(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``K_ij = max(0, 1 - |u_i - v_j|^2)`` for ``u`` (``n_in x d``) and ``v`` (``n_out x d``).

    The squared distances come from ``|u|^2 + |v|^2 - 2 u.v`` (an ``n_in x n_out`` product rather than
    an ``n_in x n_out x d`` difference)."""
    squared = (u * u).sum(1, keepdim=True) + (v * v).sum(1) - 2.0 * (u @ v.T)
    return (1.0 - squared.clamp_min(0.0)).clamp_min(0.0)


class KernelLinear(torch.nn.Module):
    """``x @ (W * K(u, v)) + b``; initialised as the references' TensorFlow variables are."""

    def __init__(self, n_in: int, n_out: int, dim: int) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.nn.init.xavier_uniform_(torch.empty(n_in, n_out)))
        bound = (3.0 / n_out) ** 0.5  # TensorFlow's default (Glorot) for a vector: fan_in = fan_out = n
        self.bias = torch.nn.Parameter(torch.empty(n_out).uniform_(-bound, bound))
        self.u = torch.nn.Parameter(_truncated_normal(n_in, dim))
        self.v = torch.nn.Parameter(_truncated_normal(n_out, dim))

    def kernel(self) -> torch.Tensor:
        return finite_support_kernel(self.u, self.v)

    def forward(self, x: torch.Tensor, kernel: torch.Tensor | None = None) -> torch.Tensor:
        kernel = self.kernel() if kernel is None else kernel
        return torch.addmm(self.bias, x, self.weight * kernel)

    def penalty(self, lambda_2: float, lambda_s: float, kernel: torch.Tensor | None = None) -> torch.Tensor:
        """``lambda_2 / 2 |W|^2 + lambda_s / 2 |K|^2``."""
        kernel = self.kernel() if kernel is None else kernel
        return 0.5 * (lambda_2 * (self.weight * self.weight).sum() + lambda_s * (kernel * kernel).sum())


def _truncated_normal(*shape: int) -> torch.Tensor:
    """TensorFlow's ``truncated_normal(0, INIT_STD)``: redrawn beyond two standard deviations."""
    return torch.nn.init.trunc_normal_(torch.empty(*shape), 0.0, INIT_STD, -2 * INIT_STD, 2 * INIT_STD)


class KernelNet(torch.nn.Module):
    """Kernel layers of ``sizes`` (input, hidden..., output): sigmoid hidden layers, identity output."""

    def __init__(self, sizes: Sequence[int], dim: int) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList(
            KernelLinear(n_in, n_out, dim) for n_in, n_out in itertools.pairwise(sizes)
        )

    def kernels(self) -> list[torch.Tensor]:
        """Each layer's ``K``, computed once for a forward pass and its penalty."""
        return [layer.kernel() for layer in self.layers]

    def forward(self, x: torch.Tensor, kernels: list[torch.Tensor] | None = None) -> torch.Tensor:
        kernels = self.kernels() if kernels is None else kernels
        last = len(self.layers) - 1
        for n, (layer, kernel) in enumerate(zip(self.layers, kernels, strict=True)):
            x = layer(x, kernel)
            if n < last:
                x = torch.sigmoid(x)
        return x

    def penalty(
        self, lambda_2: float, lambda_s: float, kernels: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        kernels = self.kernels() if kernels is None else kernels
        return sum(
            (layer.penalty(lambda_2, lambda_s, k) for layer, k in zip(self.layers, kernels, strict=True)),
            torch.zeros((), device=kernels[0].device),
        )

    def activations(self) -> int:
        """Hidden values per input row (what a forward pass keeps for the backward, per row)."""
        return sum(layer.weight.shape[1] for layer in self.layers[:-1])


def lbfgs_epoch(
    parameters: list[torch.nn.Parameter],
    objective: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    iterations: int,
    history: int,
) -> float:
    """``iterations`` full-batch L-BFGS iterations on ``objective() -> (loss, squared error)`` from a
    fresh memory, as each of the references' ``ScipyOptimizerInterface.minimize`` calls is; returns
    the squared error of the last evaluation.

    Nothing carries over between calls, so a run resumed from its weights continues exactly."""
    optimizer = torch.optim.LBFGS(
        parameters,
        lr=1.0,
        max_iter=iterations,
        max_eval=iterations * EVALS_PER_ITERATION,
        history_size=history,
        line_search_fn="strong_wolfe",
    )
    last = torch.zeros(())

    def closure() -> torch.Tensor:
        nonlocal last
        optimizer.zero_grad()
        loss, squared = objective()
        loss.backward()
        last = squared.detach()
        return loss

    optimizer.step(closure)
    return float(last)
