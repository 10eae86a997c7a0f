"""VampPrior_VAE's model and objective cells against known values: the one-component prior at
N(0, I) is the standard normal, the fast mixture density equals the direct one, the prior is a
normalised density whose samples have the mixture's moments, the Monte-Carlo KL is unbiased, the
pseudo-inputs learn only through the prior, and the objective trains through Basic's loop (su.train);
a bad K or a bad start is refused by the notebook's setup, before any training."""

import math

import papermill
import pytest
import torch
from conftest import REPO
from test_copyable_cells import copied_cells
from test_notebooks import run_small
from torch.distributions import Normal

import shared_utils as su

NOTEBOOK = "VampPrior_VAE.ipynb"


@pytest.fixture(scope="module")
def cells():
    return copied_cells(NOTEBOOK)


def tiny(cells, k, latent_dim=3, seed=0, **kwargs):
    torch.manual_seed(seed)
    return cells["VampPriorVAE"]([16], latent_dim, k, **kwargs).double()


def test_one_component_at_the_standard_normal_is_the_standard_normal(cells):
    model = tiny(cells, 1, latent_dim=4)
    with torch.no_grad():
        model.encoder[-1].weight.zero_()
        model.encoder[-1].bias.zero_()  # q(z | u) = N(0, I) for every u
    z = 3 * torch.randn(2, 500, 4, dtype=torch.float64)
    expected = Normal(0.0, 1.0).log_prob(z).sum(-1)
    assert torch.allclose(model.prior_log_prob(z), expected, atol=1e-10)


def direct_mixture_log_prob(z, means, logvars):
    """The slow way: every component's Gaussian, one at a time, then the mean of the densities."""
    per_component = [
        Normal(m, (0.5 * lv).exp()).log_prob(z).sum(-1) for m, lv in zip(means, logvars, strict=True)
    ]
    return torch.logsumexp(torch.stack(per_component, -1), -1) - math.log(len(means))


def test_mixture_log_prob_matches_the_direct_computation(cells):
    g = torch.Generator().manual_seed(1)
    means = 2 * torch.randn(7, 5, generator=g, dtype=torch.float64)
    logvars = -4 + 5 * torch.rand(7, 5, generator=g, dtype=torch.float64)
    z = 2 * torch.randn(3, 11, 5, generator=g, dtype=torch.float64)  # any leading dimensions
    fast = cells["mixture_log_prob"](z, means, logvars)
    assert fast.shape == (3, 11)
    assert torch.allclose(fast, direct_mixture_log_prob(z, means, logvars), atol=1e-9)
    table = cells["component_log_probs"](z, means, logvars)
    assert torch.allclose(table[..., 2], Normal(means[2], (0.5 * logvars[2]).exp()).log_prob(z).sum(-1))
    # The model's prior is this mixture at the encoded pseudo-inputs.
    model = tiny(cells, 6)
    means, logvars = model.encode(model.pseudo_inputs())
    z = torch.randn(40, 3, dtype=torch.float64)
    assert torch.allclose(model.prior_log_prob(z), direct_mixture_log_prob(z, means, logvars), atol=1e-9)


def test_the_prior_integrates_to_one(cells):
    # Importance sampling from a wide Gaussian g: E_g[p(z) / g(z)] = the integral of p = 1.
    model = tiny(cells, 5, latent_dim=2)
    g = Normal(0.0, 4.0)
    z = g.sample((400_000, 2))
    with torch.no_grad():
        ratio = (model.prior_log_prob(z.double()) - g.log_prob(z).sum(-1).double()).exp()
    stderr = ratio.std() / math.sqrt(len(ratio))
    assert abs(ratio.mean() - 1) < 5 * stderr and stderr < 0.01


def test_prior_samples_have_the_mixture_moments(cells):
    model = tiny(cells, 4)
    with torch.no_grad():
        means, logvars = model.encode(model.pseudo_inputs())
    samples = model.sample_prior(200_000, torch.Generator().manual_seed(0))
    mean = means.mean(0)  # a uniform mixture: the mean of the means ...
    variance = (logvars.exp() + means.pow(2)).mean(0) - mean.pow(2)  # ... and the law of total variance
    assert torch.all((samples.mean(0) - mean).abs() < 5 * (variance / len(samples)).sqrt())
    assert torch.allclose(samples.var(0), variance, rtol=0.02)
    first, again = (model.sample_prior(10, torch.Generator().manual_seed(3)) for _ in range(2))
    assert torch.equal(first, again), "the same seed gives the same draws"


