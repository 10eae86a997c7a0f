"""Hierarchical_VAE's model and objective against known values (the top-down posterior is the
normalised product of the bottom-up estimate and the prior; with weight 1 and no allowance the loss
is the negative ELBO; free bits stop the pull of a rate below the allowance; one importance sample
is the ELBO), and the notebook run small: every variant is scored with the active units of each
layer, and the reported model is the one chosen on validation."""

import math

import pytest
import torch
from test_copyable_cells import copied_cells
from test_notebooks import small_run

NOTEBOOK = "Hierarchical_VAE.ipynb"


@pytest.fixture(scope="module")
def cells():
    return copied_cells(NOTEBOOK)


def small_model(cells, inference):
    torch.manual_seed(0)
    return cells["HierarchicalVAE"](inference, hidden_sizes=(16, 8), latent_sizes=(6, 3)).double()


def test_the_top_down_posterior_is_the_product_of_estimate_and_prior(cells):
    """log q(z1 | x, z2) - log N(z1; estimate) - log p(z1 | z2) does not depend on z1: q is their
    product, normalised."""
    model = small_model(cells, "top_down")
    x = torch.rand(3, 784, dtype=torch.float64).bernoulli()
    draws = []
    model.infer(x, draw=lambda mu, logvar: draws.append((mu, logvar)) or mu)
    (_, _), (mu_q, logvar_q) = draws  # z2's posterior, then z1's
    mu_hat, logvar_hat = model.encode(x)
    prior_mu, prior_logvar = model.prior_z1(draws[0][0])
    log_prob = cells["gaussian_log_prob"]
    z = torch.randn(5, *mu_q.shape, dtype=torch.float64)
    gap = log_prob(z, mu_q, logvar_q) - log_prob(z, mu_hat, logvar_hat) - log_prob(z, prior_mu, prior_logvar)
    assert torch.allclose(gap, gap[0].expand_as(gap), atol=1e-9)


def test_the_closed_form_kl_matches_monte_carlo(cells):
    torch.manual_seed(0)
    mu_q, logvar_q, mu_p, logvar_p = (torch.randn(4, dtype=torch.float64) * 0.5 for _ in range(4))
    z = mu_q + (0.5 * logvar_q).exp() * torch.randn(400_000, 4, dtype=torch.float64)
    log_prob = cells["gaussian_log_prob"]
    monte_carlo = (log_prob(z, mu_q, logvar_q) - log_prob(z, mu_p, logvar_p)).mean(0)
    assert torch.allclose(cells["gaussian_kl"](mu_q, logvar_q, mu_p, logvar_p), monte_carlo, atol=0.01)


@pytest.mark.parametrize("inference", ["bottom_up", "top_down"])
def test_weight_one_and_no_allowance_is_the_negative_elbo(cells, inference):
    model = small_model(cells, inference)
    x = torch.rand(6, 784, dtype=torch.float64).bernoulli()
    torch.manual_seed(1)
    loss, terms = cells["hierarchical_objective"](model, x, {"kl_weight": 1.0, "free_bits": 0.0})
    assert torch.allclose(loss, -terms["elbo"].mean())
    assert torch.allclose(terms["elbo"], terms["reconstruction"] - terms["kl_z1"] - terms["kl_z2"])
    torch.manual_seed(1)  # the same draws: one importance sample's log-weight is that ELBO
    log_w = cells["log_importance_weights"](model, x, 1)
    assert torch.allclose(log_w[0], terms["elbo"])


def test_free_bits_stop_the_pull_of_a_rate_below_the_allowance(cells):
    model = small_model(cells, "top_down")
    x = torch.rand(4, 784, dtype=torch.float64).bernoulli()
    objective = cells["hierarchical_objective"]

    def gradients(schedule):
        model.zero_grad()
        torch.manual_seed(2)
        objective(model, x, schedule)[0].backward()
        return [p.grad.clone() for p in model.parameters()]

    generous = gradients({"kl_weight": 1.0, "free_bits": 1e6})  # every rate below its allowance
    model.zero_grad()
    torch.manual_seed(2)
    (-cells["elbo_terms"](model, x)[0].mean()).backward()  # the reconstruction alone
    assert all(torch.allclose(g, p.grad) for g, p in zip(generous, model.parameters(), strict=True))
    charged = gradients({"kl_weight": 1.0, "free_bits": 0.0})
    assert any(not torch.allclose(g, c) for g, c in zip(generous, charged, strict=True))


def test_every_variant_is_scored_per_layer_and_the_model_is_chosen_on_validation(tmp_path):
    results = small_run(NOTEBOOK, tmp_path)
    rows = results["variants_scored"]
    assert [r["variant"] for r in rows] == [
        "bottom-up",
        "bottom-up, warm-up + free bits",
        "top-down, warm-up + free bits",
    ]
    z1, z2 = results["parameters"]["latent_sizes"]
    for row in rows:
        assert 0 <= row["active_z1"] <= z1 and 0 <= row["active_z2"] <= z2
        assert len(row["rate_per_dimension_z1"]) == z1 and len(row["rate_per_dimension_z2"]) == z2
        assert row["elbo"] == pytest.approx(row["reconstruction"] - row["kl_z1"] - row["kl_z2"])
        assert math.isfinite(row["val_nll"]) and row["test_nll"] >= -row["elbo"] - 50
    chosen = min(rows, key=lambda r: r["val_nll"])
    assert results["variant"] == chosen["variant"]
    assert results["active_units"] == chosen["active_z1"] + chosen["active_z2"]
