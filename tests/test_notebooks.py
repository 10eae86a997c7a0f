"""Run every top-level notebook end to end with papermill, small, in a temporary folder, and
check what it wrote. The committed notebooks are never rewritten: papermill reads them and
writes its executed copy into the temporary folder.

A new notebook is tested by adding only its small parameters to SMALL_PARAMETERS.
"""

import atexit
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import papermill
import pytest
import torch
from conftest import NOT_YET_REWORKED, REPO, write_fake_results

from shared_utils import INPAINTING_MASKS, REQUIRED_RESULT_KEYS

# Every notebook accepts these; each entry below adds what makes that notebook small.
COMMON = {
    "epochs": 2,
    "train_size": 1000,
    "val_size": 500,
    "test_size": 100,
    "nll_samples": 20,
    "tsne_points": 150,
    "device": "cpu",
}
# notebook: (results name, its own small parameters)
SMALL_PARAMETERS = {
    "Basic_VAE.ipynb": ("basic_vae", {"hidden_sizes": [64, 64], "latent_dim": 8}),
    "Conv_VAE.ipynb": ("conv_vae", {"encoder_channels": [4, 8], "decoder_channels": [4, 4], "fc_hidden": 32}),
    "Autoencoder_vs_VAE.ipynb": ("autoencoder_vs_vae", {"hidden_sizes": [64, 64], "grid_size": 8}),
    "MADE.ipynb": (
        "made",
        {
            "hidden_sizes": [64],
            "n_masks": 2,
            "n_samples": 10,
            "unmasked_steps": 20,
            "finetune_steps": 20,
            "orderings": 2,
        },
    ),
    "Pyro_VAE.ipynb": ("pyro_vae", {"hidden_sizes": [64, 64], "latent_dim": 8, "elbo_check_repeats": 20}),
    "Lagrangian_VAE.ipynb": ("lagrangian_vae", {"hidden_sizes": [64], "latent_dim": 8, "contrast_epochs": 1}),
    "IWAE.ipynb": ("iwae", {"hidden_sizes": [64, 64], "latent_dim": 8, "snr_repeats": 5, "toy_repeats": 500}),
    "IAF_VAE.ipynb": ("iaf_vae", {"hidden_sizes": [64, 64], "latent_dim": 8, "posterior_demo_epochs": 1}),
    "VampPrior_VAE.ipynb": ("vampprior_vae", {"hidden_sizes": [64, 64], "latent_dim": 8}),
    "Hierarchical_VAE.ipynb": (
        "hierarchical_vae",
        {"hidden_sizes": [32, 16], "latent_sizes": [8, 4], "warmup_epochs": 2, "sweep_images": 50},
    ),
    "Inpainting.ipynb": (
        "inpainting",
        {
            "hidden_sizes": [64, 64],
            "latent_dim": 8,
            "made_hidden_sizes": [32],
            "n_masks": 2,
            "made_epochs": 2,
            "finetune_steps": 20,
            "orderings": 2,
            "bias_k": [5, 20],
            "study_images": 20,
            "gibbs_iterations": 10,
        },
    ),
    "VQ_VAE.ipynb": (
        "vq_vae",
        {
            "hidden_sizes": [64],
            "n_codes": 4,
            "code_dim": 4,
            "codebook_size": 16,
            "restart_every": 3,
            "contrast_epochs": 1,
            "prior_hidden_sizes": [32],
            "prior_epochs": 1,
        },
    ),
    "SemiSupervised_VAE.ipynb": (
        "semisupervised_vae",
        {
            "hidden_sizes": [32],
            "latent_dim": 4,
            "label_draws": 2,
            "m2_draws": 2,
            "m1m2_epochs": 1,
            "m1m2_hidden_sizes": [32],
            "m1m2_latent_dim": 4,
            "m1_epochs": 1,
            "baseline_steps": 50,
        },
    ),
    "Beta_VAE.ipynb": (
        "beta_vae",
        {
            "hidden_sizes": [64, 64],
            "latent_dim": 8,
            "betas": [0.5, 1.0, 4.0],
            "sweep_images": 50,
            "plane_epochs": 1,
        },
    ),
}
NOTEBOOKS = sorted(p.name for p in REPO.glob("*.ipynb") if p.stem != "Comparison")
# A setting of each notebook's objective or training, with another value: a checkpoint trained
# with it (or on another dataset, or with another seed) is not the model a run asks for.
OTHER_TRAINING = {
    "Basic_VAE.ipynb": ("kl_form", "monte_carlo"),
    "Conv_VAE.ipynb": ("dropout", 0.3),
    "Autoencoder_vs_VAE.ipynb": ("learning_rate", 3e-3),
    "MADE.ipynb": ("n_masks", 3),
    "Pyro_VAE.ipynb": ("elbo_estimator", "TraceMeanField_ELBO"),
    "Lagrangian_VAE.ipynb": ("mi", -1.0),
    "IWAE.ipynb": ("gradient_estimator", "iwae"),
    "IAF_VAE.ipynb": ("flow_steps", 1),
    "VampPrior_VAE.ipynb": ("pseudo_input_init", "noise"),
    "Beta_VAE.ipynb": ("beta", 3.0),
    "Hierarchical_VAE.ipynb": ("free_bits", 0.5),
    "Inpainting.ipynb": ("train_size", 500),  # in each of its three checkpoints
    "VQ_VAE.ipynb": ("commitment_cost", 0.5),
    "SemiSupervised_VAE.ipynb": ("alpha_over_n", 0.2),
}


