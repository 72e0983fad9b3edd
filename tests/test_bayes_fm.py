"""bayes-fm: the Gibbs conditionals against brute force, the draws' moments, the averaged predictions,
and what a sampler must keep: same seed same chain, resume equals an uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import deepmovie
from conftest import write_movies, write_ratings
from deepmovie.config import build_config, parse_params
from deepmovie.errors import DeepMovieError
from deepmovie.evaluation import ColdFallback, Evaluator
from deepmovie.experiment import build_model, prepare
from deepmovie.models.features.bayes_fm import BayesFM, gaussian
from deepmovie.splits import Split
from deepmovie.training.trainer import Trainer


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bayes-fm")
    write_ratings(folder / "ratings.csv", n_users=40, n_items=50, density=0.3, seed=1)
    write_movies(folder / "movies.csv", 50, ["Action", "Comedy", "Drama", "Sci-Fi"])
    return folder


def prepared(data: Path, seed: int = 0, **params) -> tuple[BayesFM, Split]:
    """A bayes-fm model built and prepared for the first split of ``data``, and that split."""
    config = build_config(
        {"model": "bayes-fm", "data": str(data), "split": "random:0.2", "seed": seed, "params": params}
    )
    dataset, splits = prepare(config)
    model = build_model(config, dataset, splits[0], torch.device("cpu"))
    model.prepare(splits[0].train, seed)
    return model, splits[0]


def brute_force_predictions(model: BayesFM, theta: torch.Tensor, users, items) -> torch.Tensor:
    """The FM's definition, row by row over every active feature: no per-side sums, no caches."""
    x = model._sides["user"].design.to_dense()[users] + model._sides["item"].design.to_dense()[items]
    w, v = theta[:, 0], theta[:, 1:]
    out = []
    for row in x:
        active = torch.nonzero(row).flatten()
        pairwise = sum(row[a] * row[b] * (v[a] @ v[b]) for n, a in enumerate(active) for b in active[n + 1 :])
        out.append(model.w0 + row @ w + pairwise)
    return torch.stack(out)


def test_every_conditional_matches_the_brute_force_posterior(data):
    """Each feature's [w_j, v_j] conditional, computed from the per-owner caches while the pass
    redraws the features before it, equals the Gaussian posterior of the linear model that yhat is in
    theta_j with everything else fixed (its design found by evaluating the FM itself)."""
    model, _ = prepared(data, dim=3)
    for epoch in (1, 2):  # away from the initial state
        model.train_epoch(epoch)
    users, items = model._users, model._items
    y = model._ratings
    generator = torch.Generator().manual_seed(0)
    for side in ("user", "item"):
        terms = model.draw_terms()
        caches = model.side_caches(side, model.residual(terms), terms)
        for chunk in model._sides[side].chunks[:6] + model._sides[side].chunks[-2:]:
            conditional = model.conditional(caches, chunk)
            for q, j in enumerate(chunk.features.tolist()[:2]):
                theta = model.theta.clone()
                theta[j] = 0.0
                base = model.w0 + _fast(model, theta, users, items)
                design = torch.stack(
                    [_fast(model, _set(theta, j, c), users, items) - base + model.w0 for c in range(4)], 1
                )
                g = chunk.group
                lam, mu = model.prior_precision[g], model.prior_mean[g]
                precision = model.alpha * design.T @ design + torch.diag(lam)
                rhs = model.alpha * design.T @ (y - base) + lam * mu
                torch.testing.assert_close(conditional.precision[q], precision, rtol=1e-9, atol=1e-9)
                torch.testing.assert_close(conditional.rhs[q], rhs, rtol=1e-9, atol=1e-9)
            model.redraw(caches, chunk, conditional, generator)
    # the per-side sums behind _fast are the FM itself
    rows = torch.arange(0, len(users), 7)
    torch.testing.assert_close(
        model.w0 + _fast(model, model.theta, users[rows], items[rows]),
        brute_force_predictions(model, model.theta, users[rows], items[rows]),
    )


def _set(theta: torch.Tensor, feature: int, coordinate: int) -> torch.Tensor:
    out = theta.clone()
    out[feature, coordinate] = 1.0
    return out


def _fast(model: BayesFM, theta: torch.Tensor, users, items) -> torch.Tensor:
    """yhat - w0 of rows under ``theta``, from the per-side sums."""
    saved = model.theta.clone()
    model.theta.copy_(theta)
    terms = model.draw_terms()
    model.theta.copy_(saved)
    user, item = terms["user"], terms["item"]
    return user.z[users] + item.z[items] + (user.p[users] * item.p[items]).sum(1)


def test_gaussian_draws_have_the_conditional_mean_and_covariance():
    rng = torch.Generator().manual_seed(1)
    a = torch.randn(2, 4, 4, dtype=torch.float64, generator=rng)
    precision = a @ a.mT + 0.5 * torch.eye(4, dtype=torch.float64)
    rhs = torch.randn(2, 4, dtype=torch.float64, generator=rng)
    n = 20000
    draws = gaussian(precision.expand(n, 2, 4, 4), rhs.expand(n, 2, 4), rng)
    covariance = torch.linalg.inv(precision)
    mean = (covariance @ rhs[:, :, None])[:, :, 0]
    scale = covariance.diagonal(dim1=1, dim2=2).sqrt()
    assert ((draws.mean(0) - mean).abs() / scale).max() < 0.05  # se of the mean: 0.007 sd
    centred = draws - draws.mean(0)
    empirical = torch.einsum("nfi,nfj->fij", centred, centred) / n
    torch.testing.assert_close(empirical, covariance, rtol=0.05, atol=0.05 * float(covariance.abs().max()))


