"""SemiSupervised_VAE's pieces against known values (the unlabelled bound against the ten labelled
bounds written out, its terms, the label draw, the importance-sampled likelihood against the
bound), the label protocol (bad label counts fail before training; labels other than the chosen
ones never change the trained weights), and the notebook run small: what it wrote."""

import json
import math

import pytest
import torch
from conftest import REPO
from test_copyable_cells import copied_cells
from test_notebooks import COMMON, SMALL_PARAMETERS, run_small, small_run

import shared_utils as su

NOTEBOOK = "SemiSupervised_VAE.ipynb"


@pytest.fixture(scope="module")
def cells():
    return copied_cells(NOTEBOOK)


def tiny_model(cells, data_dim=784, likelihood="bernoulli", seed=0):
    torch.manual_seed(seed)
    return cells["M2"](data_dim, [16], latent_dim=3, likelihood=likelihood).double()


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_the_unlabelled_bound_is_the_q_weighted_labelled_bounds_plus_the_entropy(
    cells, likelihood, monkeypatch
):
    model = tiny_model(cells, 20, likelihood)
    x = torch.rand(7, 20, dtype=torch.float64)
    x = x.bernoulli() if likelihood == "bernoulli" else x
    monkeypatch.setattr(torch, "randn_like", torch.zeros_like)  # z = the mean: the same z both ways
    u, log_px, rate, logits = cells["unlabelled_bound"](model, x)
    q = logits.softmax(-1)
    by_class = []
    for c in range(10):
        y = torch.zeros(7, 10, dtype=torch.float64)
        y[:, c] = 1
        by_class.append(cells["labelled_bound"](model, x, y))
    bound, recon, kl = (torch.stack([b[i] for b in by_class], -1) for i in range(3))
    entropy = -(q * q.log()).sum(-1)
    assert torch.allclose(u, (q * bound).sum(-1) + entropy, atol=1e-10)
    assert torch.allclose(bound, recon - kl - math.log(10), atol=1e-10)
    assert torch.allclose(u, log_px - rate, atol=1e-10), "U = reconstruction - (KL of z + KL of y)"
    assert torch.allclose(rate, (q * kl).sum(-1) + (q * (q.log() + math.log(10))).sum(-1), atol=1e-10)


def test_the_label_draw_has_n_over_10_of_each_class_and_is_reproducible(cells):
    labels = torch.randint(10, (5000,), generator=torch.Generator().manual_seed(1))
    draw = cells["draw_labels"](labels, 100, torch.Generator().manual_seed(0))
    assert len(draw) == len(set(draw.tolist())) == 100 and torch.equal(draw, draw.sort().values)
    assert torch.equal(torch.bincount(labels[draw], minlength=10), torch.full((10,), 10))
    assert torch.equal(draw, cells["draw_labels"](labels, 100, torch.Generator().manual_seed(0)))
    assert not torch.equal(draw, cells["draw_labels"](labels, 100, torch.Generator().manual_seed(1)))
    seen = cells["hide_labels"](labels, draw)
    assert torch.equal(seen[draw], labels[draw]) and (seen >= 0).sum() == 100
    assert (seen[torch.ones(5000, dtype=torch.bool).index_fill(0, draw, False)] == -1).all()


@pytest.mark.parametrize("n_labels", [95, 0, -10, 10 * 41])
def test_impossible_label_counts_fail_clearly(cells, n_labels):
    labels = torch.arange(400) % 10  # 40 of each class
    with pytest.raises(ValueError, match="n_labels"):
        cells["draw_labels"](labels, n_labels, torch.Generator().manual_seed(0))


def test_an_impossible_label_count_stops_the_notebook_before_training(tmp_path, monkeypatch):
    import papermill

    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    name, own = SMALL_PARAMETERS[NOTEBOOK]
    with pytest.raises(papermill.PapermillExecutionError, match="n_labels=105"):
        papermill.execute_notebook(
            str(REPO / NOTEBOOK), str(tmp_path / "run.ipynb"),
            parameters={**COMMON, **own, "n_labels": 105}, cwd=str(tmp_path), kernel_name="python3",
            progress_bar=False,
        )  # fmt: skip
    assert not list((tmp_path / "checkpoints").glob("*.pt")), "nothing was trained"


def train_small(cells, labels, chosen):
    """A few epochs of M2 through su.train on 200 images, seeing only the labels `chosen`."""
    torch.manual_seed(0)
    images = torch.rand(200, 784, generator=torch.Generator().manual_seed(2))
    model = cells["M2"](784, [16], latent_dim=3)
    generator = su.seed_everything(0)
    objective = cells["m2_objective"](images, cells["hide_labels"](labels, chosen), 0.1, generator)
    su.train(model, objective, cells["evaluate_m2"], images, images[:20], range(1, 3), 32, 1e-3, generator)
    return model.state_dict()


