"""Bayesian factorization machine by Gibbs sampling (Freudenthaler, Schmidt-Thieme & Rendle 2011;
Rendle 2013, libFM's MCMC): no learning rate and no regularization to tune.

``y = w0 + sum_i w_i x_i + sum_{i<j} <v_i, v_j> x_i x_j`` over the feature pipeline's categorical fields
(user, item, year bucket, demographics, genre and tag bags) plus two implicit-feedback groups: the items
the user rated (SVD++'s ``N(u)``) and the users who rated the item ("flipped"), each member weighted
``1/sqrt(size)`` (or ``1/size``). Likelihood ``y ~ N(yhat, 1/alpha)``, ``alpha ~ Gamma(1, 1)``; each
group g has its own prior ``w_i ~ N(mu_g, 1/lambda_g)`` and ``v_if ~ N(mu_gf, 1/lambda_gf)`` with
Normal-Gamma hyperpriors (``mu ~ N(0, 1/lambda)``, ``lambda ~ Gamma(1, 1)``), all sampled; ``w0`` has
a flat prior. One trainer epoch is one Gibbs sweep.

**Every feature is a function of the user or of the item** (``x`` of a rating (u, i) is the user's
features next to the item's), so a draw is summed per side: ``L`` (linear), ``P = sum x v`` and
``T = sum x^2 v^2`` per user and per item, and

    yhat(u, i) = w0 + Z_user(u) + Z_item(i) + <P_user(u), P_item(i)>,   Z = L + 1/2 sum_f (P^2 - T).

*The sampler (exact Gibbs).* Given everything else a feature's ``theta_j = [w_j, v_j]`` enters every
row linearly (an FM has no ``x_j^2`` term): ``yhat_n = c_n + a <theta_j, [1, P'_m + O_n]>`` for a row
of owner m (the user or item holding feature j with value a), ``P'_m`` the owner's ``P`` without j and
``O_n`` the other side's ``P``. So ``theta_j`` is drawn from its (k+1)-dimensional Gaussian conditional
in one step: libFM draws the k+1 coordinates one at a time, which is also exact but needs k+1 times
as many sequential steps. The sums over a feature's rows come from per-owner caches (libFM's residual
caching, in Rendle 2013's relational form): with ``Ô = [1, O]``, ``S1 = sum_n Ô_n``,
``S2 = sum_n Ô_n Ô_n^T`` and ``G = sum_n e_n Ô_n`` over each owner's rows, built once per side per
sweep (sparse products with the other side's ``Ô``) and updated in O(k^2) per (owner, feature) after
each draw, never per rating.

*Vectorized, still exact.* Features that never share an owner (so never a row) have independent
conditionals given the rest: they are drawn at once. A one-hot field (user, item, gender, ...) is one
such colour; a bag (genres, tags) and the implicit groups are split by greedy colouring so that no
owner holds two features of a colour (the items rated by one user go to different colours: ML-100K's
u1 needs 685 colours, its most active user's count, for N(u); 561 for the flipped group). Each colour is
one batched Cholesky solve; the sequential steps are colours, not features or coordinates, which is
also the cost: ~0.2 ms of dispatch per colour on a CPU. Parallel draws of features that *do* share rows
(Hogwild-style) would be cheaper but are not a Gibbs sampler: the items of one user each chase the same
residual, so together they overshoot it about |N(u)|-fold (~100 on ML-100K) and the chain diverges.

*Predictions (exact posterior-predictive mean over the kept draws).* The pairwise term of a draw is
``<P_user(u), P_item(i)>``; its average over draws is not a function of averaged parameters. After
``burn_in`` sweeps, up to ``keep_samples`` draws (evenly thinned, the last sweep always kept) are stored
as per-user and per-item vectors side by side, plus running sums of ``w0 + Z``: ``predict`` returns
``1/D sum_d yhat_d(u, i)`` for any (u, i) rows, a dot of the concatenated draws. Until the first kept
draw the latest one predicts. Everything a prediction or a later sweep needs is a buffer and each
sweep's randomness is seeded by (seed, sweep), so a resumed run equals an uninterrupted one (bit for bit
on the CPU, where it is tested; CUDA kernels may add in another order).

Left out: the dense features (their leave-one-out training values depend on the rating, not on the user
or the item) and time features (``predict`` gets no timestamp). The sampler works in float64, as libFM
does; stored draws are float32.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field, field_validator, model_validator

from deepmovie.data.interactions import Interactions
from deepmovie.engine.optim import intra_op_threads
from deepmovie.models.base import DataInfo, Model, ModelParams
from deepmovie.models.features.base import FeatureModel, FieldName
from deepmovie.models.features.fields import FeaturePipeline
from deepmovie.models.registry import MODELS

Side = Literal["user", "item"]
# Hyperpriors, as libFM's defaults: alpha ~ Gamma(1, 1); lambda ~ Gamma(1, 1); mu | lambda ~ N(0, 1/lambda).
PRIOR_SHAPE = PRIOR_RATE = 1.0
MU_0, GAMMA_0 = 0.0, 1.0
CHUNK_VALUES = 1 << 22  # entries x (k+1)^2 per batched draw: bounds the working set of one step
ROW_CHUNK = 1 << 20  # training rows scored at once
PREDICT_VALUES = 1 << 24  # rows x kept draws x k gathered at once by predict


class BayesFMParams(ModelParams):
    """Defaults chosen on the validation rows of ML-100K fold u1 (never on u1.test): valid RMSE 0.883
    at dim 10 against 0.889 (5), 0.888 (20), 0.898 (32) after 100 sweeps; 200 sweeps gave 0.884."""

    epochs: int = Field(
        100, ge=1, description="Gibbs sweeps in all, one per epoch (also settable as samples)"
    )
    patience: int = Field(
        0, ge=0, description="stop after this many sweeps without a better valid RMSE (0: never)"
    )
    burn_in: int = Field(
        20, ge=0, description="sweeps before draws are averaged (until then the latest draw predicts)"
    )
    keep_samples: int = Field(
        80,
        ge=1,
        description="draws averaged at most, evenly thinned; each keeps (users + items) x dim floats",
    )
    dim: int = Field(10, ge=1, description="factor size k")
    init_std: float = Field(0.1, gt=0, description="std of the initial factors")
    fields: list[FieldName] | None = Field(
        None, description="categorical fields used (default: every field the dataset has)"
    )
    implicit: bool = Field(True, description="add the items each user rated (SVD++'s N(u)) as a group")
    flipped: bool = Field(True, description="add the users who rated each item as a group")
    implicit_norm: Literal["sqrt", "count"] = Field(
        "sqrt", description="weight of each member of an implicit group: 1/sqrt(size) or 1/size"
    )
    year_bucket: int = Field(5, ge=1, description="years per release-year bucket")
    max_tags: int = Field(16, ge=1, description="tags kept per item (in the metadata's order)")
    min_count: int = Field(1, ge=1, description="training rows a category needs to be a feature")

    @model_validator(mode="before")
    @classmethod
    def _samples_are_epochs(cls, data: Any) -> Any:
        """``samples`` is the sampler's word for the trainer's epochs; given both, samples wins."""
        if isinstance(data, dict) and "samples" in data:
            data = dict(data)
            data["epochs"] = data.pop("samples")
        return data

    @field_validator("fields")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"lists a name twice: {value}")
        return value

    def schedule(self) -> tuple[int, int, int]:
        """(thinning, draws kept, sweep of the first kept draw): kept sweeps end on the last one."""
        after = self.epochs - self.burn_in
        if after <= 0:
            return 1, 0, self.epochs + 1
        thin = math.ceil(after / self.keep_samples)
        kept = (after - 1) // thin + 1
        return thin, kept, self.epochs - (kept - 1) * thin


@dataclass(frozen=True)
class Group:
    """Features sharing one prior: a field's categories or an implicit group's members."""

    name: str
    side: Side
    size: int
    offset: int  # first feature in the global feature space


@dataclass
class Chunk:
    """Features of one group drawn at once: no two of them share an owner."""

    group: int
    features: torch.Tensor  # (f,) global feature indices
    owners: torch.Tensor  # (E,) the owner (user or item) of each entry; distinct within a chunk
    local: torch.Tensor  # (E,) each entry's feature as a position in ``features``, ascending
    values: torch.Tensor  # (E, 1) x of each entry
    squares: torch.Tensor  # (E, 1, 1) x^2
    lengths: torch.Tensor | None  # (f,) entries of each feature; None: one each (nothing to sum)
    unit: bool  # every x is 1 (a one-hot field)


@dataclass
class SideData:
    """One side's design and its training rows, built by ``prepare``."""

    design: torch.Tensor  # sparse CSR (owners, features): x of every feature of this side
    squares: torch.Tensor  # the same with x^2
    counts: torch.Tensor  # sparse CSR (owners, other side): training rows of each pair
    rows_crow: torch.Tensor  # CSR of the training rows sorted by owner: row pointers ...
    rows_col: torch.Tensor  # ... the other side's index of each row ...
    rows_order: torch.Tensor  # ... and which training row each entry is
    chunks: list[Chunk]