def test_every_notebook_has_small_parameters():
    assert NOTEBOOKS, "no notebooks found at the top level"
    missing = [nb for nb in NOTEBOOKS if nb not in SMALL_PARAMETERS or nb not in OTHER_TRAINING]
    assert not missing, f"add small parameters for {missing} to SMALL_PARAMETERS and OTHER_TRAINING"


def finite_numbers(value):
    """Every number nested in a JSON value, for the finiteness check."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, (int, float)):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from finite_numbers(item)
    elif isinstance(value, list):
        for item in value:
            yield from finite_numbers(item)


def check_comparison_outputs(notebook, name, results, tmp_path):
    """What the comparison reads (per-image test NLLs in test-set order, prior samples, a timed
    history, the published reference), and a quiet run: one line per training, no warnings."""
    if results["test_nll_nats"] is not None:
        per_image = np.load(tmp_path / "results" / f"{name}_test_nll.npy")
        assert per_image.dtype == np.float32 and per_image.shape == (COMMON["test_size"],)
        assert per_image.mean() == pytest.approx(results["test_nll_nats"], rel=1e-5)
    samples = np.load(tmp_path / "results" / f"{name}_prior_samples.npy")
    assert samples.shape == (16, 784) and samples.min() >= 0 and samples.max() <= 1
    seconds = results["history"]["seconds"]
    assert len(seconds) == COMMON["epochs"] and 0 < seconds[0] < seconds[-1]
    assert {"value", "source", "differs"} <= set(results["published"])
    curve = "val_log_likelihood" if name == "made" else "val_elbo"  # the comparison's learning curve
    assert len(results["history"][curve]) == COMMON["epochs"] and max(results["history"][curve]) < 0, curve
    assert results["model_parameters"] > 0

    # Under run_all and the tests a notebook prints one line per training and no warnings.
    executed = json.loads((tmp_path / f"run-0-{notebook}").read_text())
    stderr = [o for c in executed["cells"] for o in c.get("outputs", []) if o.get("name") == "stderr"]
    assert not stderr, f"{notebook} wrote to stderr (progress bars or warnings): {stderr[:2]}"


def write_fake_basic_vae(folder):
    """Basic_VAE's results as its notebook writes them, with made-up per-image NLLs and prior
    samples, for a notebook that pairs against them."""
    rng = np.random.default_rng(0)
    nll = rng.normal(95, 20, COMMON["test_size"])
    write_fake_results(
        "basic_vae",
        folder,
        nll,
        rng.random((16, 784), dtype=np.float32),
        notebook="Basic_VAE",
        nll_importance_samples=COMMON["nll_samples"],
        active_units=5,
        published={"value": 86.76, "source": "IWAE", "differs": "n/a"},
        history={"val_elbo": [-200.0, -180.0, -170.0], "seconds": [1.0, 2.0, 3.0]},
    )
    return nll.astype(np.float32)


# What a notebook's session run finds in its folder: Basic_VAE's results, for those that pair with them.
BEFORE_SMALL_RUN = {"Conv_VAE.ipynb": write_fake_basic_vae, "Pyro_VAE.ipynb": write_fake_basic_vae}
_SESSION_RUNS = Path(tempfile.mkdtemp(prefix="vae-small-runs-"))
atexit.register(shutil.rmtree, _SESSION_RUNS, ignore_errors=True)


def small_run(notebook, folder):
    """`notebook` run with its small parameters once per test session (the runs are the slow part of
    the suite; every test that needs this run shares it), copied into `folder` for a test to read or
    change: the executed notebook is `folder`/run-0-<notebook>. Returns its results."""
    name, own = SMALL_PARAMETERS[notebook]
    run = _SESSION_RUNS / notebook
    if not (run / "done").is_file():
        shutil.rmtree(run, ignore_errors=True)
        run.mkdir()
        if notebook in BEFORE_SMALL_RUN:
            BEFORE_SMALL_RUN[notebook](run)
        committed = (REPO / notebook).read_bytes()
        # The kernel starts in the run's folder (so images/, results/, checkpoints/ land there) and
        # imports shared_utils from the repository.
        with pytest.MonkeyPatch.context() as env:
            env.setenv("PYTHONPATH", str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
            env.setenv("MPLBACKEND", "Agg")
            papermill.execute_notebook(
                str(REPO / notebook),
                str(run / f"run-0-{notebook}"),
                parameters={**COMMON, **own},
                cwd=str(run),
                kernel_name="python3",
                progress_bar=False,
            )
        assert (REPO / notebook).read_bytes() == committed, "the committed notebook was rewritten"
        (run / "done").touch()
    shutil.copytree(run, folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns("done"))
    return json.loads((folder / "results" / f"{name}.json").read_text())


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook_runs_small(notebook, tmp_path, monkeypatch):
    name, _ = SMALL_PARAMETERS[notebook]
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    small_run(notebook, tmp_path)

    results = json.loads((tmp_path / "results" / f"{name}.json").read_text())
    assert set(REQUIRED_RESULT_KEYS) <= set(results), set(REQUIRED_RESULT_KEYS) - set(results)
    assert all(math.isfinite(v) for v in finite_numbers(results)), results
    assert results["epochs"] == COMMON["epochs"] and results["dataset"] == "mnist"
    assert results["parameters"]["train_size"] == COMMON["train_size"]
    assert results["train_seconds"] > 0
    if results["test_nll_nats"] is not None:
        # A binarised MNIST digit costs between 0 and 784 log 2 = 543 nats under any sane model.
        assert 0 < results["test_nll_nats"] < 784 * math.log(2)
        assert results["nll_importance_samples"] in (0, COMMON["nll_samples"])
    if results["test_elbo_nats"] is not None:
        # The ELBO bounds log p(x) from below: negative, and no higher than -NLL (up to MC noise).
        assert results["test_elbo_nats"] < 0
        assert results["test_nll_nats"] <= -results["test_elbo_nats"] + 2.0

    if notebook not in NOT_YET_REWORKED:
        check_comparison_outputs(notebook, name, results, tmp_path)
    if "inpainting_nll_nats" in results and name != "inpainting":  # (Inpainting.ipynb holds two models')
        # the three scores are the means of the per-image rows written
        rows = np.load(tmp_path / "results" / f"{name}_inpainting_nll.npy")
        assert rows.shape == (len(INPAINTING_MASKS), results["inpainting_images"])
        for mask, row in zip(INPAINTING_MASKS, rows, strict=True):
            assert results["inpainting_nll_nats"][mask]["mean"] == pytest.approx(row.mean(), rel=1e-5)
            assert 0 < row.mean() < 784 * math.log(2), mask

    if name == "autoencoder_vs_vae":
        # The autoencoder defines no distribution over images: null likelihoods, a real reconstruction error.
        autoencoder = results["autoencoder"]
        assert autoencoder["test_nll_nats"] is None and autoencoder["test_elbo_nats"] is None
        assert autoencoder["reconstruction_bce"] > 0 and results["vae"]["test_nll_nats"] is not None
    if name == "conv_vae":
        # The reported ELBO is the eval() one: batch norm on running averages, no dropout.
        eval_mode = results["test_elbo_by_mode"][0]
        assert eval_mode["batch_norm"] == "running avg" and not eval_mode["dropout"]
        assert eval_mode["elbo"] == pytest.approx(results["test_elbo_nats"], abs=0.01)

    figures = sorted((tmp_path / "images").glob(f"{name}_*.png"))
    assert len(figures) >= 3, f"expected the notebook's figures in images/, found {figures}"
    for figure in figures:
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 2000, figure

    check_refuses_another_model(notebook, tmp_path)


def check_refuses_another_model(notebook, tmp_path):
    """Make each checkpoint the run saved claim another dataset, seed and training setting: a
    reload stops before evaluation, naming each with both values, and results/ stays as it was."""
    setting, value = OTHER_TRAINING[notebook]
    claimed = {"dataset": "fashion-mnist", "seed": 7, setting: value}
    checkpoints = sorted((tmp_path / "checkpoints").glob("*.pt"))
    assert checkpoints, "the run saved no checkpoint"
    for path in checkpoints:
        state = torch.load(path, weights_only=True)
        assert setting in state["definition"], f"{setting} is not recorded in {path.name}"
        state["definition"].update(claimed)
        torch.save(state, path)
    results = {path: path.read_bytes() for path in (tmp_path / "results").iterdir()}
    with pytest.raises(papermill.PapermillExecutionError, match="CheckpointError") as error:
        run_small(notebook, tmp_path, load_checkpoint=True)
    for name, value in claimed.items():
        assert f"{name}: checkpoint {value!r}, this run " in str(error.value), name
    assert {path: path.read_bytes() for path in (tmp_path / "results").iterdir()} == results


def run_small(notebook, folder, **changes):
    name, own = SMALL_PARAMETERS[notebook]
    papermill.execute_notebook(
        str(REPO / notebook),
        str(folder / f"run-{len(list(folder.glob('run-*')))}-{notebook}"),
        parameters={**COMMON, **own, **changes},
        cwd=str(folder),
        kernel_name="python3",
        progress_bar=False,
    )
    return json.loads((folder / "results" / f"{name}.json").read_text())


def test_basic_vae_reloads_its_checkpoint_without_retraining(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    trained = small_run("Basic_VAE.ipynb", tmp_path)
    assert (tmp_path / "checkpoints" / "basic_vae.pt").is_file()
    figure = tmp_path / "images" / "basic_vae_samples.png"
    figure.unlink()
    reloaded = run_small("Basic_VAE.ipynb", tmp_path, load_checkpoint=True)
    assert figure.is_file(), "figures are regenerated from the checkpoint"
    assert reloaded["train_seconds"] == trained["train_seconds"], "nothing was retrained"
    assert reloaded["test_nll_nats"] == trained["test_nll_nats"], "the same model and seed give the same NLL"
    assert reloaded["test_elbo_nats"] == trained["test_elbo_nats"]


def test_a_rerun_gives_the_same_numbers_and_figures(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    first, second = tmp_path / "first", tmp_path / "second"
    second.mkdir()
    runs = [small_run("Basic_VAE.ipynb", first), run_small("Basic_VAE.ipynb", second)]
    timing = {"train_seconds", "history", "versions"}
    assert {k: v for k, v in runs[0].items() if k not in timing} == {
        k: v for k, v in runs[1].items() if k not in timing
    }
    for produced in sorted((first / "results").glob("*.npy")) + sorted((first / "images").glob("*.png")):
        twin = second / produced.relative_to(first)
        assert produced.read_bytes() == twin.read_bytes(), f"{produced.name} differs between two runs"


def test_an_unwritable_output_folder_fails_at_setup(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    blocker = tmp_path / "results_file"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(papermill.PapermillExecutionError, match="results_dir=.*cannot be used"):
        run_small("Basic_VAE.ipynb", tmp_path, results_dir=str(blocker))
    assert not list(tmp_path.rglob("*.pt")) and not list(tmp_path.rglob("*.png")), "it failed before training"
    assert blocker.read_text() == "a file where a folder should be"


def test_impossible_parameters_fail_fast_and_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    with pytest.raises(papermill.PapermillExecutionError, match="Impossible parameters: epochs=-1"):
        run_small("Basic_VAE.ipynb", tmp_path, epochs=-1)
    assert not (tmp_path / "results").exists(), "nothing was written"
