"""VQ_VAE's pieces against known values (the straight-through gradient, the nearest-vector quantiser,
where the codebook and commitment terms send their gradients, the dead-code restart, the prior's
autoregressive masks and normalisation, the bound against the exact likelihood of a toy model
small enough to enumerate), and the notebook run small: what it wrote."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from test_copyable_cells import copied_cells
from test_notebooks import COMMON, small_run

NOTEBOOK = "VQ_VAE.ipynb"


@pytest.fixture(scope="module")
def cells():
    return copied_cells(NOTEBOOK)


def tiny_model(cells, data_dim=784, seed=0):
    torch.manual_seed(seed)
    return cells["VQVAE"]([16], n_codes=3, code_dim=2, codebook_size=5, data_dim=data_dim).double()


def test_the_quantiser_picks_the_nearest_codebook_vector(cells):
    model = tiny_model(cells)
    z_e = torch.randn(7, 3, 2, dtype=torch.float64)
    z_q, codes = model.quantize(z_e)
    brute = torch.stack([torch.cdist(z, model.codebook) for z in z_e]).argmin(-1)
    assert torch.equal(codes, brute)
    assert torch.equal(z_q, model.codebook[codes])
    # an encoder output on a codebook vector is quantised to that vector
    assert torch.equal(model.quantize(model.codebook[[4, 0, 2]].unsqueeze(0))[1], torch.tensor([[4, 0, 2]]))


def test_straight_through_hands_the_decoders_gradient_to_the_encoder_output(cells):
    model = tiny_model(cells)
    x = torch.rand(4, 784, dtype=torch.float64).bernoulli()
    z_e = model.encode(x).detach().requires_grad_()
    model.encode = lambda _x: z_e  # the encoder output as a leaf, to read its gradient
    log_px_z, _, _, codes = cells["vq_terms"](model, x)
    log_px_z.sum().backward()
    z_q = model.codebook[codes].detach().requires_grad_()
    log_px_at_z_q = -F.binary_cross_entropy_with_logits(model.decode(z_q), x, reduction="none").sum(-1)
    (grad_at_z_q,) = torch.autograd.grad(log_px_at_z_q.sum(), z_q)
    assert not torch.allclose(z_e, z_q), "the check needs z_e != z_q"
    assert torch.allclose(z_e.grad, grad_at_z_q, rtol=0, atol=1e-12)
    assert model.codebook.grad is None or not model.codebook.grad.any(), (
        "reconstruction never trains the codebook"
    )


def gradients(model, term):
    model.zero_grad()
    term.sum().backward()
    encoder = any(p.grad is not None and p.grad.any() for p in model.encoder.parameters())
    decoder = any(p.grad is not None and p.grad.any() for p in model.decoder.parameters())
    codebook = model.codebook.grad is not None and model.codebook.grad.any()
    return {"encoder": bool(encoder), "decoder": bool(decoder), "codebook": bool(codebook)}


def test_codebook_term_trains_the_codebook_and_commitment_the_encoder(cells):
    model = tiny_model(cells)
    x = torch.rand(6, 784, dtype=torch.float64).bernoulli()
    _, codebook_term, commitment_term, _ = cells["vq_terms"](model, x)
    assert torch.allclose(codebook_term, commitment_term), "same value, different gradients"
    assert gradients(model, codebook_term) == {"encoder": False, "decoder": False, "codebook": True}
    _, codebook_term, commitment_term, _ = cells["vq_terms"](model, x)
    assert gradients(model, commitment_term) == {"encoder": True, "decoder": False, "codebook": False}


def test_the_objective_is_the_sum_of_the_three_terms(cells):
    model = tiny_model(cells)
    x = torch.rand(6, 784, dtype=torch.float64).bernoulli()
    loss, terms = cells["vq_objective"](0.25)(model, x)
    log_px_z, codebook_term, commitment_term, _ = cells["vq_terms"](model, x)
    assert torch.allclose(loss, (-log_px_z + codebook_term + 0.25 * commitment_term).mean())
    assert torch.allclose(terms["elbo"], log_px_z - 3 * math.log(5))


def test_dead_codes_move_onto_encoder_outputs_and_live_ones_stay(cells):
    codebook = torch.arange(10.0).view(5, 2)
    z_e = 100 + torch.randn(4, 3, 2)
    counts = torch.tensor([3.0, 0.0, 1.0, 0.0, 0.0])
    before = codebook.clone()
    assert cells["restart_dead_codes"](codebook, counts, z_e) == 3
    assert torch.equal(codebook[[0, 2]], before[[0, 2]])
    vectors = z_e.reshape(-1, 2)
    for row in codebook[[1, 3, 4]]:
        assert (vectors == row).all(-1).any(), "a restarted vector is one of the batch's encoder outputs"


def test_restarts_run_every_so_many_steps_and_revive_dead_codes(cells):
    model = tiny_model(cells).float()
    with torch.no_grad():
        model.codebook[1:] += 50.0  # far from every encoder output: dead from the start
    restarts = []
    objective = cells["vq_objective"](0.25, restart_every=2, restarts=restarts)
    x = torch.rand(8, 784).bernoulli()
    for _ in range(5):
        objective(model, x)
    assert len(restarts) == 2 and restarts[0] >= 4
    assert (model.codebook[1:].abs() < 50).all()


def test_the_prior_is_autoregressive_by_gradients(cells):
    torch.manual_seed(0)
    n_codes, k = 5, 4
    prior = cells["CodePrior"](n_codes, k, [16, 16]).double()
    one_hot = F.one_hot(torch.randint(k, (n_codes,)), k).double().flatten()
    jacobian = torch.func.jacrev(lambda v: prior(v[None])[0])(one_hot)
    blocks = jacobian.abs().view(n_codes, k, n_codes, k).amax(dim=(1, 3))  # (output position, input)
    earlier = torch.ones(n_codes, n_codes, dtype=torch.bool).tril(-1)
    assert torch.all(blocks[~earlier] == 0), "position i's logits see position i or later"
    assert torch.all(blocks[earlier] > 0), "position i's logits see every earlier position"


def test_the_prior_is_a_distribution_and_samples_its_support(cells):
    torch.manual_seed(0)
    prior = cells["CodePrior"](3, 3, [8])  # float32, as the notebook builds it
    with torch.no_grad():
        for p in prior.parameters():
            p.normal_(0, 1.5)
        every_code = torch.tensor(list(itertools.product(range(3), repeat=3)))
        total = prior.log_prob(every_code).double().logsumexp(0).exp().item()
    assert total == pytest.approx(1.0, abs=1e-5)
    samples = prior.sample(50, torch.Generator().manual_seed(0))
    assert samples.shape == (50, 3) and samples.min() >= 0 and samples.max() < 3


def test_the_bound_is_above_the_exact_negative_log_likelihood(cells):
    """A toy VQ-VAE on 6 pixels with 2 symbols of 3: p(x) = sum over the 9 codes of p(z) p(x | z)."""
    torch.manual_seed(0)
    model = cells["VQVAE"]([8], n_codes=2, code_dim=2, codebook_size=3, data_dim=6)
    prior = cells["CodePrior"](2, 3, [8])
    with torch.no_grad():
        for p in [*model.parameters(), *prior.parameters()]:
            p.normal_(0, 1.0)
    images = torch.tensor(list(itertools.product([0.0, 1.0], repeat=6)))
    codes = torch.tensor(list(itertools.product(range(3), repeat=2)))
    with torch.no_grad():
        log_pz = prior.log_prob(codes)  # (9,)
        logits = model.decode(model.codebook[codes])  # (9, 6)
        log_px_given = -F.binary_cross_entropy_with_logits(
            logits.expand(64, -1, -1), images[:, None].expand(-1, 9, -1), reduction="none"
        ).sum(-1)  # (64 images, 9 codes)
        exact = -(log_px_given + log_pz).double().logsumexp(1)
        assert (-exact).exp().sum().item() == pytest.approx(1.0, abs=1e-5)
        log_px_z, log_p_zq, _ = cells["bound_terms"](model, prior, images)
    bound = -(log_px_z + log_p_zq).double()
    assert torch.all(bound >= exact - 1e-5)
    assert (bound - exact).max() > 1e-3, "the bound is strict where other codes carry mass"


def test_the_notebook_run_small_writes_a_bound(tmp_path):
    results = small_run(NOTEBOOK, tmp_path)
    assert results["nll_is_upper_bound"] is True and results["nll_importance_samples"] == 0
    assert results["test_elbo_nats"] == pytest.approx(-results["test_nll_nats"])
    assert results["test_nll_nats"] == pytest.approx(
        -results["test_reconstruction_nats"] + results["test_kl_nats"], rel=1e-6
    )
    codebook_size = results["parameters"]["codebook_size"]
    n_codes = results["parameters"]["n_codes"]
    assert 0 < results["codes_used_test"] <= codebook_size
    assert 1 <= results["code_perplexity_test"] <= results["codes_used_test"] + 1e-6
    assert 0 < results["test_kl_nats"]
    assert results["test_uniform_prior_bound_nats"] == pytest.approx(
        -results["test_reconstruction_nats"] + n_codes * math.log(codebook_size), rel=1e-5
    )
    assert results["train_seconds"] == pytest.approx(
        results["vq_train_seconds"] + results["prior_train_seconds"]
    )
    assert len(results["prior_history"]["val_code_nll"]) == results["parameters"]["prior_epochs"]
    assert len(results["history"]["val_codes_used"]) == COMMON["epochs"]
    assert results["published"]["value"] is None
    figures = {p.name for p in (tmp_path / "images").glob("vq_vae_*.png")}
    assert figures == {
        f"vq_vae_{n}.png" for n in ("training_curves", "codebook_usage", "reconstructions", "samples")
    }
    checkpoints = {p.name for p in (tmp_path / "checkpoints").glob("*.pt")}
    assert checkpoints == {"vq_vae.pt", "vq_vae_no_restarts.pt", "vq_vae_prior.pt"}
    no_restarts = torch.load(tmp_path / "checkpoints" / "vq_vae_no_restarts.pt", weights_only=True)
    assert no_restarts["definition"]["restart_every"] == 0
