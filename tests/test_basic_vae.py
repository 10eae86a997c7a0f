"""Basic_VAE, run small: what it writes beyond the shared keys (the published reference, the
per-epoch history, per-image NLLs and prior samples, the static latent traversal) and that a
batch run shows no widget and no warnings."""

import json

import numpy as np
import pytest
from conftest import REPO
from test_notebooks import COMMON, run_small


def test_basic_vae_writes_its_results_and_a_static_traversal(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("VAE_BATCH_RUN", "1")  # as run_all.py: no live kernel, so no sliders
    results = run_small("Basic_VAE.ipynb", tmp_path)

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

    assert (tmp_path / "images" / "basic_vae_latent_traversal.png").stat().st_size > 2000
    executed = json.loads(next(tmp_path.glob("run-*-Basic_VAE.ipynb")).read_text())
    outputs = [o for c in executed["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
    assert not [o for o in outputs if o.get("name") == "stderr"], "warnings or progress bars in the outputs"
    assert not [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
