"""Inpainting's pieces against known values: su.conditional_nll against exact enumeration on a toy
latent-variable model small enough to sum, the shared masks, MADE's observed-first conditional
against brute force on a tiny MADE, the Metropolis-within-Gibbs ratio, bad inputs, and the
notebook run small: what it wrote."""

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_copyable_cells import copied_cells
from test_notebooks import COMMON, small_run

import shared_utils as su

NOTEBOOK = "Inpainting.ipynb"
PIXELS, STATES = 8, 4


@pytest.fixture(scope="module")
def cells():
    return copied_cells(NOTEBOOK)


@pytest.fixture(scope="module")
def made_cells():
    return copied_cells("MADE.ipynb")


def every_image(d):
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=d)), dtype=torch.float64)


def toy_model(seed=0):
    """A discrete latent z in {0..3} with prior pi and independent Bernoulli pixels given z."""
    g = torch.Generator().manual_seed(seed)
    log_prior = torch.log_softmax(torch.randn(STATES, generator=g, dtype=torch.float64), 0)
    logits = 3 * torch.randn(STATES, PIXELS, generator=g, dtype=torch.float64)
    return log_prior, logits


def exact_log_p(log_prior, logits, x, keep):
    """log sum_z p(z) prod_{d kept} p(x_d | z), by summing over the states: (batch,)."""
    log_px_z = -F.binary_cross_entropy_with_logits(
        logits[:, None, :].expand(-1, len(x), -1), x.expand(STATES, -1, -1), reduction="none"
    )
    return torch.logsumexp(log_prior[:, None] + (log_px_z * keep).sum(-1), 0)


def uniform_sampler(log_prior, logits, generator):
    """sample_fn drawing z uniformly (q = 1/4 for every image): logits and log p(z) - log q(z)."""

    def sample_fn(x, n):
        z = torch.randint(STATES, (n, len(x)), generator=generator)
        return logits[z], log_prior[z] + math.log(STATES)

    return sample_fn


def test_conditional_nll_matches_exact_enumeration_on_a_toy_model():
    log_prior, logits = toy_model()
    x = every_image(PIXELS)[[3, 77, 140, 201, 255]]
    missing = {
        "first half": torch.zeros_like(x, dtype=torch.bool),
        "scattered": torch.zeros_like(x, dtype=torch.bool),
    }
    missing["first half"][:, :4] = True
    missing["scattered"][:, [1, 4, 6]] = True
    missing["scattered"][2, 0] = True  # one image with its own mask
    got = su.conditional_nll(
        uniform_sampler(log_prior, logits, torch.Generator().manual_seed(1)), x, missing, 20000
    )
    log_p = exact_log_p(log_prior, logits, x, torch.ones_like(x))
    torch.testing.assert_close(got["nll"]["per_image"], -log_p, atol=0.02, rtol=0)
    for name, mask in missing.items():
        exact = exact_log_p(log_prior, logits, x, (~mask).double()) - log_p
        torch.testing.assert_close(got[name]["per_image"], exact, atol=0.03, rtol=0)
        assert got[name]["mean"] == pytest.approx(exact.mean().item(), abs=0.03)


def test_the_exact_conditionals_of_all_completions_sum_to_one():
    log_prior, logits = toy_model(seed=2)
    observed = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    completions = every_image(3)
    x = torch.cat([observed.expand(len(completions), -1), completions], 1)  # the last 3 pixels missing
    keep = torch.cat([torch.ones(5), torch.zeros(3)]).double().expand_as(x)
    log_conditional = exact_log_p(log_prior, logits, x, torch.ones_like(x)) - exact_log_p(
        log_prior, logits, x, keep
    )
    assert torch.logsumexp(log_conditional, 0).exp().item() == pytest.approx(1.0, abs=1e-12)


def test_conditional_nll_uses_the_same_draws_for_both_likelihoods():
    """With one fixed draw per image the estimate is exactly -log p(x_mis | z): p(z)/q(z) cancels."""
    torch.manual_seed(0)
    x = torch.rand(3, 784).bernoulli()
    logits = torch.randn(1, 3, 784)
    missing = {"bottom": torch.zeros(3, 784, dtype=torch.bool)}
    missing["bottom"][:, 392:] = True
    got = su.conditional_nll(lambda xb, n: (logits, torch.randn(1, 3)), x, missing, 1)
    by_hand = F.binary_cross_entropy_with_logits(logits[0], x, reduction="none")[:, 392:].sum(-1)
    torch.testing.assert_close(got["bottom"]["per_image"], by_hand.double(), rtol=1e-5, atol=1e-4)


