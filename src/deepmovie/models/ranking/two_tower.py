"""Two-tower retrieval (Yi et al., RecSys 2019, "Sampling-bias-corrected neural modeling for large
corpus item recommendations"): a user tower and an item tower meet in a cosine, trained by a sampled
softmax over the other items of the batch.

In-batch negatives are drawn in proportion to popularity, so the plain softmax punishes popular items
for being frequent; the logQ correction subtracts ``log p_j`` (here the exact training frequency of
item j) from each logit, which makes the sampled softmax an unbiased estimate of the full one. The user
tower reads the mean embedding of the user's history (YouTube-style), so a new user is placed by the
same tower without retraining. The item tower may read genres, so items share what they have in common.
"""

from __future__ import annotations

import os

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from deepmovie.data.interactions import Interactions
from deepmovie.errors import DeepMovieError
from deepmovie.models.base import DataInfo, FoldInUnsupported
from deepmovie.models.factors import to_numpy
from deepmovie.models.layers import Activation, embedding, mlp
from deepmovie.models.minibatch import MiniBatchModel, MiniBatchParams
from deepmovie.models.ranking.base import RankingModel, RankingParams
from deepmovie.models.registry import MODELS

LOGIT_COPIES = 4  # batch x batch tensors alive in one step: logits, the mask, log-softmax, its gradient


class TwoTowerParams(MiniBatchParams, RankingParams):
    """Defaults chosen on validation NDCG@10 of ml-latest-small (random:0.2, seed 0): lr 0.001 over
    0.003, tau 0.05 over 0.1, dropout 0.1 over 0.3. Without the logQ correction test NDCG@10 fell from
    0.24 to 0.06 (the softmax pushed popular items down). A user-id embedding gained nothing over the
    history alone and folds new users in poorly (their id part is a zero training never saw), so it is off.
    """

    epochs: int = Field(40, ge=1, description="passes over the positive interactions")
    patience: int = Field(5, ge=0, description="stop after this many epochs without a better valid NDCG")
    lr: float = Field(0.001, gt=0, description="learning rate")
    sparse: bool = Field(
        False, description="sparse id-table gradients (off: the history bags touch most item rows each batch)"
    )
    embedding_dim: int = Field(64, ge=1, description="width of the user-id and item-id embeddings")
    hidden: list[int] = Field([128], description="hidden layer sizes of each tower's MLP ([]: linear towers)")
    dim: int = Field(64, ge=1, description="width of the L2-normalised tower outputs")
    activation: Activation = Field("relu", description="activation of the hidden layers")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout after each hidden layer (training only)")
    temperature: float = Field(0.05, gt=0, description="tau: logits are cos(u, v) / tau")
    logq_correction: bool = Field(
        True, description="subtract log p_j (item j's training frequency) from the training logits"
    )
    init_std: float = Field(0.1, gt=0, description="std of the normal initialisation of the id embeddings")
    user_embedding: bool = Field(
        False, description="the user tower also reads a user-id embedding (zero for a folded-in user)"
    )
    history: bool = Field(
        True, description="the user tower reads the mean item embedding of the user's positives (fold-in)"
    )
    use_genres: bool | None = Field(
        None, description="the item tower reads genre multi-hots (None: when the data has genres)"
    )

    @model_validator(mode="after")
    def _a_user_side(self) -> TwoTowerParams:
        if not (self.user_embedding or self.history):
            raise ValueError("the user tower needs an input: set user_embedding or history (or both)")
        return self


