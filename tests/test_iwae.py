"""IWAE's model and objective cells (tagged "model" and "objective" in IWAE.ipynb), checked against
known values: L_1 is the ELBO on the same draws; L_k rises with k and reaches log p(x) computed by
quadrature; the DReG surrogate gives the IWAE decoder gradient exactly and the IWAE encoder gradient
in expectation (and the test would see a biased encoder gradient); bad estimator names fail; the
objective and the validation score that su.train is given record what they say. And the claim of
the notebook's gradient signal-to-noise figure in the one-dimensional Gaussian model."""

import json
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import REPO
from test_copyable_cells import copied_cells
from torch.distributions import Normal

import shared_utils as su


@pytest.fixture(scope="module")
def cells():
    return copied_cells("IWAE.ipynb")


def notebook_functions(*names):
    """The notebook cells that define these functions (analysis cells, not copyable ones), run after
    the copyable cells in one namespace."""
    cells_ = json.loads((REPO / "IWAE.ipynb").read_text())["cells"]
    sources = [*su.copyable_cells(REPO / "IWAE.ipynb")]
    for name in names:
        (source,) = ["".join(c["source"]) for c in cells_ if f"def {name}(" in "".join(c["source"])]
        sources.append(source)
    namespace = {}
    exec(compile("\n\n".join(sources), "IWAE.ipynb cells", "exec"), namespace)
    return namespace


def tiny_model(cells, latent_dim=3, seed=0):
    torch.manual_seed(seed)
    return cells["VAE"]([16, 8], latent_dim)


class FixedPosterior(nn.Module):
    """q(z | x) with its own mean and log-variance per row (leaves), the decoder of `model`: the
    gradient of a batch-mean loss with respect to row n is 1/N times that row's own estimate."""

    def __init__(self, model, mu, logvar):
        super().__init__()
        self.mu, self.logvar = nn.Parameter(mu.clone()), nn.Parameter(logvar.clone())
        self.decoder = model.decoder

    def encode(self, x):
        return self.mu, self.logvar

    def decode(self, z):
        return self.decoder(z)


def test_l1_is_the_elbo_on_the_same_draws(cells):
    model = tiny_model(cells)
    x = torch.rand(6, 784).bernoulli()
    noise = torch.randn(1, 6, 3)
    bound = cells["iwae_bound"](cells["log_importance_weights"](model, x, 1, noise))
    _, _, elbo = cells["elbo_terms"](model, x, "monte_carlo", noise[0])
    assert torch.allclose(bound, elbo, rtol=1e-6, atol=1e-4)
    # A different draw gives a different value: the check compares like with like.
    assert not torch.allclose(cells["iwae_bound"](cells["log_importance_weights"](model, x, 1)), elbo)


def test_iwae_bound_is_the_log_of_the_mean_weight(cells):
    log_w = torch.log(torch.tensor([[1.0, 10.0], [2.0, 20.0], [6.0, 60.0]]))
    assert torch.allclose(cells["iwae_bound"](log_w), torch.log(torch.tensor([3.0, 30.0])))
    # Stable where exponentiating would underflow to zero.
    assert torch.allclose(cells["iwae_bound"](log_w - 1000.0), torch.log(torch.tensor([3.0, 30.0])) - 1000.0)


