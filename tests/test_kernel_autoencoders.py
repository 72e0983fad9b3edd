"""The kernelized autoencoders (sparse-fc, glocal-k): the finite-support kernel, the objective against a
dense reference, GLocal-K's two stages, resume, memory refusals, and a fit that learns structure."""

from __future__ import annotations

import pytest
import torch

from conftest import fit_test_rmse, random_ratings, write_ratings
from deepmovie.data.interactions import Interactions, RatingScale
from deepmovie.errors import DeepMovieError
from deepmovie.evaluation import ColdFallback, Evaluator
from deepmovie.models import MODELS, DataInfo
from deepmovie.models.autoencoders.kernel import KernelNet, finite_support_kernel
from deepmovie.rundir import CHECKPOINT
from deepmovie.training.checkpoint import load_weights
from deepmovie.training.trainer import Trainer


def ratings(seed: int = 0) -> Interactions:
    return random_ratings(14, 11, 0.4, seed)


def info_of(train: Interactions) -> DataInfo:
    return DataInfo(train.n_users, train.n_items, RatingScale(1, 5), float(train.ratings.mean()))


def model(name: str, train: Interactions, prepare: bool = True, **params):
    cls = MODELS.get(name)
    torch.manual_seed(0)
    built = cls(cls.Params(**{"hidden": [6, 5], **params}), info_of(train))
    if prepare:
        built.prepare(train, seed=0)
    return built


def dense(train: Interactions) -> torch.Tensor:
    """The items x users rating matrix, zeros where unobserved."""
    return torch.as_tensor(train.csr().toarray(), dtype=torch.float32).T


def test_the_kernel_is_one_minus_the_squared_distance_inside_the_unit_ball_and_zero_beyond():
    generator = torch.Generator().manual_seed(0)
    u = torch.randn(40, 3, generator=generator) * 0.6
    v = torch.randn(30, 3, generator=generator) * 0.6
    kernel = finite_support_kernel(u, v)
    squared = ((u[:, None, :] - v[None, :, :]) ** 2).sum(-1)
    inside = squared < 1
    assert bool(inside.any()) and bool((~inside).any())  # both regimes are exercised
    assert bool(((kernel >= 0) & (kernel <= 1)).all())
    assert bool((kernel[~inside] == 0).all())
    torch.testing.assert_close(kernel[inside], 1 - squared[inside])
    assert finite_support_kernel(v[:1], v[:1]).item() == pytest.approx(1.0)  # a unit with itself


def test_gradient_reaches_every_weight_and_stops_beyond_the_kernels_support():
    net = KernelNet([7, 4, 7], dim=3)
    x = torch.rand(5, 7)
    ((net(x) - 3.0) ** 2).sum().backward()
    for name, parameter in net.named_parameters():
        assert parameter.grad is not None and bool((parameter.grad != 0).any()), name
    # input unit 0 moved out of every hidden unit's reach: no connection left, so no gradient at all
    with torch.no_grad():
        net.layers[0].u[0] = 10.0
    net.zero_grad()
    ((net(x) - 3.0) ** 2).sum().backward()
    first = net.layers[0]
    assert bool((first.kernel()[0] == 0).all())
    assert bool((first.u.grad[0] == 0).all()) and bool((first.weight.grad[0] == 0).all())
    assert bool((first.u.grad[1:] != 0).any())


@pytest.mark.parametrize("name", ["sparse-fc", "glocal-k"])
def test_objective_is_half_the_observed_squared_error_plus_both_penalties(name):
    train = ratings()
    m = model(name, train, lambda_2=3.0, lambda_s=0.5)
    m.train_epoch(1)  # weights away from their initial values
    matrix = dense(train)
    mask = matrix != 0
    with torch.no_grad():
        x = matrix
        for n, layer in enumerate(m.net.layers):  # the reference's layer, written out
            k = torch.clamp(1 - ((layer.u[:, None] - layer.v[None]) ** 2).sum(-1), min=0)
            x = x @ (layer.weight * k) + layer.bias
            x = torch.sigmoid(x) if n < len(m.net.layers) - 1 else x
        weights = sum((layer.weight**2).sum() for layer in m.net.layers)
        kernels = sum((layer.kernel() ** 2).sum() for layer in m.net.layers)
        squared = (((x - matrix) * mask) ** 2).sum()
        objective, got_squared = m.objective()
    torch.testing.assert_close(got_squared, squared)
    torch.testing.assert_close(objective, 0.5 * squared + 1.5 * weights + 0.25 * kernels)
    users = torch.tensor([0, 3, 3, 13, 7])
    items = torch.tensor([2, 2, 8, 0, 10])
    with torch.no_grad():
        torch.testing.assert_close(m.predict(users, items), x[items, users])
    assert len(m.predict(users[:0], items[:0])) == 0


def test_a_training_epoch_lowers_the_objective():
    m = model("sparse-fc", ratings(), lambda_2=1.0, lambda_s=0.01)
    with torch.no_grad():
        before = float(m.objective()[0])
    m.train_epoch(1)
    with torch.no_grad():
        assert float(m.objective()[0]) < 0.9 * before