@MODELS.register("two-tower")
class TwoTower(MiniBatchModel, RankingModel):
    """``cos(U(user id, mean history), V(item id, genres)) / tau`` with in-batch, logQ-corrected softmax.

    Training rows are positive interactions; a row's history leaves its own item out (the tower must not
    learn to find the target in its input). Other rows of the batch that share the row's item or user are
    masked out of its softmax: they are positives, not negatives. Under torchrun each rank's softmax runs
    over its own shard of the batch (fewer negatives per row than one process would use).
    """

    Params = TwoTowerParams
    params: TwoTowerParams

    def __init__(self, params: TwoTowerParams, info: DataInfo) -> None:
        super().__init__(params, info)
        width, sparse = params.embedding_dim, params.sparse
        genres = info.items.genres if info.items is not None else np.zeros((info.n_items, 0), np.uint8)
        self.with_genres = genres.shape[1] > 0 if params.use_genres is None else params.use_genres
        if self.with_genres and genres.shape[1] == 0:
            raise DeepMovieError("two-tower: use_genres needs item genres (a movies file); the data has none")
        self.register_buffer(
            "genres", torch.as_tensor(genres if self.with_genres else genres[:, :0], dtype=torch.float32)
        )
        self.item_ids = embedding(info.n_items, width, params.init_std, sparse)
        n_genres = self.genres.shape[1]
        self.item_mlp, out = mlp(width + n_genres, params.hidden, params.activation, params.dropout)
        self.item_head = torch.nn.Linear(out, params.dim)
        user_width = 0
        if params.user_embedding:
            self.user_ids = embedding(info.n_users, width, params.init_std, sparse)
            user_width += width
        if params.history:
            self.history_items = torch.nn.EmbeddingBag(info.n_items, width, mode="sum", sparse=sparse)
            torch.nn.init.normal_(self.history_items.weight, std=params.init_std)
            user_width += width
        self.user_mlp, out = mlp(user_width, params.hidden, params.activation, params.dropout)
        self.user_head = torch.nn.Linear(out, params.dim)
        self._indptr: torch.Tensor | None = None  # the histories (CSR), never saved: prepare / attach
        self._indices: torch.Tensor | None = None

    # --- histories ------------------------------------------------------------------------------

    def prepare(self, train: Interactions, seed: int) -> None:
        """Rows are the positive interactions; they are also the histories the user tower reads."""
        positives = self.interactions(train)
        self._keep_history(positives)
        coo = positives.tocoo()
        rows = Interactions(
            coo.row.astype(np.int32), coo.col.astype(np.int32), coo.data, self.info.n_users, self.info.n_items
        )
        _check_logits_memory(self.params.batch_size, self.device)
        super().prepare(rows, seed)
        counts = torch.as_tensor(np.bincount(rows.items, minlength=self.info.n_items), device=self.device)
        self._log_q = torch.log(counts.double().clamp_min(1) / max(len(rows), 1)).float()

    def attach(self, seen: Interactions) -> None:
        """The histories the user tower reads: the positive interactions of ``seen``."""
        self._keep_history(self.interactions(seen))

    def _keep_history(self, matrix: sp.csr_matrix) -> None:
        self._indptr = torch.as_tensor(matrix.indptr, dtype=torch.long, device=self.device)
        self._indices = torch.as_tensor(matrix.indices, dtype=torch.long, device=self.device)

    def _history_sums(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum of history embeddings, history length) of each user, one embedding-bag over their rows."""
        if self._indptr is None or self._indices is None:
            raise DeepMovieError("two-tower: no histories to read; attach the seen ratings first")
        if self._indptr.device != self.device:
            self._indptr, self._indices = self._indptr.to(self.device), self._indices.to(self.device)
        users = users.long().to(self.device)
        starts, lengths = self._indptr[users], self._indptr[users + 1] - self._indptr[users]
        offsets = torch.cumsum(lengths, 0) - lengths
        total = int(lengths.sum())
        positions = torch.repeat_interleave(starts - offsets, lengths, output_size=total)
        positions += torch.arange(total, device=self.device)
        return self.history_items(self._indices[positions], offsets), lengths

    # --- towers ---------------------------------------------------------------------------------

    def user_vectors(self, users: torch.Tensor, leave_out: torch.Tensor | None = None) -> torch.Tensor:
        """Unit user vectors; ``leave_out`` (one item per user, in their history) is dropped from the mean."""
        parts = []
        if self.params.user_embedding:
            parts.append(self.user_ids(users))
        if self.params.history:
            distinct, inverse = torch.unique(users, return_inverse=True)
            sums, lengths = self._history_sums(distinct)
            sums, lengths = sums[inverse], lengths[inverse].float()
            if leave_out is not None:
                sums = sums - F.embedding(leave_out, self.history_items.weight, sparse=self.params.sparse)
                lengths = lengths - 1
            parts.append(sums / lengths.clamp_min(1)[:, None])
        return self._user_tower(torch.cat(parts, 1))

    def _user_tower(self, inputs: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.user_head(self.user_mlp(inputs)), dim=-1)

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """Unit item vectors from the id embedding and (when used) the genre multi-hot."""
        inputs = torch.cat([self.item_ids(items), self.genres[items]], 1)
        return F.normalize(self.item_head(self.item_mlp(inputs)), dim=-1)

    # --- the contract ---------------------------------------------------------------------------

    def item_embeddings(self) -> np.ndarray:
        return to_numpy(self.item_vectors(torch.arange(self.info.n_items, device=self.device)))

    def batch_loss(
        self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed in-batch softmax cross-entropy, the same): each row's item against the batch's others."""
        u = self.user_vectors(users, leave_out=items if self.params.history else None)
        log_q = self._log_q[items]
        correction = -log_q if self.params.logq_correction else torch.zeros_like(log_q)
        logits = torch.addmm(correction[None, :], u / self.params.temperature, self.item_vectors(items).T)
        clash = (items[:, None] == items[None, :]) | (users[:, None] == users[None, :])
        clash.fill_diagonal_(False)
        logits.masked_fill_(clash, -torch.inf)
        loss = F.cross_entropy(logits, torch.arange(len(users), device=logits.device), reduction="sum")
        return loss, loss.detach()

    def score_items(self, users: torch.Tensor) -> torch.Tensor:
        every_item = self.item_vectors(torch.arange(self.info.n_items, device=self.device))
        return self.user_vectors(users.long().to(self.device)) @ every_item.T / self.params.temperature

    @torch.no_grad()
    def fold_in(self, items: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        """The user tower over the mean embedding of the given positives: exactly how a known user with
        that history is scored (with ``user_embedding`` the id part is zero, an input training never saw,
        so the placement is rougher)."""
        if not self.params.history:
            raise FoldInUnsupported(
                "cold start is not supported for model 'two-tower' with history=false: its user tower "
                "reads only the user id; train with history=true to place new users"
            )
        liked = torch.nonzero(self.given_row(items, ratings)[0]).flatten()
        width = self.params.embedding_dim
        mean = self.history_items(liked, torch.zeros(1, dtype=torch.long, device=self.device))
        parts = [torch.zeros(1, width, device=self.device)] if self.params.user_embedding else []
        user = self._user_tower(torch.cat([*parts, mean / max(len(liked), 1)], 1))
        every_item = self.item_vectors(torch.arange(self.info.n_items, device=self.device))
        return (user @ every_item.T / self.params.temperature)[0].float().cpu().numpy()


def _check_logits_memory(batch_size: int, device: torch.device) -> None:
    """Refuse a batch whose in-batch logits (batch x batch, a few copies) cannot fit on ``device``."""
    need = LOGIT_COPIES * 4 * batch_size**2
    try:
        if device.type == "cuda":
            have = torch.cuda.mem_get_info(device)[1]
        else:
            have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError, RuntimeError):
        return  # the size is unknown here: let the allocator decide
    if need > have:
        raise DeepMovieError(
            f"two-tower: the in-batch logits of batch_size {batch_size:,} need {need / 1e9:.1f} GB; "
            f"this machine has {have / 1e9:.1f} GB (lower batch_size)"
        )
