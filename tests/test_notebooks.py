"""Run every top-level notebook end to end with papermill, small, in a temporary folder, and
check what it wrote. The committed notebooks are never rewritten: papermill reads them and
writes its executed copy into the temporary folder.

A new notebook is tested by adding only its small parameters to SMALL_PARAMETERS.
"""

import json
import math
import os

import papermill
import pytest
from conftest import REPO

from shared_utils import REQUIRED_RESULT_KEYS

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
}
NOTEBOOKS = sorted(p.name for p in REPO.glob("*.ipynb"))


def test_every_notebook_has_small_parameters():
    assert NOTEBOOKS, "no notebooks found at the top level"
    missing = [nb for nb in NOTEBOOKS if nb not in SMALL_PARAMETERS]
    assert not missing, f"add small parameters for {missing} to SMALL_PARAMETERS"


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


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook_runs_small(notebook, tmp_path, monkeypatch):
    name, own = SMALL_PARAMETERS[notebook]
    committed = (REPO / notebook).read_bytes()
    # The kernel starts in tmp_path (so images/, results/, checkpoints/ land there) and
    # imports shared_utils from the repository.
    monkeypatch.setenv("PYTHONPATH", str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    papermill.execute_notebook(
        str(REPO / notebook),
        str(tmp_path / notebook),
        parameters={**COMMON, **own},
        cwd=str(tmp_path),
        kernel_name="python3",
        progress_bar=False,
    )
    assert (REPO / notebook).read_bytes() == committed, "the committed notebook was rewritten"

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

    figures = sorted((tmp_path / "images").glob(f"{name}_*.png"))
    assert len(figures) >= 3, f"expected the notebook's figures in images/, found {figures}"
    for figure in figures:
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 2000, figure
