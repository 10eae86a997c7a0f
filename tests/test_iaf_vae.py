"""IAF_VAE's model cells, checked on tiny models with random weights: the MADE inside a step is
autoregressive (by gradients), the log-determinant is autograd's log|det J|, the flow restores the
coordinate order, zero flow steps give back the Gaussian posterior, bad parameters are refused, and
section 10's best diagonal Gaussian of a tilted Gaussian is the closed form."""

import json
import math

import papermill
import pytest
import torch
from conftest import REPO
from test_notebooks import run_small

from shared_utils import copyable_cells


def model_cells():
    """The notebook's copyable cells (model, objective: imports, functions, classes) and its
    section-10 functions, executed in a fresh namespace."""
    cells = json.loads((REPO / "IAF_VAE.ipynb").read_text())["cells"]
    sources = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    demo = [s for s in sources if "def exact_posterior" in s or "def best_diagonal_gaussian" in s]
    source = "\n\n".join([*copyable_cells(REPO / "IAF_VAE.ipynb"), *demo])
    namespace = {}
    exec(compile(source, "IAF_VAE model cells", "exec"), namespace)
    return namespace


NB = model_cells()


def randomise(module, seed=0):
    """Non-trivial weights everywhere (masks untouched), so zeros in gradients come from the masks."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype))
    return module


def dependence(step, d, context_size):
    """(2d outputs, d inputs) matrix of |d output / d input| of the step's MADE, and the context gradient."""
    z = torch.randn(d, dtype=torch.double, requires_grad=True)
    h = torch.randn(context_size, dtype=torch.double, requires_grad=True)
    rows, context_rows = [], []
    for i in range(2 * d):
        m, s = step.made(z, h)
        z_grad, h_grad = torch.autograd.grad(torch.cat([m, s])[i], (z, h))
        rows.append(z_grad.abs())
        context_rows.append(h_grad.abs())
    return torch.stack(rows), torch.stack(context_rows)


def violations(grad, d):
    """Entries where output i (of m or s) depends on an input j >= i: must be none."""
    allowed = torch.tril(torch.ones(d, d), diagonal=-1).bool().repeat(2, 1)  # j < i
    return int((grad[~allowed] != 0).sum())


def test_made_inside_a_step_is_autoregressive_by_gradients():
    d, context_size = 5, 3
    step = randomise(NB["IAFStep"](d, context_size, hidden_size=8)).double()
    grad, context_grad = dependence(step, d, context_size)
    assert violations(grad, d) == 0, "m_i or s_i depends on z_j with j >= i"
    allowed = torch.tril(torch.ones(d, d), diagonal=-1).bool().repeat(2, 1)
    assert (grad[allowed] > 0).all(), "with enough hidden units every earlier coordinate should count"
    assert (context_grad > 0).all(), "the context h must reach every output, m_1 and s_1 included"

    # The check can fail: without masks the same network sees the future.
    for layer in (step.first, step.second, step.last):
        layer.mask.fill_(1.0)
    assert violations(dependence(step, d, context_size)[0], d) > 0


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_log_det_is_autograd_log_abs_det_and_each_step_is_triangular(steps):
    torch.manual_seed(steps)
    d, context_size, images = 4, 3, 3
    flow = randomise(NB["IAFFlow"](d, context_size, 6, steps), seed=steps).double()
    z0 = torch.randn(images, d, dtype=torch.double)
    h = torch.randn(images, context_size, dtype=torch.double)
    z_t, log_det = flow(z0, h)
    for i in range(images):
        jac = torch.autograd.functional.jacobian(lambda v, c=h[i]: flow(v, c)[0], z0[i])
        assert torch.linalg.slogdet(jac).logabsdet.item() == pytest.approx(log_det[i].item(), abs=1e-7)
        first = torch.autograd.functional.jacobian(lambda v, c=h[i]: flow.steps[0](v, c)[0], z0[i])
        assert torch.equal(first.triu(diagonal=1), torch.zeros(d, d)), "a step's Jacobian is lower triangular"
        m, s = flow.steps[0].made(z0[i], h[i])
        torch.testing.assert_close(first.diagonal(), torch.sigmoid(s))  # the diagonal is sigma
    assert (log_det < 0).all(), "every gate is below 1, so each step contracts volume"


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_closed_gates_make_the_flow_the_identity_in_the_original_order(steps):
    flow = randomise(NB["IAFFlow"](5, 2, 6, steps)).double()
    with torch.no_grad():
        for step in flow.steps:  # s = +60 everywhere: sigma = 1, z' = z
            step.last.weight.zero_()
            step.last.bias.fill_(60.0)
    z0 = torch.randn(4, 5, dtype=torch.double)
    z_t, log_det = flow(z0, torch.randn(4, 2, dtype=torch.double))
    torch.testing.assert_close(z_t, z0)  # reversals between steps are undone at the end
    assert log_det.abs().max() < 1e-20