@dataclass
class Terms:
    """One side's part of a draw's predictions: ``Z`` (n,) and ``P`` (n, k) of every owner."""

    z: torch.Tensor
    p: torch.Tensor


@dataclass
class Conditional:
    """A chunk's Gaussian conditionals, with what the update after the draw reuses."""

    precision: torch.Tensor  # (f, K, K)
    rhs: torch.Tensor  # (f, K): precision x mean
    theta: torch.Tensor  # (f, K): the features' values conditioned on
    p: torch.Tensor  # (E, K): [0, P'] of each entry's owner without the entry's feature
    s1: torch.Tensor  # (E, K): the owners' caches, gathered
    s2: torch.Tensor  # (E, K, K)


@dataclass
class Caches:
    """Per-owner sums over each owner's rows, maintained through one side's pass."""

    s1: torch.Tensor  # (n, K): sum of Ô_n = [1, O_n]
    s2: torch.Tensor  # (n, K, K): sum of Ô_n Ô_n^T
    g: torch.Tensor  # (n, K): sum of e_n Ô_n
    p: torch.Tensor  # (n, K): [0, P] of each owner, kept current as features are redrawn
    alpha: float  # this sweep's noise precision
    prior: torch.Tensor  # (groups, K): lambda mu of each group


@MODELS.register("bayes-fm")
class BayesFM(Model):
    """Bayesian FM over the fields and implicit groups, trained by blocked, coloured Gibbs sampling."""

    Params = BayesFMParams
    params: BayesFMParams

    def __init__(self, params: BayesFMParams, info: DataInfo) -> None:
        super().__init__(params, info)
        names = FeatureModel._field_names(params, info)
        self.pipeline = FeaturePipeline(info, names, params.year_bucket, params.max_tags)
        self.layout = self.pipeline.layout(params.dim + 1, 0, False)
        specs = [(s.name, s.side, s.rows) for s in self.layout.fields]
        if params.implicit:
            specs.append(("implicit", "user", info.n_items))
        if params.flipped:
            specs.append(("flipped", "item", info.n_users))
        offsets = np.concatenate([[0], np.cumsum([size for _, _, size in specs])]).astype(int)
        self.groups = [
            Group(name, side, size, int(offset))
            for (name, side, size), offset in zip(specs, offsets[:-1], strict=True)
        ]
        k, n_features = params.dim, int(offsets[-1])
        theta = torch.randn(n_features, k + 1, dtype=torch.float64) * params.init_std
        theta[:, 0] = 0.0
        self.register_buffer("theta", theta)  # [w_i, v_i] of every feature: the sampler's state
        self.register_buffer("w0", torch.tensor(float(info.global_mean), dtype=torch.float64))
        self.register_buffer("alpha", torch.tensor(1.0, dtype=torch.float64))
        self.register_buffer("prior_mean", torch.zeros(len(self.groups), k + 1, dtype=torch.float64))
        self.register_buffer("prior_precision", torch.ones(len(self.groups), k + 1, dtype=torch.float64))
        _, kept, _ = params.schedule()
        slots = max(kept, 1)
        # The kept draws, side by side: user u's k-vector of draw d is user_draws[u, d*k:(d+1)*k].
        self.register_buffer("user_draws", torch.zeros(info.n_users, slots * k))
        self.register_buffer("item_draws", torch.zeros(info.n_items, slots * k))
        self.register_buffer("user_sum", torch.zeros(info.n_users))  # sum over kept draws of Z_user
        self.register_buffer("item_sum", torch.zeros(info.n_items))
        self.register_buffer("w0_sum", torch.tensor(float(info.global_mean)))
        self.register_buffer("kept", torch.tensor(1))  # untrained: the global mean

    # -- preparation ---------------------------------------------------------------------------

    def prepare(self, train: Interactions, seed: int) -> None:
        """Designs, colours and row indices of both sides from the training rows; nothing is drawn."""
        device = self.device
        self._seed = seed
        k1 = self.params.dim + 1
        self._v_mask = torch.ones(k1, dtype=torch.float64, device=device)  # keeps v, zeroes w of [w, v]
        self._v_mask[0] = 0.0
        n_side = {"user": self.info.n_users, "item": self.info.n_items}
        most = max(n_side.values())
        self.require_memory(  # per-owner K x K sums and the other side's products, a chunk's temporaries,
            8 * (2 * most * k1 * k1 + 4 * CHUNK_VALUES + 16 * len(train)),  # row and design arrays
            "the sampler's working set (float64)",
            "; lower dim",
        )
        users = np.asarray(train.users, dtype=np.int64)
        items = np.asarray(train.items, dtype=np.int64)
        self._users = torch.as_tensor(users, device=device)
        self._items = torch.as_tensor(items, device=device)
        self._ratings = torch.as_tensor(np.asarray(train.ratings, dtype=np.float64), device=device)
        owner_rows = {"user": np.bincount(users, minlength=n_side["user"]) > 0}
        owner_rows["item"] = np.bincount(items, minlength=n_side["item"]) > 0
        entries = self._entries(train)
        n_features = self.theta.shape[0]
        self._active = torch.zeros(n_features, dtype=torch.bool, device=device)
        self._group_of = torch.zeros(n_features, dtype=torch.long, device=device)
        for g, group in enumerate(self.groups):
            self._group_of[group.offset : group.offset + group.size] = g
        self._sides: dict[str, SideData] = {}
        for side, other, own, theirs in (("user", "item", users, items), ("item", "user", items, users)):
            parts = [e for e in entries if self.groups[e[0]].side == side]
            owner = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
            feature = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, np.int64)
            value = np.concatenate([p[3] for p in parts]) if parts else np.zeros(0)
            shape = (n_side[side], n_features)
            chunks = []
            for g, o, f, v in parts:
                trained = owner_rows[side][o]  # owners without training rows add nothing to a draw
                chunks += self._chunks(g, o[trained], f[trained], v[trained], n_side[side])
                self._active[torch.as_tensor(np.unique(f[trained]), device=device)] = True
            order = np.argsort(own, kind="stable")
            crow = np.concatenate([[0], np.cumsum(np.bincount(own, minlength=n_side[side]))])
            self._sides[side] = SideData(
                design=_csr(owner, feature, value, shape, device),
                squares=_csr(owner, feature, value * value, shape, device),
                counts=_csr(own, theirs, np.ones(len(own)), (n_side[side], n_side[other]), device),
                rows_crow=torch.as_tensor(crow, device=device),
                rows_col=torch.as_tensor(theirs[order], device=device),
                rows_order=torch.as_tensor(order, device=device),
                chunks=chunks,
            )

    def _entries(self, train: Interactions) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
        """(group, owner, global feature, x) of every non-zero of both designs."""
        rows = self.pipeline.fit(train, self.layout, self.params.min_count)
        out = []
        for g, (group, spec) in enumerate(zip(self.groups, self.layout.fields, strict=False)):
            row = rows[spec.name]
            if spec.bag:
                present = self.pipeline.codes[spec.name].codes > 0
                weight = present / np.maximum(present.sum(1, keepdims=True), 1)
                owner = np.repeat(np.arange(len(row)), row.shape[1])
                feature, value = row.ravel(), weight.ravel()
            else:
                owner, feature, value = np.arange(len(row)), row, np.ones(len(row))
            keep = feature > 0  # row 0: an unseen category, no feature
            out.append((g, owner[keep], group.offset + feature[keep], value[keep]))
        pairs = train.csr()  # distinct (user, item) pairs
        norm = np.sqrt if self.params.implicit_norm == "sqrt" else np.asarray
        for g, group in enumerate(self.groups):
            if group.name not in ("implicit", "flipped"):
                continue
            matrix = pairs if group.name == "implicit" else pairs.T.tocsr()
            sizes = np.diff(matrix.indptr)
            owner = np.repeat(np.arange(matrix.shape[0]), sizes)
            weight = 1.0 / norm(np.maximum(sizes, 1).astype(np.float64))
            out.append((g, owner, group.offset + matrix.indices.astype(np.int64), weight[owner]))
        return out

    def _chunks(
        self, group: int, owner: np.ndarray, feature: np.ndarray, value: np.ndarray, n_owners: int
    ) -> list[Chunk]:
        """The group's features cut into colours (no owner twice in one), each cut to CHUNK_VALUES."""
        if len(owner) == 0:
            return []
        colour = _colours(owner, feature, n_owners)
        order = np.lexsort((feature, colour))
        owner, feature, value, colour = owner[order], feature[order], value[order], colour[order]
        limit = max(1, CHUNK_VALUES // (self.params.dim + 1) ** 2)
        device = self.device
        chunks = []
        bounds = np.flatnonzero(np.diff(colour)) + 1
        for o, f, v in zip(*(np.split(a, bounds) for a in (owner, feature, value)), strict=True):
            edges = np.append(np.flatnonzero(np.diff(f, prepend=-1)), len(f))  # where each feature starts
            begin = 0
            while begin < len(f):  # whole features, up to `limit` entries (at least one feature)
                fits = edges[(edges > begin) & (edges <= begin + limit)]
                end = int(fits[-1]) if len(fits) else int(edges[edges > begin][0])
                features, local, lengths = np.unique(f[begin:end], return_inverse=True, return_counts=True)
                chunks.append(
                    Chunk(
                        group,
                        torch.as_tensor(features, device=device),
                        torch.as_tensor(o[begin:end], device=device),
                        torch.as_tensor(local.astype(np.int64), device=device),
                        torch.as_tensor(v[begin:end, None], dtype=torch.float64, device=device),
                        torch.as_tensor(v[begin:end, None, None] ** 2, dtype=torch.float64, device=device),
                        None if lengths.max() == 1 else torch.as_tensor(lengths, device=device),
                        bool((v[begin:end] == 1).all()),
                    )
                )
                begin = end
        return chunks

    # -- one sweep -----------------------------------------------------------------------------

    def train_epoch(self, epoch: int) -> float:
        """One Gibbs sweep: alpha, the hyperpriors, w0, then every feature of the user side and of
        the item side; returns the mean squared error of the new draw on the training rows."""
        generator = torch.Generator(device=self.device).manual_seed(self._seed * 1_000_003 + epoch)
        rng = np.random.default_rng([self._seed % 2**32, epoch])
        terms = self.draw_terms()
        residual = self.residual(terms)
        n, sse = len(residual), float((residual * residual).sum())
        self.alpha.fill_(rng.gamma(PRIOR_SHAPE + n / 2, 1.0 / (PRIOR_RATE + sse / 2)))
        self._draw_hyperpriors(rng)
        step = self.w0_step(residual, rng)
        self.w0 += step
        residual -= step
        for side in ("user", "item"):
            caches = self.side_caches(side, residual, terms)
            # Many small batched solves: on the CPU, threads' hand-offs cost more than they save.
            with intra_op_threads(1 if self.device.type == "cpu" else torch.get_num_threads()):
                for chunk in self._sides[side].chunks:
                    self.redraw(caches, chunk, self.conditional(caches, chunk), generator)
            terms = self.draw_terms()
            residual = self.residual(terms)
        self._keep(epoch, terms)
        return float((residual * residual).mean())

    def w0_step(self, residual: torch.Tensor, rng: np.random.Generator) -> float:
        """A draw of ``w0_new - w0`` from its conditional under a flat prior: ``w0_new ~
        N(w0 + mean(e), 1/(alpha n))``."""
        n = len(residual)
        return float(residual.sum()) / n + rng.standard_normal() / math.sqrt(float(self.alpha) * n)

    def _draw_hyperpriors(self, rng: np.random.Generator) -> None:
        """Normal-Gamma posterior of every group's (mu, lambda), per coordinate, from its active
        features: lambda | mu, theta, then mu | lambda, theta."""
        theta, group = self.theta[self._active], self._group_of[self._active]  # ascending groups
        count = torch.bincount(group, minlength=len(self.groups))
        mu = self.prior_mean
        total = torch.segment_reduce(theta, "sum", lengths=count).cpu().numpy()
        spread = torch.segment_reduce((theta - mu[group]) ** 2, "sum", lengths=count).cpu().numpy()
        count, mu = count.double()[:, None].cpu().numpy(), mu.cpu().numpy()
        shape = PRIOR_SHAPE + (count + 1) / 2
        rate = PRIOR_RATE + (spread + GAMMA_0 * (mu - MU_0) ** 2) / 2
        precision = rng.gamma(np.broadcast_to(shape, rate.shape), 1.0 / rate)
        weight = count + GAMMA_0
        mu = (total + GAMMA_0 * MU_0) / weight + rng.standard_normal(mu.shape) / np.sqrt(weight * precision)
        self.prior_precision.copy_(torch.as_tensor(precision))
        self.prior_mean.copy_(torch.as_tensor(mu))

    def side_caches(self, side: Side, residual: torch.Tensor, terms: dict[str, Terms]) -> Caches:
        """Each owner's sums over its training rows of ``Ô = [1, O]``, ``Ô Ô^T`` and ``e Ô``."""
        data = self._sides[side]
        o_hat = _with_ones(terms["item" if side == "user" else "user"].p)
        n_other, k1 = o_hat.shape
        s1 = data.counts @ o_hat
        s2 = (data.counts @ (o_hat[:, :, None] * o_hat[:, None, :]).reshape(n_other, k1 * k1)).view(
            -1, k1, k1
        )
        residuals = _sparse(data.rows_crow, data.rows_col, residual[data.rows_order], data.counts.shape)
        p = torch.cat([torch.zeros_like(s1[:, :1]), terms[side].p], 1)
        alpha = float(self.alpha)
        return Caches(s1, s2, residuals @ o_hat, p, alpha, self.prior_precision * self.prior_mean)

    def conditional(self, caches: Caches, chunk: Chunk) -> Conditional:
        """Each chunk feature's Gaussian conditional of ``[w_j, v_j]`` from the owners' caches only:
        precision ``alpha sum_n h_n h_n^T + diag(lambda)`` and ``alpha sum_n h_n (e_n + <theta_j, h_n>)
        + lambda mu`` with ``h_n = a [1, P'_m + O_n]`` over the rows of each owner m."""
        owners, a = chunk.owners, chunk.values
        theta = self.theta[chunk.features]
        p = torch.addcmul(caches.p[owners], a, (theta * self._v_mask)[chunk.local], value=-1.0)  # [0, P']
        s1, s2, g = caches.s1[owners], caches.s2[owners], caches.g[owners]
        # sum_n (p + Ô_n)(p + Ô_n)^T = S2 + p (count p + S1)^T + S1 p^T
        gram = torch.addcmul(s2, p[:, :, None], torch.addcmul(s1, s1[:, :1], p)[:, None, :])
        gram.addcmul_(s1[:, :, None], p[:, None, :])
        cross = torch.addcmul(g, p, g[:, :1])
        if not chunk.unit:
            gram *= chunk.squares
            cross *= a
        if chunk.lengths is not None:  # sum each feature's entries (CPU index_add_ is far slower)
            gram = torch.segment_reduce(gram, "sum", lengths=chunk.lengths)
            cross = torch.segment_reduce(cross, "sum", lengths=chunk.lengths)
        gram *= caches.alpha
        rhs = torch.bmm(gram, theta[:, :, None])[:, :, 0].add_(cross, alpha=caches.alpha)
        rhs += caches.prior[chunk.group]
        gram.diagonal(dim1=1, dim2=2).add_(self.prior_precision[chunk.group])
        return Conditional(gram, rhs, theta, p, s1, s2)

    def redraw(
        self, caches: Caches, chunk: Chunk, conditional: Conditional, generator: torch.Generator
    ) -> None:
        """Draw the chunk's features from their conditional and update the owners' caches by the
        change: ``e_n -= a <delta, [1, P'_m + O_n]>`` on every row of the owner, summed."""
        draw = gaussian(conditional.precision, conditional.rhs, generator)
        self.theta[chunk.features] = draw
        owners, a, p = chunk.owners, chunk.values, conditional.p
        delta = (draw - conditional.theta)[chunk.local]
        change = torch.bmm(conditional.s2, delta[:, :, None])[:, :, 0]
        change = torch.addcmul(change, (delta * p).sum(1, keepdim=True), conditional.s1)
        caches.g[owners] = torch.addcmul(caches.g[owners], a, change, value=-1.0)
        caches.p[owners] = torch.addcmul(p, a, (draw * self._v_mask)[chunk.local])

    # -- draws and predictions -----------------------------------------------------------------

    def draw_terms(self) -> dict[str, Terms]:
        """Both sides' (Z, P) under the current draw: ``Z = L + 1/2 sum_f (P^2 - T)``, ``P = sum x v``."""
        out = {}
        for side, data in self._sides.items():
            lp = data.design @ self.theta
            t = data.squares @ (self.theta[:, 1:] ** 2)
            p = lp[:, 1:]
            out[side] = Terms(lp[:, 0] + 0.5 * (p * p - t).sum(1), p)
        return out

    def residual(self, terms: dict[str, Terms]) -> torch.Tensor:
        """``y - yhat`` of every training row."""
        user, item = terms["user"], terms["item"]
        out = torch.empty_like(self._ratings)
        for start in range(0, len(out), ROW_CHUNK):
            u = self._users[start : start + ROW_CHUNK]
            i = self._items[start : start + ROW_CHUNK]
            yhat = self.w0 + user.z[u] + item.z[i] + (user.p[u] * item.p[i]).sum(1)
            out[start : start + ROW_CHUNK] = self._ratings[start : start + ROW_CHUNK] - yhat
        return out

    def _keep(self, epoch: int, terms: dict[str, Terms]) -> None:
        """Store this sweep's draw: in slot 0 (replacing) before the first kept sweep, then in turn."""
        thin, _, first = self.params.schedule()
        if epoch >= first and (epoch - first) % thin:
            return
        slot = (epoch - first) // thin if epoch >= first else 0
        k = self.params.dim
        self.user_draws[:, slot * k : (slot + 1) * k] = terms["user"].p.float()
        self.item_draws[:, slot * k : (slot + 1) * k] = terms["item"].p.float()
        if slot == 0:
            for total in (self.user_sum, self.item_sum, self.w0_sum):
                total.zero_()
        self.user_sum += terms["user"].z.float()
        self.item_sum += terms["item"].z.float()
        self.w0_sum += self.w0.float()
        self.kept.fill_(slot + 1)

    def _averaged(self) -> tuple[int, int]:
        """(draws averaged, their columns in the draw buffers)."""
        draws = int(self.kept)
        return draws, draws * self.params.dim

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """The mean of the kept draws' predictions for each (user, item) row."""
        draws, width = self._averaged()
        out = torch.empty(len(users), device=self.w0_sum.device)
        step = max(1, PREDICT_VALUES // max(width, 1))
        for start in range(0, len(users), step):
            u, i = users[start : start + step], items[start : start + step]
            pairwise = (self.user_draws[u, :width] * self.item_draws[i, :width]).sum(1)
            out[start : start + step] = self.w0_sum + self.user_sum[u] + self.item_sum[i] + pairwise
        return out / draws

    def score_items(self, users: torch.Tensor) -> torch.Tensor:
        draws, width = self._averaged()
        users = users.long()
        pairwise = self.user_draws[users, :width] @ self.item_draws[:, :width].T
        return (self.w0_sum + self.user_sum[users, None] + self.item_sum[None, :] + pairwise) / draws

    def item_embeddings(self) -> np.ndarray:
        """The kept draws of each item's vector side by side: their cosine averages over draws."""
        _, width = self._averaged()
        return self.item_draws[:, :width].cpu().numpy()


def gaussian(precision: torch.Tensor, rhs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One draw from each ``N(precision^-1 rhs, precision^-1)`` of a batch: with ``precision = L L^T``,
    ``L^-T z`` has covariance ``precision^-1``."""
    factor, _ = torch.linalg.cholesky_ex(precision)  # definite: lambda > 0 on the diagonal
    mean = torch.cholesky_solve(rhs[..., None], factor)[..., 0]
    noise = torch.randn(rhs.shape, generator=generator, dtype=rhs.dtype, device=rhs.device)
    return mean + torch.linalg.solve_triangular(factor.mT, noise[..., None], upper=True)[..., 0]


def _with_ones(p: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.ones(len(p), 1, dtype=p.dtype, device=p.device), p], 1)


def _csr(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int], device: torch.device
) -> torch.Tensor:
    """A float64 sparse CSR matrix on ``device``; duplicate (row, col) entries are summed."""
    matrix = sp.csr_matrix((values.astype(np.float64), (rows, cols)), shape=shape)
    matrix.sum_duplicates()
    return _sparse(
        *(
            torch.as_tensor(a, device=device)
            for a in (matrix.indptr.astype(np.int64), matrix.indices.astype(np.int64), matrix.data)
        ),
        shape,
    )


def _sparse(
    crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]
) -> torch.Tensor:
    with warnings.catch_warnings():  # torch's one-time notice that sparse CSR is in beta
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, shape)


def _colours(owner: np.ndarray, feature: np.ndarray, n_owners: int) -> np.ndarray:
    """Greedy colouring of features (most entries first, smallest free colour) so that no owner has two
    features of one colour; returns each entry's colour. A one-hot field is one colour."""
    if np.bincount(owner, minlength=n_owners).max() <= 1:
        return np.zeros(len(owner), dtype=np.int64)
    features, index = np.unique(feature, return_inverse=True)
    order = np.argsort(index, kind="stable")
    counts = np.bincount(index, minlength=len(features))
    starts = np.concatenate([[0], np.cumsum(counts)])
    used = np.zeros((n_owners, 64), dtype=bool)
    colour = np.empty(len(features), dtype=np.int64)
    for f in np.argsort(-counts, kind="stable"):
        owners = owner[order[starts[f] : starts[f + 1]]]
        free = np.flatnonzero(~used[owners].any(0))
        if len(free):
            c = int(free[0])
        else:
            c = used.shape[1]
            used = np.concatenate([used, np.zeros_like(used)], 1)
        colour[f] = c
        used[owners, c] = True
    return colour[index]