def test_the_monte_carlo_kl_is_unbiased(cells):
    # With the prior at N(0, I) the KL has Basic_VAE's closed form; the one-sample estimates average to it.
    model = cells["VampPriorVAE"]([16], 3, 1)
    model.prior_components = lambda: (torch.zeros(1, 3), torch.zeros(1, 3))  # one component, N(0, I)
    mu, logvar = torch.tensor([[0.5, -1.0, 0.0]]), torch.tensor([[-1.0, 0.3, 0.0]])
    model.encode = lambda x: (mu.expand(len(x), -1), logvar.expand(len(x), -1))  # q(z | x) known
    closed_form = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum()
    torch.manual_seed(0)
    x = torch.rand(1, 784).bernoulli().expand(100_000, -1)
    _, kl, _ = cells["elbo_terms"](model, x)
    assert abs(kl.mean() - closed_form) < 5 * kl.std() / math.sqrt(len(kl))


def test_the_pseudo_inputs_learn_only_through_the_prior(cells):
    model = tiny(cells, 3)
    x = torch.rand(4, 784, dtype=torch.float64).bernoulli()
    log_px_z, kl, _ = cells["elbo_terms"](model, x)
    (reconstruction_grad,) = torch.autograd.grad(log_px_z.sum(), model.pseudo_logits, allow_unused=True)
    assert reconstruction_grad is None
    (prior_grad,) = torch.autograd.grad(kl.sum(), model.pseudo_logits)
    assert prior_grad.abs().sum() > 0


def test_pseudo_inputs_start_from_the_given_images_and_stay_in_the_unit_interval(cells):
    images = torch.rand(3, 784)
    model = cells["VampPriorVAE"]([16], 2, 3, init_images=images)
    pseudo = model.pseudo_inputs().detach()
    assert torch.allclose(pseudo, images.clamp(0.01, 0.99), atol=1e-5)
    with torch.no_grad():
        model.pseudo_logits.fill_(1e4)
    assert model.pseudo_inputs().max() <= 1 and model.pseudo_inputs().min() >= 0


def test_the_objective_trains_through_basics_loop(cells):
    """The notebook passes elbo_objective and evaluate_elbo to su.train: the history records the
    terms in the order the results files have always held them, and the ELBO rises."""
    torch.manual_seed(0)
    model = cells["VampPriorVAE"]([16], 2, 4, init_images=torch.rand(4, 784))
    grey = torch.rand(64, 784)
    before = model.pseudo_inputs().detach().clone()
    history = su.train(
        model, cells["elbo_objective"], cells["evaluate_elbo"], grey, grey[:16], range(1, 6), 16, 1e-2,
        torch.Generator(),
    )  # fmt: skip
    terms = ["reconstruction", "kl", "elbo"]
    assert list(history) == [*(f"train_{t}" for t in terms), *(f"val_{t}" for t in terms), "seconds"]
    assert history["val_elbo"][-1] > history["val_elbo"][0], history["val_elbo"]
    assert not torch.equal(model.pseudo_inputs().detach(), before), "the pseudo-inputs share the optimiser"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"pseudo_input_init": "grey"}, "pseudo_input_init='grey': choose one of"),
        ({"n_pseudo_inputs": 2000}, "n_pseudo_inputs=2000 pseudo-inputs cannot start from 1000 training"),
        ({"n_pseudo_inputs": 0}, "n_pseudo_inputs=0 must be a whole number"),
        ({"n_pseudo_inputs": 2.5}, "n_pseudo_inputs=2.5 must be a whole number"),
    ],
)
def test_the_notebook_refuses_bad_choices_before_any_work(tmp_path, monkeypatch, changes, message):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    with pytest.raises(papermill.PapermillExecutionError, match=message):
        run_small(NOTEBOOK, tmp_path, **changes)
    # su.setup makes the output folders before the data tell how many training images there are.
    assert not list(tmp_path.rglob("vampprior_vae*")), "nothing was trained or written"
