"""GLocal-K (Han et al., CIKM 2021, "GLocal-K: Global and Local Kernels for Recommender Systems").

Two stages over sparse-fc's kernel autoencoder (the *local* kernel), as in the reference
(github.com/usydnlp/Glocal_K):

1. Pre-training, epochs ``1..pretrain_epochs``: sparse-fc itself, ``lbfgs_iters`` L-BFGS iterations
   per epoch.
2. Fine-tuning, the later epochs (``finetune_iters`` iterations each): the autoencoder's current
   reconstruction of the rating matrix is average-pooled over users into one value per item; that
   vector times a learned ``n_items x gk_size^2`` matrix, scaled by ``dot_scale``, is the
   ``gk_size x gk_size`` *global* kernel; the rating matrix convolved with it ('same' padding) through
   a ReLU is the autoencoder's new input. The loss is still the squared error on the observed
   entries plus the penalties (counted once), and its gradient reaches the autoencoder along both
   paths (its reconstruction of the input and the pooled reconstruction that made the kernel).

Whether the weights are fine-tuned ones is a buffer, so the trainer's best epoch (restored with its
weights, possibly a pre-training one), checkpoints and saved runs predict as they were trained.
"""

from __future__ import annotations

import torch
from pydantic import Field, field_validator

from deepmovie.models.autoencoders.sparse_fc import SparseFC, SparseFCParams
from deepmovie.models.base import DataInfo
from deepmovie.models.registry import MODELS

CONV_INIT_STD = 0.1  # the reference's truncated normal for the global kernel's matrix


class GLocalKParams(SparseFCParams):
    """Defaults: the reference's ML-100K settings (n_hid 500, n_dim 5, 2 layers, gk_size 3,
    lambda_2 20, lambda_s 0.006, iter_p 5, iter_f 5, epoch_p 30, epoch_f 60, dot_scale 1), so
    ``epochs = 30 + 60``. Its ML-1M settings: ``lambda_2=70 lambda_s=0.018 lbfgs_iters=50
    finetune_iters=10 pretrain_epochs=20 epochs=50 dot_scale=0.5``. The reference runs the whole
    schedule and reports its best epoch; ``patience: 0`` does the same, the best epoch judged on the
    validation rows."""

    epochs: int = Field(90, ge=1, description="pre-training plus fine-tuning epochs")
    patience: int = Field(0, ge=0)
    pretrain_epochs: int = Field(30, ge=0, description="epochs of the local-kernel autoencoder alone")
    finetune_iters: int = Field(5, ge=1, description="L-BFGS iterations per fine-tuning epoch")
    gk_size: int = Field(3, ge=1, description="side of the global convolution kernel (odd)")
    dot_scale: float = Field(1.0, gt=0, description="scale of the pooled vector . matrix product")

    @field_validator("gk_size")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError("must be odd, so that 'same' padding centres the kernel")
        return value


@MODELS.register("glocal-k")
class GLocalK(SparseFC):
    """Sparse FC pre-trained, then fine-tuned on the globally convolved rating matrix."""

    Params = GLocalKParams
    params: GLocalKParams
    # Fine-tuning: a second forward pass (the pooled reconstruction) and the convolved input, with
    # their gradients.
    TRAIN_DENSE = 8
    SERVE_DENSE = 4
    PASSES = 2

    def __init__(self, params: GLocalKParams, info: DataInfo) -> None:
        super().__init__(params, info)
        size = params.gk_size * params.gk_size
        bound = 2 * CONV_INIT_STD
        self.conv_kernel = torch.nn.Parameter(
            torch.nn.init.trunc_normal_(torch.empty(info.n_items, size), 0.0, CONV_INIT_STD, -bound, bound)
        )
        self.register_buffer("finetuned", torch.zeros((), dtype=torch.bool))

    def train_epoch(self, epoch: int) -> float:
        self.finetuned.fill_(epoch > self.params.pretrain_epochs)
        return super().train_epoch(epoch)

    def trainable(self) -> list[torch.nn.Parameter]:
        return list(self.parameters()) if self.finetuned else super().trainable()

    def iterations(self) -> int:
        return self.params.finetune_iters if self.finetuned else self.params.lbfgs_iters

    def global_kernel(self, reconstruction: torch.Tensor) -> torch.Tensor:
        """``(mean over users of the reconstruction) . conv_kernel * dot_scale`` as a conv2d weight."""
        side = self.params.gk_size
        pooled = reconstruction.mean(1)
        return (pooled @ self.conv_kernel * self.params.dot_scale).view(1, 1, side, side)

    def inputs(self, kernels: list[torch.Tensor] | None = None) -> torch.Tensor:
        """The rating matrix; once fine-tuning, its ReLU'd convolution with the global kernel."""
        ratings = self._require_ratings()
        if not self.finetuned:
            return ratings
        kernel = self.global_kernel(self.net(ratings, kernels))
        convolved = torch.nn.functional.conv2d(ratings[None, None], kernel, padding=self.params.gk_size // 2)
        return torch.relu(convolved[0, 0])
