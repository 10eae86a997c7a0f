"""MADE-specific checks of what the notebook writes: the exact per-image NLLs behind the headline,
the autoregressive prior samples, the published reference, the masks read back from the layers
during training, and a reload that retrains nothing."""

import math

import numpy as np
import papermill
import pytest
from conftest import REPO
from test_notebooks import COMMON, run_small, small_run

NOTEBOOK = "MADE.ipynb"


@pytest.fixture
def kernel_env(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("MPLBACKEND", "Agg")


def test_made_results_and_reload(tmp_path, kernel_env):
    trained = small_run(NOTEBOOK, tmp_path)
    results = tmp_path / "results"

    # The headline is the mean of the exact per-image ensemble NLLs, saved in test-set order.
    per_image = np.load(results / "made_test_nll.npy")
    assert per_image.shape == (COMMON["test_size"],) and (per_image > 0).all()
    assert per_image.mean() == pytest.approx(trained["test_nll_nats"], abs=1e-3)
    assert trained["nll_importance_samples"] == 0 and trained["test_elbo_nats"] is None
    assert trained["active_units"] is None and trained["model_parameters"] > 0
    # The mixture is never worse than the average single mask (Jensen), and the logit average is not it.
    assert trained["test_nll_nats"] <= np.mean(trained["test_nll_each_mask_nats"]) + 1e-6
    assert trained["logit_average_score_not_a_likelihood"] != trained["test_nll_nats"]

    # Prior samples: 16 images of the probabilities each pixel was drawn with.
    prior = np.load(results / "made_prior_samples.npy")
    assert prior.shape == (16, 784) and ((prior > 0) & (prior < 1)).all()

    # Every mask was in the layers during training, equally often, and the steps add up.
    steps = trained["training_steps_per_mask"]
    n_masks = trained["parameters"]["n_masks"]
    batches = math.ceil(COMMON["train_size"] / trained["parameters"]["batch_size"])
    assert len(steps) == n_masks and min(steps) > 0 and sum(steps) == COMMON["epochs"] * batches
    assert max(steps) - min(steps) <= trained["parameters"]["mask_every"]

    # The published reference is the like-for-like row, and says what the famous 86.64 is.
    published = trained["published"]
    assert published["value"] == 88.04
    assert "86.64" in published["source"] and "8000" in published["source"]
    history = trained["history"]
    assert len(history["seconds"]) == trained["epochs"] and history["seconds"] == sorted(history["seconds"])

    # Reloading the checkpoint retrains nothing and scores the same model.
    reloaded = run_small(NOTEBOOK, tmp_path, load_checkpoint=True)
    assert reloaded["train_seconds"] == trained["train_seconds"]
    assert reloaded["test_nll_nats"] == trained["test_nll_nats"]
    assert reloaded["training_steps_per_mask"] == steps and reloaded["epochs"] == trained["epochs"]


def test_made_bad_output_folder_fails_at_setup(tmp_path, kernel_env):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(papermill.PapermillExecutionError, match="images_dir="):
        run_small(NOTEBOOK, tmp_path, images_dir=str(blocker / "images"))
    # It stopped at setup: nothing was trained, scored or written.
    assert not list(tmp_path.glob("results/made*")) and not list(tmp_path.glob("checkpoints/made*"))
