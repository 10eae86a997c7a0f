"""Basic_VAE, run small: what it writes beyond the shared keys (the published reference, the
per-epoch history, per-image NLLs and prior samples, the static latent traversal) and that a
batch run shows no widget and no warnings."""

import json
import os

import numpy as np
import papermill
import pytest
from conftest import REPO
from test_notebooks import COMMON, run_small, small_run


def test_basic_vae_writes_its_results_and_a_static_traversal(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("VAE_BATCH_RUN", "1")  # as run_all.py: no live kernel, so no sliders
    results = small_run("Basic_VAE.ipynb", tmp_path)

    published = results["published"]
    assert published["value"] == 86.76 and "IWAE" in published["source"] and published["differs"]
    history = results["history"]
    assert len(history["seconds"]) == len(history["val_elbo"]) == COMMON["epochs"]
    assert history["seconds"] == sorted(history["seconds"]) and history["seconds"][0] > 0
    assert results["final_val_elbo"] == history["val_elbo"][-1]

    test_nll = np.load(tmp_path / "results" / "basic_vae_test_nll.npy")
    assert test_nll.shape == (COMMON["test_size"],)
    assert test_nll.mean() == pytest.approx(results["test_nll_nats"], rel=1e-5)
    prior = np.load(tmp_path / "results" / "basic_vae_prior_samples.npy")
    assert prior.shape == (16, 784) and 0 <= prior.min() and prior.max() <= 1

    # the inpainting scores: one row per shared mask, each conditional NLL below the image's NLL
    inpainting = np.load(tmp_path / "results" / "basic_vae_inpainting_nll.npy")
    assert inpainting.shape == (3, COMMON["test_size"])
    assert results["inpainting_images"] == COMMON["test_size"]
    for row, mask in zip(inpainting, ("bottom_half", "centre_square", "random_80"), strict=True):
        assert results["inpainting_nll_nats"][mask]["mean"] == pytest.approx(row.mean(), rel=1e-5)
        assert (0 < row).all() and (row < test_nll).all()

    assert (tmp_path / "images" / "basic_vae_latent_traversal.png").stat().st_size > 2000
    executed = json.loads(next(tmp_path.glob("run-*-Basic_VAE.ipynb")).read_text())
    outputs = [o for c in executed["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
    assert not [o for o in outputs if o.get("name") == "stderr"], "warnings or progress bars in the outputs"
    assert not [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]


def fashion_mnist_or_skip():
    """Debian's official Fashion-MNIST files; CI installs them, elsewhere the test says how."""
    import shared_utils as su

    if su.find_file(su.data_root(), "fashion-mnist", "t10k-labels-idx1-ubyte") is None:
        if os.environ.get("CI"):
            pytest.fail("Fashion-MNIST is missing: CI installs it with apt-get install dataset-fashion-mnist")
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")


def written_files(folder):
    return {path: path.read_bytes() for path in [*folder.glob("results/*"), *folder.glob("images/*")]}


def test_a_checkpoint_is_loaded_only_when_it_is_what_the_run_asks_for(tmp_path, monkeypatch):
    """A model trained on Fashion-MNIST is refused by an MNIST run, and a checkpoint cut short
    names itself: both stop before evaluation, and nothing on disk changes."""
    fashion_mnist_or_skip()
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    trained = run_small("Basic_VAE.ipynb", tmp_path, epochs=1, dataset="fashion-mnist")
    assert trained["dataset"] == "fashion-mnist"
    outputs = written_files(tmp_path)

    with pytest.raises(papermill.PapermillExecutionError) as error:
        run_small("Basic_VAE.ipynb", tmp_path, epochs=1, load_checkpoint=True)
    assert "dataset: checkpoint 'fashion-mnist', this run 'mnist'" in str(error.value)
    assert "load_checkpoint=False" in str(error.value)

    checkpoint = tmp_path / "checkpoints" / "basic_vae.pt"
    cut = checkpoint.read_bytes()[: checkpoint.stat().st_size // 2]
    checkpoint.write_bytes(cut)  # a copy interrupted half-way
    with pytest.raises(papermill.PapermillExecutionError) as error:
        run_small("Basic_VAE.ipynb", tmp_path, epochs=1, dataset="fashion-mnist", load_checkpoint=True)
    assert "checkpoints/basic_vae.pt cannot be read: it is damaged" in str(error.value)
    assert checkpoint.read_bytes() == cut, "the damaged file is left where it is"
    assert written_files(tmp_path) == outputs, "results/ and images/ are as the Fashion-MNIST run left them"