def test_glocal_k_fine_tunes_after_pretraining_on_the_globally_convolved_matrix():
    train = ratings()
    m = model("glocal-k", train, pretrain_epochs=2, lambda_2=1.0, lambda_s=0.01)
    matrix = dense(train)
    start = m.conv_kernel.detach().clone()
    for epoch in (1, 2):
        m.train_epoch(epoch)
        assert not m.finetuned
        assert torch.equal(m.inputs(), matrix)
    assert torch.equal(m.conv_kernel, start)  # pre-training leaves the global kernel alone
    autoencoder = {k: v.clone() for k, v in m.net.state_dict().items()}
    m.train_epoch(3)
    assert m.finetuned
    assert not torch.equal(m.conv_kernel, start)
    with torch.no_grad():
        got = m.inputs()
        # the reference's global kernel from the current autoencoder, and a 'same' cross-correlation
        pooled = m.net(matrix).mean(1)
        kernel = (pooled @ m.conv_kernel).view(3, 3)
        padded = torch.nn.functional.pad(matrix, (1, 1, 1, 1))
        rows, cols = matrix.shape
        expected = sum(
            kernel[a, b] * padded[a : a + rows, b : b + cols] for a in range(3) for b in range(3)
        ).clamp_min(0)
    torch.testing.assert_close(got, expected)
    assert not torch.equal(got, matrix)
    assert any(not torch.equal(v, m.net.state_dict()[k]) for k, v in autoencoder.items())


def test_glocal_k_predicts_from_the_phase_its_weights_were_saved_in():
    train = ratings()
    m = model("glocal-k", train, pretrain_epochs=1, lambda_2=1.0, lambda_s=0.01)
    m.train_epoch(1)
    m.train_epoch(2)
    pairs = torch.tensor([0, 5, 9]), torch.tensor([1, 1, 4])
    with torch.no_grad():
        finetuned = m.predict(*pairs)
    loaded = model("glocal-k", train, prepare=False, pretrain_epochs=1)
    loaded.load_weights(m.state_dict(), "test")
    loaded.attach(train)
    assert loaded.finetuned
    with torch.no_grad():
        torch.testing.assert_close(loaded.predict(*pairs), finetuned)
        m.finetuned.fill_(False)  # the same weights read as a pre-trained autoencoder differ
        assert not torch.allclose(m.predict(*pairs), finetuned)


def test_resume_from_a_checkpoint_equals_an_uninterrupted_run(tmp_path):
    """Stopped after the first fine-tuning epoch and resumed, glocal-k ends as a run never stopped."""
    train, valid = ratings(seed=1), ratings(seed=2)
    judge = Evaluator(ColdFallback.fit(train), RatingScale(1, 5))
    params = {"pretrain_epochs": 2, "patience": 0, "lambda_2": 1.0, "lambda_s": 0.01}

    def fit(folder, epochs, resume=False):
        m = model("glocal-k", train, prepare=False, epochs=epochs, **params)
        (tmp_path / folder).mkdir(exist_ok=True)
        result = Trainer(tmp_path / folder, quiet=True).fit(m, train, valid, judge, seed=0, resume=resume)
        return m, result

    whole, whole_result = fit("whole", 5)
    fit("stopped", 3)
    assert load_weights(tmp_path / "stopped" / CHECKPOINT)["model"]["finetuned"]
    resumed, resumed_result = fit("stopped", 5, resume=True)
    losses = [h["train_loss"] for h in whole_result.history]
    assert [h["train_loss"] for h in resumed_result.history] == losses
    assert resumed_result.best_epoch == whole_result.best_epoch
    for key, value in whole.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key


@pytest.mark.parametrize("name", ["sparse-fc", "glocal-k"])
def test_a_working_set_over_the_budget_is_refused_in_one_line(name):
    train = ratings()
    m = model(name, train, prepare=False)
    m.memory_limit = 1000
    with pytest.raises(DeepMovieError) as refused:
        m.prepare(train, seed=0)
    message = str(refused.value)
    assert "\n" not in message and m._ratings is None  # refused before the dense matrix exists
    assert f"{name}: the dense 11 x 14 rating matrix, the activations and 10 L-BFGS steps" in message
    assert "over the 1 kB limit (--max-memory)" in message
    # before anything is built: a catalogue whose dense matrix alone takes ~15 GB
    big = DataInfo(138_000, 27_000, RatingScale(1, 5), 3.5)
    cls = MODELS.get(name)
    with pytest.raises(DeepMovieError, match=r"the dense 27,000 x 138,000 rating matrix.* over the 8 GB"):
        cls.check_size(cls.Params(), big, max_memory=8 * 10**9)
    cls.check_size(cls.Params(), DataInfo(943, 1682, RatingScale(1, 5), 3.5), max_memory=8 * 10**9)


def test_glocal_k_rejects_an_even_global_kernel():
    with pytest.raises(ValueError, match="odd"):
        MODELS.get("glocal-k").Params(gk_size=4)


@pytest.fixture(scope="module")
def structured_csv(tmp_path_factory):
    return write_ratings(
        tmp_path_factory.mktemp("kernel") / "ratings.csv", n_users=60, n_items=50, density=0.4, seed=5
    )


@pytest.mark.parametrize(
    ("name", "extra"), [("sparse-fc", {}), ("glocal-k", {"pretrain_epochs": 6, "epochs": 12})]
)
def test_a_small_fit_beats_the_global_mean(structured_csv, name, extra):
    params = {"hidden": [24, 24], "lambda_2": 2.0, "lambda_s": 0.01, "epochs": 12, "patience": 0, **extra}
    global_mean = fit_test_rmse(structured_csv, "global-mean", {})
    assert fit_test_rmse(structured_csv, name, params) < global_mean - 0.05
