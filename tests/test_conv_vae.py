"""Conv_VAE, run small: the paired comparison with Basic_VAE's per-image NLLs, the hand-computed
importance-sampled NLL, the train()/eval() table, the fixed NLL kernels, train-or-load, and the
refusal of an impossible architecture before any work."""

import json
import re

import numpy as np
import papermill
import pytest
from conftest import REPO
from test_notebooks import COMMON, run_small, small_run


def printed(folder, run):
    """Everything the run-th small run of Conv_VAE printed to stdout."""
    executed = json.loads((folder / f"run-{run}-Conv_VAE.ipynb").read_text())
    outputs = [o for c in executed["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
    assert not [o for o in outputs if o.get("name") == "stderr"], "warnings or progress bars in the outputs"
    return "".join("".join(o["text"]) for o in outputs if o.get("name") == "stdout")


def test_conv_vae_compares_pairs_and_reloads(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("VAE_BATCH_RUN", "1")
    trained = small_run("Conv_VAE.ipynb", tmp_path)  # beside made-up Basic_VAE results
    basic_nll = np.load(tmp_path / "results" / "basic_vae_test_nll.npy").astype(np.float64)
    text = printed(tmp_path, 0)
    conv_nll = np.load(tmp_path / "results" / "conv_vae_test_nll.npy").astype(np.float64)
    paired = re.search(r"paired over the same (\d+) test images: ([-+]\d+\.\d+) ± (\d+\.\d+)", text)
    assert paired, "the paired difference with Basic_VAE is printed"
    assert int(paired[1]) == COMMON["test_size"]
    difference = conv_nll - basic_nll
    assert float(paired[2]) == pytest.approx(difference.mean(), abs=0.011)
    assert float(paired[3]) == pytest.approx(difference.std(ddof=1) / np.sqrt(len(difference)), abs=0.011)
    # The shared estimator is the log-mean-exp of the weights: the hand computation agrees exactly.
    for line in [line for line in text.splitlines() if line.startswith("test image")]:
        words = line.split()
        assert words[5] == words[7], line
    # The NLL's CPU kernels are a fixed choice (PyTorch's own), not a timing race: switched off around it.
    executed = json.loads((tmp_path / "run-0-Conv_VAE.ipynb").read_text())
    sources = ["".join(c["source"]) for c in executed["cells"] if c["cell_type"] == "code"]
    nll_cells = [s for s in sources if "nll = su.importance_sampled_nll(" in s]
    assert len(nll_cells) == 1, "one cell computes the test NLL"
    lines = [line.split("#")[0].strip() for line in nll_cells[0].splitlines()]
    start = lines.index("nll = su.importance_sampled_nll(")
    assert "torch.backends.mkldnn.enabled = False" in lines[:start], nll_cells[0]
    assert "torch.backends.mkldnn.enabled = True" in lines[start:], nll_cells[0]
    modes = trained["test_elbo_by_mode"]
    assert [(m["batch_norm"], m["dropout"]) for m in modes[:4]] == [
        ("running avg", False),
        ("running avg", True),
        ("batch stats", False),
        ("batch stats", True),
    ]
    assert trained["published"]["value"] is None and trained["published"]["source"]
    assert trained["model_parameters"] > 0 and trained["active_units"] is not None
    for figure in ("conv_vae_vs_basic_vae_samples", "conv_vae_train_vs_eval", "conv_vae_training_curves"):
        assert (tmp_path / "images" / f"{figure}.png").stat().st_size > 2000, figure

    (tmp_path / "images" / "conv_vae_training_curves.png").unlink()
    reloaded = run_small("Conv_VAE.ipynb", tmp_path, load_checkpoint=True)
    assert (tmp_path / "images" / "conv_vae_training_curves.png").is_file(), "figures are redrawn on loading"
    assert reloaded["train_seconds"] == trained["train_seconds"], "nothing was retrained"
    assert reloaded["history"] == trained["history"]
    assert reloaded["test_nll_nats"] == trained["test_nll_nats"]
    assert reloaded["test_elbo_nats"] == trained["test_elbo_nats"]

    refusal = r"(?s)other settings.*fc_hidden: checkpoint 32, this run 16"
    with pytest.raises(papermill.PapermillExecutionError, match=refusal):
        run_small("Conv_VAE.ipynb", tmp_path, load_checkpoint=True, fc_hidden=16)


def test_conv_vae_refuses_an_impossible_architecture_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("VAE_BATCH_RUN", "1")
    refusal = (
        r"Impossible parameters: encoder_channels=\[4, 8, 16\]: choose a list of 2 whole numbers >= 1; "
        r"fc_hidden=2.5: choose a whole number >= 1; dropout=1.5: choose a number in \[0, 1\]"
    )
    with pytest.raises(papermill.PapermillExecutionError, match=refusal):
        run_small("Conv_VAE.ipynb", tmp_path, encoder_channels=[4, 8, 16], fc_hidden=2.5, dropout=1.5)
    assert not (tmp_path / "results").exists() and not (tmp_path / "checkpoints").exists(), "nothing was made"