def test_zero_flow_steps_is_the_gaussian_posterior():
    torch.manual_seed(0)
    model = NB["IAFVAE"]([16], latent_dim=3, flow_steps=0, flow_hidden_size=4, context_size=2).double()
    x = torch.rand(6, 784, dtype=torch.double).bernoulli()
    mu, logvar = model.encode(x)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())

    torch.manual_seed(1)
    z, log_q = NB["sample_posterior"](model, x)
    torch.manual_seed(1)
    eps = torch.randn(mu.shape, dtype=torch.double)
    torch.testing.assert_close(z, mu + (0.5 * logvar).exp() * eps)
    torch.testing.assert_close(log_q, q.log_prob(z).sum(-1))

    z_k, log_q_k = NB["sample_posterior"](model, x, 5)
    assert z_k.shape == (5, 6, 3)
    torch.testing.assert_close(log_q_k, q.log_prob(z_k).sum(-1))

    # Its Monte-Carlo KL averages to the closed form of Basic_VAE.
    with torch.no_grad():
        kl = NB["elbo_terms"](model, x.repeat(2000, 1))[1].view(2000, len(x))  # 2000 draws per image
    closed_form = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1)
    stderr = kl.std(0) / math.sqrt(len(kl))
    assert ((kl.mean(0) - closed_form).abs() < 5 * stderr).all()


def test_too_narrow_a_made_is_refused_by_the_model():
    with pytest.raises(ValueError, match="hidden_size=4 < latent_dim=5"):
        NB["IAFStep"](5, 3, 4)
    with pytest.raises(ValueError, match="hidden_size=2 < latent_dim=3"):
        NB["IAFVAE"]([8], latent_dim=3, flow_steps=2, flow_hidden_size=2, context_size=2)
    NB["IAFStep"](1, 3, 1)  # one latent dimension is a valid (affine, context-driven) flow


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"flow_hidden_size": 4}, "flow_hidden_size=4: choose a number >= 8"),
        ({"flow_steps": 0}, "flow_steps=0 must be"),
    ],
)
def test_the_notebook_refuses_bad_parameters_before_training(change, message, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    with pytest.raises(papermill.PapermillExecutionError, match=message):
        run_small("IAF_VAE.ipynb", tmp_path, **change)
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").iterdir())
    assert not list(tmp_path.rglob("*.pt")), "it failed before training"


def test_the_best_diagonal_gaussian_of_a_correlated_gaussian_is_the_closed_form():
    """For p = N(0, [[1, r], [r, 1]]) the diagonal q minimising KL(q || p) has variances 1 - r^2 and
    KL = -log(1 - r^2) / 2: what no diagonal Gaussian can avoid, and the section-10 code finds it."""

    class AnyModel:  # exact_posterior's grid is all this test takes from it
        def decode(self, z):
            return torch.zeros(len(z), 784)

    r = 0.8
    target = torch.distributions.MultivariateNormal(torch.zeros(2), torch.tensor([[1.0, r], [r, 1.0]]))
    grid, _, log_cell, _ = NB["exact_posterior"](
        AnyModel(), torch.zeros(784), torch.zeros(2), torch.full((2,), 6.0)
    )
    log_posterior = target.log_prob(grid)
    mean, std, kl = NB["best_diagonal_gaussian"](grid, log_posterior, log_cell, steps=400)
    assert NB["correlation"](grid, log_posterior, log_cell) == pytest.approx(r, abs=1e-3)
    assert kl == pytest.approx(-0.5 * math.log(1 - r**2), abs=5e-3)
    torch.testing.assert_close(std, torch.full((2,), math.sqrt(1 - r**2)), atol=5e-3, rtol=0)
    assert mean.abs().max() < 5e-3
