"""Beta_VAE's objective against known values (beta = 1 is the negative ELBO; beta only reweights
the rate; the recorded terms are the ELBO's, unweighted), and the notebook run small: every beta of
the sweep is in the results with its rate, distortion, active units and NLLs, the reported model is
the one chosen on validation, each model's checkpoint records its beta, and a bad sweep is refused
at setup."""

import papermill
import pytest
import torch
from conftest import REPO
from test_copyable_cells import copied_cells
from test_notebooks import run_small, small_run

NOTEBOOK = "Beta_VAE.ipynb"


@pytest.fixture(scope="module")
def cells():
    return copied_cells(NOTEBOOK)


def loss_and_terms(cells, beta, x, seed=0):
    torch.manual_seed(0)
    model = cells["VAE"]([16], 3).double()
    torch.manual_seed(seed)  # the same reparameterisation noise for every beta
    return cells["beta_objective"](model, x, beta)


def test_beta_one_is_the_negative_elbo_and_beta_reweights_only_the_rate(cells):
    x = torch.rand(6, 784, dtype=torch.float64).bernoulli()
    loss_1, terms = loss_and_terms(cells, 1.0, x)
    assert torch.allclose(loss_1, -terms["elbo"].mean())
    assert torch.allclose(terms["elbo"], terms["reconstruction"] - terms["kl"])
    for beta in (0.0, 0.25, 4.0):
        loss, same_terms = loss_and_terms(cells, beta, x)
        assert torch.allclose(loss, loss_1 + (beta - 1) * terms["kl"].mean())
        assert all(torch.equal(same_terms[k], terms[k]) for k in terms), "the terms are recorded unweighted"


def test_at_beta_zero_the_rate_sends_no_gradient(cells):
    torch.manual_seed(0)
    model = cells["VAE"]([16], 3).double()
    x = torch.rand(4, 784, dtype=torch.float64).bernoulli()
    torch.manual_seed(1)
    cells["beta_objective"](model, x, 0.0)[0].backward()
    with_rate = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    torch.manual_seed(1)
    (-cells["elbo_terms"](model, x)[0].mean()).backward()  # the reconstruction term alone
    assert all(torch.allclose(a, p.grad) for a, p in zip(with_rate, model.parameters(), strict=True))


def test_the_sweep_is_written_and_the_model_is_chosen_on_validation(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    results = small_run(NOTEBOOK, tmp_path)
    sweep = results["sweep"]
    assert [p["beta"] for p in sweep] == [0.5, 1.0, 4.0]
    for point in sweep:
        assert {"rate", "distortion", "elbo", "active_units", "val_nll", "test_nll"} <= set(point)
        assert point["elbo"] == pytest.approx(-(point["rate"] + point["distortion"]))
    chosen = min(sweep, key=lambda p: p["val_nll"])
    assert results["beta"] == chosen["beta"] and results["active_units"] == chosen["active_units"]
    assert sweep[0]["rate"] > sweep[-1]["rate"], "a larger beta holds the rate down"
    first = [
        torch.load(tmp_path / "checkpoints" / f"beta_vae_beta{b}.pt", weights_only=True) for b in ("0.5", "4")
    ]
    assert all(s["definition"]["beta"] == b for s, b in zip(first, (0.5, 4.0), strict=True))


@pytest.mark.parametrize("betas", [[], [1.0, -2.0], [0.0]])
def test_a_bad_sweep_is_refused_before_any_work(tmp_path, monkeypatch, betas):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    with pytest.raises(papermill.PapermillExecutionError, match=r"betas=.*: choose a number > 0"):
        run_small(NOTEBOOK, tmp_path, betas=betas)
    assert not (tmp_path / "checkpoints").exists()