def test_bound_rises_with_k_towards_the_likelihood_by_quadrature(cells):
    """With a 1-D latent, log p(x) = log of the integral of p(x | z) N(z; 0, 1) over z, on a grid."""
    model = tiny_model(cells, latent_dim=1, seed=1).double()
    x = torch.rand(3, 784, dtype=torch.float64).bernoulli()
    with torch.no_grad():
        z = torch.linspace(-10, 10, 8001, dtype=torch.float64).unsqueeze(1)  # Riemann sum, step 1/400
        logits = model.decode(z)  # (grid, 784)
        log_px_z = torch.stack(
            [
                -F.binary_cross_entropy_with_logits(logits, image.expand_as(logits), reduction="none").sum(-1)
                for image in x
            ],
            1,
        )
        log_px = torch.logsumexp(log_px_z + Normal(0.0, 1.0).log_prob(z), 0) + math.log(20 / 8000)  # (3,)
        draws = cells["log_importance_weights"](model, x, 20000)  # (20000, 3)
    # L_k averaged over the 20000 / k disjoint groups of k draws, for growing k, from the same draws.
    means = {k: cells["iwae_bound"](draws.view(k, -1, 3)).mean(0) for k in (1, 10, 100, 1000)}
    for small, large in ((1, 10), (10, 100), (100, 1000)):
        assert torch.all(means[small] < means[large]), (small, large, means)
    assert torch.all(means[1000] < log_px), "L_k is a lower bound"
    assert torch.allclose(cells["iwae_bound"](draws), log_px, atol=0.02), "L_k reaches log p(x)"
    assert torch.all(means[1] < log_px - 0.1), "the untrained encoder leaves a visible gap at k = 1"


def test_dreg_gives_the_iwae_decoder_gradient_and_the_same_bound(cells):
    model = tiny_model(cells).double()  # in float64, so rounding cannot hide a real difference
    x = torch.rand(8, 784, dtype=torch.float64).bernoulli()
    noise = torch.randn(5, 8, 3, dtype=torch.float64)
    grads, bounds = {}, {}
    for estimator in ("iwae", "dreg"):
        model.zero_grad()
        loss, log_w = cells["iwae_loss"](model, x, 5, estimator, noise)
        loss.backward()
        grads[estimator] = [p.grad.clone() for p in model.parameters()]
        bounds[estimator] = cells["iwae_bound"](log_w)
    assert torch.allclose(bounds["iwae"], bounds["dreg"])
    decoder = len(list(model.encoder.parameters()))
    for a, b in zip(grads["iwae"][decoder:], grads["dreg"][decoder:], strict=True):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)
    assert not torch.allclose(grads["iwae"][0], grads["dreg"][0]), "the encoder gradients differ per draw"


def per_row_encoder_gradients(cells, surrogate, k=5, rows=5000, seed=0):
    """Independent estimates of the gradient of L_k for one image with respect to q's mean and
    log-variance, one per row: (rows, 2 * latent)."""
    model = tiny_model(cells, seed=seed)
    x = torch.rand(1, 784).bernoulli()
    with torch.no_grad():
        mu, logvar = model.encode(x)
    fixed = FixedPosterior(model, mu.expand(rows, -1), logvar.expand(rows, -1))
    torch.manual_seed(seed + 1)
    loss = surrogate(fixed, x.expand(rows, -1), k)
    loss.backward()
    return -rows * torch.cat([fixed.mu.grad, fixed.logvar.grad], 1).double()


def z_scores(a, b):
    """Difference of the means of two sets of independent rows, in standard errors."""
    stderr = (a.var(0) / len(a) + b.var(0) / len(b)).sqrt()
    return (a.mean(0) - b.mean(0)) / stderr


def test_dreg_encoder_gradient_agrees_with_iwae_in_expectation(cells):
    def loss_of(estimator):
        return lambda model, x, k: cells["iwae_loss"](model, x, k, estimator)[0]

    iwae = per_row_encoder_gradients(cells, loss_of("iwae"))
    dreg = per_row_encoder_gradients(cells, loss_of("dreg"))
    z = z_scores(iwae, dreg)
    assert z.abs().max() < 4.5, z  # six coordinates; |z| > 4.5 by chance has probability ~ 4e-5
    assert dreg.var(0).sum() < iwae.var(0).sum(), "DReG should also have the smaller variance here"


