"""MF as embeddings + dot product (the tutorial's model), and biased MF (``mu + b_u + b_i + p_u.q_i``)."""

from __future__ import annotations

import importlib.util
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from deepmovie.data.interactions import Interactions
from deepmovie.errors import DeepMovieError
from deepmovie.models.base import DataInfo
from deepmovie.models.factors import Factors, to_numpy
from deepmovie.models.layers import embedding
from deepmovie.models.minibatch import MiniBatchModel, MiniBatchParams
from deepmovie.models.registry import MODELS


class MFParams(MiniBatchParams):
    factors: int = Field(64, ge=1)
    init_std: float = Field(0.1, gt=0, description="std of the normal initialisation of factors")
    reg_user: float = Field(0.02, ge=0, description="L2 on the user factors a batch touches")
    reg_item: float = Field(0.02, ge=0, description="L2 on the item factors a batch touches")
    kernel: Literal["auto", "numba", "torch"] = Field(
        "auto",
        description="code of the plain-SGD step: compiled with Numba (CPU, the 'fast' extra) or torch's; "
        "auto: Numba where it is installed",
    )
    sgd_threads: int = Field(
        1,
        ge=0,
        description="compiled SGD: parts of each epoch run at once without locks (Hogwild); "
        "1 is bit-reproducible, 0 uses every core",
    )
    order: Literal["shuffled", "by-user"] = Field(
        "shuffled",
        description="each epoch's rating order: shuffled, or by-user (users in a random order, each "
        "user's ratings together, as Surprise and cornac visit them: the user's factors stay in cache)",
    )