def test_labels_other_than_the_chosen_ones_never_change_the_trained_weights(cells):
    labels = torch.arange(200) % 10
    chosen = cells["draw_labels"](labels, 20, torch.Generator().manual_seed(0))
    others = torch.ones(200, dtype=torch.bool).index_fill(0, chosen, False).nonzero().flatten()
    shuffled = labels.clone()
    shuffled[others] = labels[others][torch.randperm(len(others), generator=torch.Generator().manual_seed(3))]
    assert (shuffled != labels).sum() > 100
    first, second = train_small(cells, labels, chosen), train_small(cells, shuffled, chosen)
    assert all(torch.equal(first[k], second[k]) for k in first)
    changed = labels.clone()
    changed[chosen[0]] = (labels[chosen[0]] + 1) % 10  # a chosen label does matter
    assert not all(torch.equal(first[k], v) for k, v in train_small(cells, changed, chosen).items())


def test_the_importance_sampled_likelihood_is_above_the_bound(cells):
    model = tiny_model(cells).float()
    x = torch.rand(6, 784).bernoulli()
    with torch.no_grad():
        log_w = cells["log_importance_weights"](model, x, 2000)
        u = torch.stack([cells["unlabelled_bound"](model, x)[0] for _ in range(200)]).mean(0)
    assert log_w.shape == (2000, 6)
    log_px = (log_w.double().logsumexp(0) - math.log(2000)).float()
    assert torch.all(log_px >= u - 0.5), (log_px, u)


def test_the_notebook_run_small_writes_its_protocol(tmp_path):
    results = small_run(NOTEBOOK, tmp_path)
    parameters = results["parameters"]
    assert parameters["n_labels"] == 100 and len(results["label_indices"]) == 100
    assert results["label_indices"] == results["label_indices_by_draw"][0]
    assert len(results["label_indices_by_draw"]) == parameters["label_draws"]
    train_y = su.load_data(val_size=COMMON["val_size"], train_size=COMMON["train_size"]).train_y
    for draw in results["label_indices_by_draw"]:
        assert torch.equal(torch.bincount(train_y[draw], minlength=10), torch.full((10,), 10))
    errors = results["test_error_percent"]
    assert set(errors) == {"M2", "M1+M2", "baseline, pixels", "baseline, M1 codes"}
    assert len(errors["M2"]["per_draw"]) == parameters["m2_draws"]
    assert all(len(errors[k]["per_draw"]) == parameters["label_draws"] for k in errors if k != "M2")
    assert all(0 <= v <= 100 for e in errors.values() for v in e["per_draw"])
    assert results["published"]["value"] is None
    assert results["published_test_error_percent"]["M1+M2"] == [3.33, 0.14]
    assert results["test_elbo_nats"] == pytest.approx(
        results["test_reconstruction_nats"] - results["test_kl_nats"], rel=1e-5
    )
    assert results["m1"].startswith("trained here")  # no basic_vae.pt in the test's folder
    figures = {p.name for p in (tmp_path / "images").glob("semisupervised_vae_*.png")}
    assert figures == {f"semisupervised_vae_{n}.png" for n in ("training_curves", "analogies", "samples")}


def test_a_run_with_another_seed_draws_later_labels_and_the_default_run_reads_its_m2_back(
    tmp_path, monkeypatch
):
    """Seed 1's first label draw is seed 0's second (so `run_all --seeds 1 2` trains M2 on more draws),
    and the default run, rerun from its checkpoints, reports M2 on that draw from the seed run's file,
    matched by label indices; a file whose labels match none of its draws is left out."""
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    default = small_run(NOTEBOOK, tmp_path)
    run_small(NOTEBOOK, tmp_path, seed=1, m2_draws=1, results_dir="seed1", checkpoint_dir="seed1")
    seed_run = (tmp_path / "seed1" / "semisupervised_vae.json").read_text()  # run_all names it _seed1
    other = json.loads(seed_run)
    assert other["seed"] == 1 and other["label_indices"] == default["label_indices_by_draw"][1]
    (tmp_path / "results" / "semisupervised_vae_seed1.json").write_text(seed_run)
    stranger = {**other, "label_indices": list(range(100)), "test_error_percent": {"M2": {"per_draw": [1.0]}}}
    (tmp_path / "results" / "semisupervised_vae_seed7.json").write_text(json.dumps(stranger))
    rerun = run_small(NOTEBOOK, tmp_path, m2_draws=1, load_checkpoint=True)
    m2 = {
        "0": default["test_error_percent"]["M2"]["per_draw"][0],
        "1": other["test_error_percent"]["M2"]["per_draw"][0],
    }
    assert rerun["m2_test_error_percent_by_draw"] == m2