def test_w0_draws_follow_its_posterior_on_a_grid(data):
    """With everything else fixed, w0's draws match its posterior computed by brute force: the
    likelihood of every training row on a fine grid of w0 values (flat prior)."""
    model, _ = prepared(data, dim=2)
    model.train_epoch(1)
    residual = model.residual(model.draw_terms())
    rest = model._ratings - residual - model.w0  # yhat without w0
    grid = torch.linspace(float(model.w0) - 1, float(model.w0) + 1, 20001, dtype=torch.float64)
    log_likelihood = (
        -0.5 * model.alpha * ((model._ratings[None, :] - rest[None, :] - grid[:, None]) ** 2).sum(1)
    )
    weights = torch.softmax(log_likelihood, 0)
    mean = float((weights * grid).sum())
    sd = float((weights * (grid - mean) ** 2).sum().sqrt())
    rng = np.random.default_rng(0)
    draws = np.array([float(model.w0) + model.w0_step(residual, rng) for _ in range(20000)])
    assert draws.mean() == pytest.approx(mean, abs=0.05 * sd)
    assert draws.std() == pytest.approx(sd, rel=0.03)


def test_colours_never_give_an_owner_two_features_at_once(data):
    model, _ = prepared(data, dim=2)
    for side in ("user", "item"):
        chunks = model._sides[side].chunks
        assert any(c.lengths is not None for c in chunks)  # bags and implicit groups are coloured
        for chunk in chunks:
            assert len(torch.unique(chunk.owners)) == len(chunk.owners)


def test_predict_averages_the_kept_draws_exactly(data):
    """predict (and score_items) = the mean over kept sweeps of each sweep's own predictions."""
    epochs, burn_in, keep = 9, 3, 2  # thin 3: sweeps 6 and 9 are kept
    model, split = prepared(data, dim=3, epochs=epochs, burn_in=burn_in, keep_samples=keep)
    users = torch.as_tensor(split.valid.users).long()
    items = torch.as_tensor(split.valid.items).long()
    kept = []
    for epoch in range(1, epochs + 1):
        model.train_epoch(epoch)
        if epoch in (6, 9):
            kept.append(model.w0 + _fast(model, model.theta, users, items))
        if epoch == 4:  # between burn-in and the first kept sweep, the latest draw predicts
            latest = model.w0 + _fast(model, model.theta, users, items)
            torch.testing.assert_close(model.predict(users, items).double(), latest, rtol=1e-5, atol=1e-5)
    expected = torch.stack(kept).mean(0)
    torch.testing.assert_close(model.predict(users, items).double(), expected, rtol=1e-5, atol=1e-5)
    rows = model.score_items(users[:3])
    torch.testing.assert_close(rows[torch.arange(3), items[:3]].double(), expected[:3], rtol=1e-5, atol=1e-5)


def test_beats_the_bias_baseline_on_low_rank_data(tmp_path):
    write_ratings(tmp_path / "ratings.csv", n_users=60, n_items=80, density=0.4, seed=0)
    bias = deepmovie.fit("bias", data=tmp_path, split="random:0.2", seed=0, device="cpu")
    bayes = deepmovie.fit(
        "bayes-fm", data=tmp_path, split="random:0.2", seed=0, device="cpu", samples=60, burn_in=20, dim=4
    )
    assert bayes.summary["test_rmse"] < bias.summary["test_rmse"] - 0.2


def test_same_seed_same_chain_other_seed_another(data):
    runs = [
        deepmovie.fit(
            "bayes-fm", data=data, split="random:0.2", seed=seed, device="cpu", samples=6, burn_in=2, dim=3
        )
        for seed in (0, 0, 1)
    ]
    users, items = np.repeat(np.arange(1, 11), 3), np.tile([1, 2, 3], 10)
    a, b, c = (run.predict_many(users, items) for run in runs)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_resume_after_a_crash_equals_an_uninterrupted_run(data, tmp_path):
    params = {"epochs": 8, "burn_in": 2, "keep_samples": 3, "dim": 3}

    def trainer_fit(run_dir, resume=False, stop_after=None):
        model, split = prepared(data, **params)
        judge = Evaluator(ColdFallback.fit(split.train), model.info.scale)

        def crash(epoch, _):
            if epoch == stop_after:
                raise KeyboardInterrupt

        Trainer(run_dir, quiet=True).fit(
            model, split.train, split.valid, judge, 0, resume=resume, on_epoch=crash
        )
        return model

    whole = trainer_fit(None)
    with pytest.raises(KeyboardInterrupt):
        trainer_fit(tmp_path, stop_after=5)
    resumed = trainer_fit(tmp_path, resume=True)
    for (name, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_samples_is_epochs_and_bad_values_are_named():
    assert parse_params("bayes-fm", {"samples": 30}).epochs == 30
    assert parse_params("bayes-fm", {"samples": 30, "epochs": 5}).epochs == 30
    for bad, field in (
        ({"dim": 0}, "dim"),
        ({"implicit_norm": "log"}, "implicit_norm"),
        ({"samples": 0}, "epochs"),
    ):
        with pytest.raises(DeepMovieError, match=field):
            parse_params("bayes-fm", bad)


def test_fields_unknown_to_the_data_are_refused(data):
    with pytest.raises(DeepMovieError, match="gender"):
        prepared(data, fields=["user", "item", "gender"])