@MODELS.register("mf")
class MF(MiniBatchModel):
    """``p_u . q_i``: the tutorial's dot product of embeddings, no biases or mean."""

    Params = MFParams
    params: MFParams

    def __init__(self, params: MFParams, info: DataInfo) -> None:
        super().__init__(params, info)
        self.user_factors = embedding(info.n_users, params.factors, params.init_std, params.sparse)
        self.item_factors = embedding(info.n_items, params.factors, params.init_std, params.sparse)

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (self.user_factors(users) * self.item_factors(items)).sum(-1)

    def factors(self) -> Factors:
        n_users, n_items = self.info.n_users, self.info.n_items
        with torch.no_grad():
            return Factors(
                0.0,
                to_numpy(self.user_factors.weight),
                np.zeros(n_users, np.float32),
                to_numpy(self.item_factors.weight),
                np.zeros(n_items, np.float32),
                self.params.reg_user,
                None,
                reg_by_count=True,  # per-rating SGD: each rating of the user adds reg_user |p_u|^2
            )

    def prepare(self, train: Interactions, seed: int) -> None:
        super().prepare(train, seed)
        self._compiled = self._compiled_sgd()
        if self.params.order == "by-user":
            users = self._users.cpu().long()
            self._by_user = torch.argsort(users, stable=True)
            self._user_counts = torch.bincount(users, minlength=self.info.n_users)
            self._user_starts = torch.cumsum(self._user_counts, 0) - self._user_counts

    def epoch_order(self, epoch: int) -> torch.Tensor:
        if self.params.order == "shuffled":
            return super().epoch_order(epoch)
        # Users in a seeded random order; each one's rows (sorted by user once) follow in a block.
        users = torch.randperm(self.info.n_users, generator=self.epoch_generator(epoch))
        counts = self._user_counts[users]
        shift = torch.repeat_interleave(torch.cumsum(counts, 0) - counts - self._user_starts[users], counts)
        return self._by_user[torch.arange(len(shift)) - shift].to(self.device)

    def _compiled_sgd(self) -> bool:
        """Whether plain-SGD epochs run in compiled code (``kernel``), refusing what cannot."""
        kernel = self.params.kernel
        installed = importlib.util.find_spec("numba") is not None
        if kernel == "numba" and not installed:
            raise DeepMovieError(
                "kernel: numba needs Numba: pip install 'deepmovie[fast]', or use kernel: torch"
            )
        if kernel == "numba" and self.device.type != "cpu":
            raise DeepMovieError(f"kernel: numba runs on the CPU, not {self.device.type}; use kernel: torch")
        return kernel == "numba" or (kernel == "auto" and installed and self.device.type == "cpu")

    def compiled_sgd_epoch(self, order: torch.Tensor, lr: float) -> float | None:
        if not self._compiled:
            return None
        from deepmovie.models.factorization.sgd_kernels import sgd_epoch

        p = self.params
        rows = (self._users.numpy(), self._items.numpy(), self._ratings.numpy())
        return sgd_epoch(
            order.numpy(),
            rows,
            (self.user_factors.weight.detach().numpy(), self.item_factors.weight.detach().numpy()),
            self._bias_tables(),
            mean=self._mean(),
            lr=lr,
            reg=(p.reg_user, p.reg_item, getattr(p, "reg_bias", 0.0)),
            batch_size=p.batch_size,
            threads=p.sgd_threads,
        )

    def _bias_tables(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(user, item) bias tables as writable arrays sharing the weights' memory; None without biases."""
        return None

    def _mean(self) -> float:
        return 0.0

    def batch_loss(self, users, items, ratings):
        p, q = self.user_factors(users), self.item_factors(items)
        error = (p * q).sum(-1) - ratings
        squared = (error * error).sum()
        penalty = self.params.reg_user * (p * p).sum() + self.params.reg_item * (q * q).sum()
        return squared + penalty, squared

    def sgd_step(self, users, items, ratings, lr):
        p, q = self.user_factors.weight[users], self.item_factors.weight[items]
        error = (p * q).sum(-1) - ratings
        self._descend(users, items, error, p, q, lr)
        return (error * error).sum()

    def _descend(self, users, items, error, p, q, lr) -> None:
        """Factor updates of d/d(p, q) [error^2 + reg_user |p|^2 + reg_item |q|^2], summed per row."""
        step, e = 2 * lr, error[:, None]
        self.user_factors.weight.index_add_(0, users, (e * q + self.params.reg_user * p) * -step)
        self.item_factors.weight.index_add_(0, items, (e * p + self.params.reg_item * q) * -step)


class BiasedMFParams(MFParams):
    """Defaults chosen on ML-100K's validation rows (configs/biased-mf-ml-100k.yaml), at half the factors."""

    epochs: int = Field(200, ge=1)
    patience: int = Field(4, ge=0)
    optimizer: Literal["sgd", "adam", "adagrad"] = "sgd"
    lr: float = Field(0.005, gt=0)
    batch_size: int = Field(512, ge=1)
    factors: int = Field(128, ge=1)
    init_std: float = Field(0.01, gt=0)
    reg_user: float = Field(0.05, ge=0)
    reg_item: float = Field(0.065, ge=0)
    reg_bias: float = Field(0.01, ge=0, description="L2 on the biases a batch touches")


@MODELS.register("biased-mf")
class BiasedMF(MF):
    """``mu + b_u + b_i + p_u . q_i`` (Koren's biased MF; Surprise's SVD)."""

    Params = BiasedMFParams

    def __init__(self, params: BiasedMFParams, info: DataInfo) -> None:
        super().__init__(params, info)
        self.user_bias = embedding(info.n_users, 1, 0.0 + 1e-12, params.sparse)
        self.item_bias = embedding(info.n_items, 1, 0.0 + 1e-12, params.sparse)
        self.register_buffer("mean", torch.tensor(info.global_mean))

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.rate(users, items, self.user_factors(users))

    def factors(self) -> Factors:
        with torch.no_grad():
            return Factors(
                float(self.mean),
                to_numpy(self.user_factors.weight),
                to_numpy(self.user_bias.weight[:, 0]),
                to_numpy(self.item_factors.weight),
                to_numpy(self.item_bias.weight[:, 0]),
                self.params.reg_user,
                self.params.reg_bias,
                reg_by_count=True,
            )

    def _bias_tables(self) -> tuple[np.ndarray, np.ndarray]:
        return self.user_bias.weight.detach()[:, 0].numpy(), self.item_bias.weight.detach()[:, 0].numpy()

    def _mean(self) -> float:
        return float(self.mean)

    def rate(self, users: torch.Tensor, items: torch.Tensor, user_vectors: torch.Tensor) -> torch.Tensor:
        """``mu + b_u + b_i + x_u . q_i`` for a given user vector (``p_u``, or SVD++'s richer one)."""
        bias = self.user_bias(users)[:, 0] + self.item_bias(items)[:, 0]
        return self.mean + bias + (user_vectors * self.item_factors(items)).sum(-1)

    def batch_loss(self, users, items, ratings):
        return self.rated_loss(users, items, ratings, self.user_factors(users))

    def rated_loss(self, users, items, ratings, user_vectors, extra_penalty=0.0):
        """Squared error of :meth:`rate` plus L2 on the factors and biases the batch touches."""
        p, q = self.user_factors(users), self.item_factors(items)
        bu, bi = self.user_bias(users)[:, 0], self.item_bias(items)[:, 0]
        error = self.mean + bu + bi + (user_vectors * q).sum(-1) - ratings
        squared = (error * error).sum()
        params = self.params
        penalty = (
            params.reg_user * (p * p).sum()
            + params.reg_item * (q * q).sum()
            + params.reg_bias * (bu * bu + bi * bi).sum()
        )
        return squared + penalty + extra_penalty, squared

    def sgd_step(self, users, items, ratings, lr):
        p, q = self.user_factors.weight[users], self.item_factors.weight[items]
        bu, bi = self.user_bias.weight[users], self.item_bias.weight[items]
        error = self.mean + bu[:, 0] + bi[:, 0] + (p * q).sum(-1) - ratings
        step, reg = 2 * lr, self.params.reg_bias
        self.user_bias.weight.index_add_(0, users, (error[:, None] + reg * bu) * -step)
        self.item_bias.weight.index_add_(0, items, (error[:, None] + reg * bi) * -step)
        self._descend(users, items, error, p, q, lr)
        return (error * error).sum()