def test_the_shared_masks():
    masks = su.inpainting_masks(20)
    counts = {"bottom_half": 392, "centre_square": 196, "random_80": 627}
    assert list(masks) == list(su.INPAINTING_MASKS)
    for name, mask in masks.items():
        assert mask.shape == (20, 784) and mask.dtype == torch.bool
        assert (mask.sum(1) == counts[name]).all(), name
    assert (
        masks["bottom_half"].view(20, 28, 28)[:, 14:].all()
        and not masks["bottom_half"].view(20, 28, 28)[:, :14].any()
    )
    assert masks["centre_square"].view(20, 28, 28)[:, 7:21, 7:21].all()
    assert not (masks["random_80"][0] == masks["random_80"][1]).all(), "a different random mask per image"
    prefix = su.inpainting_masks(5)
    assert all(torch.equal(prefix[n], masks[n][:5]) for n in masks), "prefix-stable"
    assert all(torch.equal(su.inpainting_masks(20)[n], masks[n]) for n in masks), "fixed by its seed"
    assert not torch.equal(su.inpainting_masks(20, seed=1)["random_80"], masks["random_80"])


def test_conditional_nll_refuses_bad_inputs():
    x = torch.rand(4, 784).bernoulli()
    sample_fn = lambda xb, n: (torch.zeros(n, len(xb), 784), torch.zeros(n, len(xb)))  # noqa: E731
    good = su.inpainting_masks(4)
    with pytest.raises(ValueError, match="k >= 1"):
        su.conditional_nll(sample_fn, x, good, 0)
    with pytest.raises(ValueError, match="shaped"):
        su.conditional_nll(sample_fn, x, {"short": good["bottom_half"][:3]}, 5)
    with pytest.raises(ValueError, match="boolean"):
        su.conditional_nll(sample_fn, x, {"floats": good["bottom_half"].float()}, 5)


def tiny_made(made_cells, d=8, seed=0):
    made = made_cells["MADE"](d, [16], n_masks=1, direct_connection=True, seed=seed).double()
    with torch.no_grad():
        for p in made.parameters():
            p.normal_(0.0, 1.5, generator=torch.Generator().manual_seed(seed))
    return made


def brute_force_log_p(made, degrees, cells):
    """log p_d(x) of every image of len(degrees[0][0]) pixels under the mask the degrees define."""
    images = every_image(degrees[0].shape[1])
    log_pixel = -F.binary_cross_entropy_with_logits(cells["masked_logits"](made, images, degrees), images,
                                                    reduction="none")  # fmt: skip
    return images, log_pixel.sum(-1)


@pytest.mark.parametrize("orderings", [1, 3])
def test_made_observed_first_conditional_equals_brute_force(cells, made_cells, orderings):
    made, d = tiny_made(made_cells), 8
    images = every_image(d)
    x = images[[5, 90, 200, 255]]
    shared = torch.zeros(4, d, dtype=torch.bool)
    shared[:, [0, 3, 6]] = True
    own = torch.zeros(4, d, dtype=torch.bool)
    for i, pixels in enumerate([[1, 2], [0, 7], [3, 4, 5], [6]]):
        own[i, pixels] = True
    for missing in (shared, own):
        got, full = cells["exact_conditional_nll"](
            made, x, missing, orderings, torch.Generator().manual_seed(3)
        )
        g = torch.Generator().manual_seed(3)
        rows = missing[:1] if missing is shared else missing
        drawn = [cells["observed_first_degrees"](rows, [16], g) for _ in range(orderings)]
        for i in range(len(x)):
            p_x = p_obs = 0.0
            for degrees in drawn:
                one = [deg[:1] if missing is shared else deg[i : i + 1] for deg in degrees]
                all_images, log_p = brute_force_log_p(made, one, cells)
                assert torch.logsumexp(log_p, 0).exp().item() == pytest.approx(1.0, abs=1e-10), (
                    "a valid model"
                )
                same_observed = (all_images[:, ~missing[i]] == x[i, ~missing[i]]).all(1)
                p_obs += log_p[same_observed].exp().sum().item()
                p_x += log_p[(all_images == x[i]).all(1)].exp().item()
            assert got[i].item() == pytest.approx(math.log(p_obs) - math.log(p_x), abs=1e-9)
            assert full[i].item() == pytest.approx(math.log(orderings) - math.log(p_x), abs=1e-9)