def test_the_agreement_check_can_see_a_biased_encoder_gradient(cells):
    """Dropping the score term without DReG's second weight (path-only IWAE, 'sticking the
    landing' applied to L_k) is biased for k > 1: the same comparison must flag it."""

    def path_only(model, x, k):
        mu, logvar = model.encode(x)
        z = cells["reparameterised_samples"](mu, logvar, k)
        log_w = cells["log_weights"](model, x, z, mu, logvar, detach_q=True)
        return -cells["iwae_bound"](log_w).mean()

    iwae = per_row_encoder_gradients(cells, lambda m, x, k: cells["iwae_loss"](m, x, k, "iwae")[0])
    biased = per_row_encoder_gradients(cells, path_only)
    assert z_scores(iwae, biased).abs().max() > 6


def test_dreg_needs_no_graph_and_unknown_estimators_fail(cells):
    model = tiny_model(cells)
    x = torch.rand(4, 784).bernoulli()
    with torch.no_grad():  # no hook can be registered without a graph; the values still come back
        loss, log_w = cells["iwae_loss"](model, x, 3, "dreg")
    assert torch.isfinite(loss) and log_w.shape == (3, 4)
    with pytest.raises(ValueError, match="estimator='reinforce'"):
        cells["iwae_loss"](model, x, 3, "reinforce")


def test_the_objective_records_the_bound_and_the_elbo_of_its_own_draws(cells):
    model = tiny_model(cells)
    x = torch.rand(6, 784).bernoulli()
    for estimator in ("iwae", "dreg"):
        torch.manual_seed(3)
        loss, terms = cells["iwae_objective"](model, x, 4, estimator)
        torch.manual_seed(3)
        expected, log_w = cells["iwae_loss"](model, x, 4, estimator)
        assert torch.equal(loss, expected) and list(terms) == ["bound", "elbo"]
        assert torch.equal(terms["bound"], cells["iwae_bound"](log_w))
        assert torch.equal(terms["elbo"], log_w.mean(0))
        assert not any(t.requires_grad for t in terms.values())


def test_the_validation_score_is_the_mean_of_the_per_image_terms(cells):
    """evaluate_iwae's keys, in the order the history records them, and its values: per batch, the
    ELBO terms of one draw and then L_k, averaged over the images."""
    model = tiny_model(cells)
    x = torch.rand(7, 784).bernoulli()
    torch.manual_seed(5)
    scores = cells["evaluate_iwae"](model, x, 3, batch_size=4)
    assert list(scores) == ["reconstruction", "kl", "elbo", "bound"]
    torch.manual_seed(5)
    per_image = []
    with torch.no_grad():
        for xb in (x[:4], x[4:]):
            terms = cells["elbo_terms"](model, xb)
            per_image.append([*terms, cells["iwae_bound"](cells["log_importance_weights"](model, xb, 3))])
    expected = [torch.cat(column).mean().item() for column in zip(*per_image, strict=True)]
    assert list(scores.values()) == pytest.approx(expected, rel=1e-5)
    assert scores["elbo"] == pytest.approx(scores["reconstruction"] - scores["kl"], rel=1e-5)


def test_in_the_gaussian_model_the_iwae_encoder_snr_falls_and_dregs_rises():
    """The figure's left panel, with fewer repeats: where the weights are even, the IWAE encoder's
    signal-to-noise ratio falls with k (like k^-1/2), the decoder's and DReG's encoder's rise."""
    cells = notebook_functions("toy_log_weights", "gradient_draws")
    torch.manual_seed(0)
    snr = {}
    for k in (1, 100):
        for estimator in ("iwae", "dreg"):
            encoder, decoder, ess = cells["toy_gradient_draws"](k, estimator, 4000)
            snr[k, estimator] = cells["median_snr"](encoder), cells["median_snr"](decoder)
        assert ess > 0.5 * k, "the regime of the theory: most draws carry the weights"
    assert snr[100, "iwae"][0] < snr[1, "iwae"][0] / 5  # k^-1/2 would divide it by 10
    assert snr[100, "dreg"][0] > 3 * snr[1, "dreg"][0]
    assert snr[100, "iwae"][1] > 3 * snr[1, "iwae"][1]
