"""Pyro_VAE, run small: what it writes beyond the shared keys (the ELBO check's t-test, the paired
comparison with Basic_VAE, the published reference, the history), that a batch run shows no
warnings, that it reloads its checkpoint without retraining, and that a bad check size fails fast."""

import json

import numpy as np
import papermill
import pytest
from conftest import REPO
from scipy import stats
from test_notebooks import COMMON, SMALL_PARAMETERS, run_small, small_run

import shared_utils as su


def test_pyro_vae_writes_its_checks_and_comparison_and_reloads(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("VAE_BATCH_RUN", "1")  # as run_all.py: one summary line, no progress bar
    results = small_run("Pyro_VAE.ipynb", tmp_path)  # beside made-up Basic_VAE results
    basic_nll = np.load(tmp_path / "results" / "basic_vae_test_nll.npy")

    published = results["published"]
    assert published["value"] == 86.76 and "IWAE" in published["source"] and published["differs"]
    history = results["history"]
    for key in ("train_elbo", "val_elbo", "val_reconstruction", "val_kl", "seconds"):
        assert len(history[key]) == COMMON["epochs"], key
    assert history["seconds"] == sorted(history["seconds"]) and history["seconds"][0] > 0
    assert results["final_val_elbo"] == history["val_elbo"][-1]
    assert (
        results["model_parameters"] > 0
        and 0 <= results["active_units"] <= SMALL_PARAMETERS["Pyro_VAE.ipynb"][1]["latent_dim"]
    )

    # The ELBO check: Student's t on R - 1 degrees of freedom, its quantile for the stated rate.
    check = results["elbo_check"]
    repeats = SMALL_PARAMETERS["Pyro_VAE.ipynb"][1]["elbo_check_repeats"]
    assert check["repeats"] == repeats and check["degrees_of_freedom"] == repeats - 1
    assert check["false_alarm_rate"] == 1e-4
    assert check["threshold"] == pytest.approx(stats.t.ppf(1 - 0.5e-4, repeats - 1))
    assert abs(check["t_statistic"]) < check["threshold"]

    # The comparison with Basic_VAE is the paired difference of the per-image NLLs.
    own_nll = np.load(tmp_path / "results" / "pyro_vae_test_nll.npy")
    assert own_nll.shape == (COMMON["test_size"],)
    assert own_nll.mean() == pytest.approx(results["test_nll_nats"], rel=1e-5)
    paired = su.paired_difference(own_nll, basic_nll)
    assert results["vs_basic_vae"]["images"] == COMMON["test_size"]
    assert results["vs_basic_vae"]["nll_difference"] == pytest.approx(paired["mean"], rel=1e-4)
    assert results["vs_basic_vae"]["stderr"] == pytest.approx(paired["stderr"], rel=1e-3)
    prior = np.load(tmp_path / "results" / "pyro_vae_prior_samples.npy")
    assert prior.shape == (16, 784) and 0 <= prior.min() and prior.max() <= 1

    executed = json.loads(next(tmp_path.glob("run-*-Pyro_VAE.ipynb")).read_text())
    outputs = [o for c in executed["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
    assert not [o for o in outputs if o.get("name") == "stderr"], "warnings or progress bars in the outputs"

    # Reload: the figures are redrawn from the checkpoint, nothing is retrained, the numbers repeat.
    figure = tmp_path / "images" / "pyro_vae_training_curves.png"
    figure.unlink()
    reloaded = run_small("Pyro_VAE.ipynb", tmp_path, load_checkpoint=True)
    assert figure.is_file()
    assert reloaded["train_seconds"] == results["train_seconds"] and reloaded["history"] == history
    for key in ("test_nll_nats", "test_elbo_nats"):
        assert reloaded[key] == results[key], key
    assert reloaded["elbo_check"]["t_statistic"] == check["t_statistic"]


def test_too_few_elbo_check_repeats_fail_at_setup(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    with pytest.raises(papermill.PapermillExecutionError, match="elbo_check_repeats=1"):
        run_small("Pyro_VAE.ipynb", tmp_path, elbo_check_repeats=1)
    assert not (tmp_path / "results").exists(), "nothing was written"
