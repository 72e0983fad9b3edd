"""Neural collaborative filtering (He et al., WWW 2017) for explicit ratings: GMF, the MLP tower, NeuMF.

GMF scores ``h . (p_u * q_i)`` (matrix factorization with a learned weighting of the factors); the
MLP tower scores ``MLP([p'_u, q'_i])`` with its own embeddings; NeuMF concatenates the last layers of
both towers before one output unit. The paper's setting is implicit feedback; for ratings the output
is an offset from the training mean, plus user and item biases (``biases: false`` drops them), and
the loss is the squared error. NeuMF can start from separately pretrained towers, as in the paper:
``pretrain_epochs`` epochs of GMF and of the MLP tower, then their weights are copied in and the two
output layers are blended with weight ``alpha``.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

import torch
from pydantic import Field

from deepmovie.data.interactions import Interactions
from deepmovie.models.base import DataInfo
from deepmovie.models.layers import Activation, Biases, embedding, mlp
from deepmovie.models.minibatch import MiniBatchModel, MiniBatchParams
from deepmovie.models.registry import MODELS


class NCFParams(MiniBatchParams):
    """Defaults chosen on the validation rows of ML-100K fold u1 (never on u1.test)."""

    epochs: int = Field(60, ge=1)
    patience: int = Field(5, ge=0)
    factors: int = Field(32, ge=1, description="GMF embedding size")
    hidden: list[Annotated[int, Field(ge=2)]] = Field(
        default_factory=lambda: [64, 32, 16],
        description="MLP tower: the first size is the concatenated user+item embedding, then hidden layers",
    )
    activation: Activation = "relu"
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout after each MLP activation")
    init_std: float = Field(0.01, gt=0, description="std of the normal initialisation of embeddings")
    reg: float = Field(0.5, ge=0, description="L2 on the embedding rows (and biases) a batch touches")
    biases: bool = Field(True, description="user and item biases (NCF's implicit setting has none)")
    pretrain_epochs: int = Field(0, ge=0, description="neumf: epochs of GMF and of the MLP tower first")
    alpha: float = Field(0.5, ge=0, le=1, description="neumf: weight of GMF's output layer when blending")


class NCF(MiniBatchModel):
    """The shared body of the three NCF models; ``towers`` says which ones a model has."""

    Params = NCFParams
    params: NCFParams
    towers: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: NCFParams, info: DataInfo) -> None:
        super().__init__(params, info)
        std, sparse = params.init_std, params.sparse
        width = 0
        if "gmf" in self.towers:
            self.gmf_users = embedding(info.n_users, params.factors, std, sparse)
            self.gmf_items = embedding(info.n_items, params.factors, std, sparse)
            width += params.factors
        if "mlp" in self.towers:
            half = params.hidden[0] // 2
            self.mlp_users = embedding(info.n_users, half, std, sparse)
            self.mlp_items = embedding(info.n_items, params.hidden[0] - half, std, sparse)
            self.mlp, _ = mlp(params.hidden[0], params.hidden[1:], params.activation, params.dropout)
            width += params.hidden[-1]
        self.out = torch.nn.Linear(width, 1)
        torch.nn.init.zeros_(self.out.bias)
        if params.biases:
            self.biases = Biases(info.n_users, info.n_items, sparse)
        self.register_buffer("mean", torch.tensor(float(info.global_mean)))

    def towers_output(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, list]:
        """(concatenated last layers of the towers, the embedding rows the batch touched)."""
        parts, touched = [], []
        if "gmf" in self.towers:
            p, q = self.gmf_users(users), self.gmf_items(items)
            parts.append(p * q)
            touched += [p, q]
        if "mlp" in self.towers:
            p, q = self.mlp_users(users), self.mlp_items(items)
            parts.append(self.mlp(torch.cat([p, q], dim=-1)))
            touched += [p, q]
        return torch.cat(parts, dim=-1), touched

    def _rating(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(predicted ratings, squared norm of the embedding rows and biases the batch touched)."""
        x, touched = self.towers_output(users, items)
        rating = self.mean + self.out(x)[:, 0]
        norm = sum((t * t).sum() for t in touched)
        if self.params.biases:
            offsets, bias_norm = self.biases(users, items)
            rating, norm = rating + offsets, norm + bias_norm
        return rating, norm

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self._rating(users, items)[0]

    def batch_loss(self, users, items, ratings):
        rating, norm = self._rating(users, items)
        squared = ((rating - ratings) ** 2).sum()
        return squared + self.params.reg * norm, squared


@MODELS.register("gmf")
class GMF(NCF):
    """``mu + b_u + b_i + h . (p_u * q_i)``: generalized matrix factorization."""

    towers = ("gmf",)


@MODELS.register("ncf-mlp")
class NCFMLP(NCF):
    """``mu + b_u + b_i + h . MLP([p_u, q_i])``: NCF's MLP tower on its own."""

    towers = ("mlp",)


@MODELS.register("neumf")
class NeuMF(NCF):
    """``mu + b_u + b_i + h . [p_u * q_i, MLP([p'_u, q'_i])]``: GMF and the MLP tower fused."""

    towers = ("gmf", "mlp")

    def prepare(self, train: Interactions, seed: int) -> None:
        if self.params.pretrain_epochs:
            self._pretrain(train, seed)
        super().prepare(train, seed)

    def _pretrain(self, train: Interactions, seed: int) -> None:
        """Train GMF and the MLP tower on ``train``, then start from their weights (He et al. 3.4.1)."""
        gmf, mlp = (self._trained_tower(cls, train, seed).state_dict() for cls in (GMF, NCFMLP))
        a = self.params.alpha
        state = {**gmf, **mlp}
        state["out.weight"] = torch.cat([a * gmf["out.weight"], (1 - a) * mlp["out.weight"]], dim=1)
        state["out.bias"] = a * gmf["out.bias"] + (1 - a) * mlp["out.bias"]
        for key in ("biases.user.weight", "biases.item.weight"):
            if key in state:  # both towers learnt biases: start from their average
                state[key] = (gmf[key] + mlp[key]) / 2
        self.load_state_dict(state)

    def _trained_tower(self, cls: type[NCF], train: Interactions, seed: int) -> NCF:
        torch.manual_seed(seed)
        tower = cls(self.params.model_copy(update={"pretrain_epochs": 0}), self.info).to(self.device)
        tower.prepare(train, seed)
        for epoch in range(1, self.params.pretrain_epochs + 1):
            tower.train_epoch(epoch)
        return tower