def test_observed_first_degrees_put_the_observed_pixels_first(cells):
    missing = su.inpainting_masks(3)["random_80"]
    degrees = cells["observed_first_degrees"](missing, [50, 40], torch.Generator().manual_seed(0))
    positions = degrees[0]
    assert [tuple(deg.shape) for deg in degrees] == [(3, 784), (3, 50), (3, 40)]
    for i in range(3):
        assert sorted(positions[i].tolist()) == list(range(1, 785))
        assert positions[i][~missing[i]].max() < positions[i][missing[i]].min()
    assert all(((deg >= 1) & (deg <= 783)).all() for deg in degrees[1:])


def test_use_degrees_agrees_with_masked_logits(cells, made_cells):
    made = tiny_made(made_cells, d=10)
    degrees = cells["observed_first_degrees"](torch.zeros(1, 10, dtype=torch.bool), [16], torch.Generator())
    cells["use_degrees"](made, degrees)
    x = every_image(10)[::37]
    torch.testing.assert_close(made(x), cells["masked_logits"](made, x, degrees))


def test_metropolis_ratio_on_a_toy(cells):
    basic = copied_cells("Basic_VAE.ipynb")
    torch.manual_seed(0)
    vae = basic["VAE"]([8], 3, data_dim=6).double()
    x_hat = torch.rand(5, 6, dtype=torch.float64).bernoulli()
    z, proposal = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    mu, sigma = torch.randn(5, 3, dtype=torch.float64), torch.rand(5, 3, dtype=torch.float64) + 0.5
    q = torch.distributions.Normal(mu, sigma)

    def log_normal(v, m, s):
        return (-0.5 * ((v - m) / s) ** 2 - torch.log(s) - 0.5 * math.log(2 * math.pi)).sum(-1)

    def log_bernoulli(x, z):
        p = torch.sigmoid(vae.decode(z))
        return (x * torch.log(p) + (1 - x) * torch.log(1 - p)).sum(-1)

    zero, one = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    forward = (
        log_bernoulli(x_hat, proposal) + log_normal(proposal, zero, one) - log_normal(proposal, mu, sigma)
    )
    by_hand = forward - (log_bernoulli(x_hat, z) + log_normal(z, zero, one) - log_normal(z, mu, sigma))
    got = cells["metropolis_log_ratio"](vae, x_hat, z, proposal, q)
    torch.testing.assert_close(got, by_hand)
    # With q the prior and a decoder that ignores z, every proposal is accepted: the ratio is 1.
    with torch.no_grad():
        for p in vae.decoder.parameters():
            p.zero_()
    prior = torch.distributions.Normal(torch.zeros(5, 3, dtype=torch.float64), 1.0)
    torch.testing.assert_close(cells["metropolis_log_ratio"](vae, x_hat, z, proposal, prior),
                               torch.zeros(5, dtype=torch.float64))  # fmt: skip


def test_notebook_run_small_writes_both_models_scores(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(su.Path(su.__file__).parent))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    results = small_run(NOTEBOOK, tmp_path)
    scores = results["inpainting_nll_nats"]
    assert set(scores) == {"basic_vae", "made_order_agnostic"}
    for model in scores.values():
        assert set(model) == set(su.INPAINTING_MASKS)
        assert all(0 < s["mean"] < 784 * math.log(2) and s["stderr"] > 0 for s in model.values())
    assert results["inpainting_images"] == COMMON["test_size"]
    per_image = np.load(tmp_path / "results" / "inpainting_inpainting_nll.npy")
    assert per_image.shape == (3, COMMON["test_size"]) and per_image.dtype == np.float32
    for row, mask in zip(per_image, su.INPAINTING_MASKS, strict=True):
        assert row.mean() == pytest.approx(scores["made_order_agnostic"][mask]["mean"], rel=1e-5)
