"""The DeepMovie hybrid (the poster; ConvMF's algorithm with any text encoder).

PMF's item factors get a prior: ``v_j ~ N(encoder(W, X_j), sigma_V^2 I)`` where ``X_j`` is item ``j``'s
document. Each iteration (one "epoch" for the trainer, so validation RMSE picks the best one and the
trainer restores it):

1. users: ``u_i <- (V I_i V^T + lambda_U I)^-1 V R_i`` (batched ridge solves, as ``pmf``);
2. items: ``v_j <- (U I_j U^T + lambda_V I)^-1 (U R_j + lambda_V encoder(W, X_j))``; with
   ``reg_by_count`` both lambdas scale with the row's rating count, so a well-rated item trusts its
   ratings and a rarely rated one leans on its text;
3. the encoder is trained ``encoder_epochs`` epochs to regress the new item factors (MSE, mini-batches).

With ``biases`` and ``text_bias`` the encoder also predicts each item's bias, the point the bias ridge
pulls toward instead of 0: how well a film is liked is partly in its text, and the plain ridge would
shrink every bias toward the mean (by a fixed share under ``reg_by_count``).

Items no training rating touches keep ``v_j = encoder(W, X_j)``: their factors (and bias) come from text
alone.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from pydantic import Field, model_validator

from deepmovie.data.interactions import Interactions
from deepmovie.data.text import tokenize
from deepmovie.errors import DeepMovieError
from deepmovie.models.base import DataInfo
from deepmovie.models.factorization.pmf import PMF, PMFParams
from deepmovie.models.hybrid.encoders import build_encoder
from deepmovie.models.hybrid.word_vectors import WordVectors, load_word_vectors, swap_word_tables
from deepmovie.models.layers import eval_mode
from deepmovie.models.registry import MODELS

log = logging.getLogger("deepmovie")
ENCODE_BATCH = 1024
BUCKET_BATCHES = 20  # batches per span sorted by document length (see Hybrid.training_batches)


class HybridParams(PMFParams):
    encoder: str = Field(
        "cnn", description="cnn, cnn-kan, lstm, resnet, transformer, minilm or module:pkg.mod:Class"
    )
    encoder_params: dict[str, Any] = Field(
        default_factory=dict, description="keyword arguments of the encoder"
    )
    encoder_epochs: int = Field(5, ge=1, description="encoder epochs per iteration")
    encoder_batch_size: int = Field(128, ge=1)
    encoder_lr: float = Field(1e-3, gt=0)
    encoder_weight_decay: float = Field(0.0, ge=0, description="lambda_W, as decoupled weight decay")
    encoder_warmup: int | None = Field(
        None,
        ge=0,
        description="optimizer steps of linear learning-rate warm-up; default: the encoder's own "
        "warmup_steps (transformer: 100; others: none)",
    )
    max_length: int = Field(300, ge=1, description="words kept per document")
    max_df: float = Field(0.5, gt=0, le=1, description="drop words in more than this share of documents")
    max_words: int = Field(8000, ge=1, description="vocabulary size")
    min_df: int = Field(1, ge=1, description="drop words in fewer documents (2: no word names one item)")
    word_vectors: WordVectors | None = Field(
        None,
        description="start the encoder's word table from pretrained vectors: glove-50 "
        "(pip install 'deepmovie[glove]'; projected to the encoder's embed_dim when it is not 50)",
    )
    freeze_word_vectors: bool = Field(
        False, description="keep the pretrained words' vectors fixed (the other words' rows still train)"
    )
    text_bias: bool = Field(
        False, description="with biases: the encoder also predicts each item's bias, its ridge's prior mean"
    )

    @model_validator(mode="after")
    def _text_bias_needs_biases(self) -> HybridParams:
        if self.text_bias and not self.biases:
            raise ValueError("text_bias predicts the item biases: set biases too")
        return self


@MODELS.register("hybrid")
class Hybrid(PMF):
    """PMF whose item factors are pulled toward ``encoder(item document)``."""

    Params = HybridParams
    params: HybridParams
    scores_cold_items = True  # an unrated item's factors are encoder(its document)

    def __init__(self, params: HybridParams, info: DataInfo) -> None:
        super().__init__(params, info)
        documents = info.items.documents if info.items is not None else []
        if not any(documents):
            raise DeepMovieError(
                "hybrid needs item documents: a MovieLens folder with its movies file, or --item-docs FILE"
            )
        tokens = tokenize(documents, params.max_length, params.max_df, params.max_words, params.min_df)
        self.vocabulary = tokens.vocabulary
        self.outputs = params.factors + params.text_bias  # the last column: the item's bias
        self.encoder = build_encoder(params.encoder, tokens.vocab_size, self.outputs, params.encoder_params)
        if params.word_vectors is not None:
            swap_word_tables(self.encoder, params.word_vectors, params.freeze_word_vectors)
        # What the encoder reads per item: word ids (a copy: the cached tokens are shared), or its own
        # features of the raw text.
        featurize = getattr(self.encoder, "featurize", None)
        inputs = featurize(documents) if featurize else torch.tensor(tokens.tokens)
        if len(inputs) != len(documents):
            raise DeepMovieError(
                f"encoder {params.encoder!r}: featurize gave {len(inputs)} rows for {len(documents)} items"
            )
        self.register_buffer("inputs", inputs, persistent=False)
        # Words per document (trailing zeros pad): batches of word ids are cut to their longest one.
        words = (inputs != 0).sum(1) if inputs.dtype == torch.long and inputs.dim() == 2 else None
        self.register_buffer("words", words, persistent=False)

    def prepare(self, train: Interactions, seed: int) -> None:
        super().prepare(train, seed)
        self._seed = seed
        p = self.params
        if p.word_vectors is not None:
            found = load_word_vectors(self.encoder, p.word_vectors, self.vocabulary, seed)
            log.info(
                "%s: vectors for %.1f%% of the %s vocabulary words; the others start random",
                p.word_vectors,
                100 * found,
                f"{len(self.vocabulary):,}",
            )
        self._optimizer = torch.optim.AdamW(
            self.encoder.parameters(), lr=p.encoder_lr, weight_decay=p.encoder_weight_decay
        )
        warmup = p.encoder_warmup
        if warmup is None:
            warmup = getattr(self.encoder, "warmup_steps", 0)
        self._schedule = torch.optim.lr_scheduler.LambdaLR(
            self._optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0
        )

    @torch.no_grad()
    def encode(self) -> torch.Tensor:
        """``encoder(W, X_j)`` for every item, in eval mode (no dropout); with ``text_bias`` the last
        column is the item's bias."""
        # Shortest documents first, so each batch is cut to a similar length; then back in item order.
        order = torch.argsort(self.words) if self.words is not None else torch.arange(len(self.inputs))
        out = torch.empty(len(self.inputs), self.outputs, device=self.inputs.device)
        with eval_mode(self.encoder):
            for rows in order.to(self.inputs.device).split(ENCODE_BATCH):
                out[rows] = self.encoder(self.batch(rows))
        return out

    def batch(self, rows: torch.Tensor) -> torch.Tensor:
        """The encoder's input for ``rows``; word ids lose the padding columns no row of them needs
        (encoders ignore padding, so this only skips convolving or attending over zeros)."""
        inputs = self.inputs[rows]
        if self.words is None:
            return inputs
        return inputs[:, : max(int(self.words[rows].max()), 1)]

    def train_epoch(self, epoch: int) -> float:
        squared_error = self.solve_factors(epoch)
        self.fit_encoder(epoch)
        return squared_error / max(self._n_train, 1)

    def solve_factors(self, epoch: int) -> float:
        """Steps 1 and 2 (the ALS half of an iteration); returns the training squared error."""
        prior, bias_prior = self.split_prior(self.encode())
        if epoch == 1:  # as ConvMF: item factors start at the encoder's output
            self.item_factors.copy_(prior)
            if bias_prior is not None:
                self.item_bias.copy_(bias_prior)
        self.sweep_users()
        return self.sweep_items(prior, bias_prior)

    def split_prior(self, encoded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The encoder's output as (factor prior, bias prior or None)."""
        if not self.params.text_bias:
            return encoded, None
        return encoded[:, :-1], encoded[:, -1]

    def fit_encoder(self, epoch: int) -> float:
        """Regress the item factors (and biases) on the documents; returns the last epoch's mean squared
        error."""
        target = self.item_factors.detach()
        if self.params.text_bias:
            target = torch.cat([target, self.item_bias.detach()[:, None]], 1)
        generator = torch.Generator().manual_seed(self._seed * 1_000_003 + epoch)
        self.encoder.train()
        for _ in range(self.params.encoder_epochs):
            loss_sum = torch.zeros((), device=target.device)
            for rows in self.training_batches(generator):
                self._optimizer.zero_grad(set_to_none=True)
                loss = torch.nn.functional.mse_loss(
                    self.encoder(self.batch(rows)), target[rows], reduction="sum"
                )
                loss.backward()
                self._optimizer.step()
                self._schedule.step()
                loss_sum += loss.detach()
        return float(loss_sum) / target.numel()

    def training_batches(self, generator: torch.Generator) -> list[torch.Tensor]:
        """One epoch's random batches of items, each of documents of similar length: a random order is
        cut into spans of ``BUCKET_BATCHES`` batches, each span sorted by length and cut into batches,
        and the batches shuffled. A batch is then cut to its longest document, so a few long plots no
        longer pad every batch of short titles to 300 words (bucketing, as NLP trainers do)."""
        size = self.params.encoder_batch_size
        order = torch.randperm(len(self.inputs), generator=generator)
        if self.words is None:
            batches = list(order.split(size))
        else:
            words = self.words.cpu()
            batches = [
                batch
                for span in order.split(size * BUCKET_BATCHES)
                for batch in span[torch.argsort(words[span], stable=True)].split(size)
            ]
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator)]
        return [batch.to(self.inputs.device) for batch in batches]

    def training_state(self) -> dict[str, Any]:
        return {
            "encoder_optimizer": self._optimizer.state_dict(),
            "encoder_schedule": self._schedule.state_dict(),
        }

    def load_training_state(self, state: dict[str, Any]) -> None:
        if "encoder_optimizer" in state:
            self._optimizer.load_state_dict(state["encoder_optimizer"])
        if "encoder_schedule" in state:
            self._schedule.load_state_dict(state["encoder_schedule"])
