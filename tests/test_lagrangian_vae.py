"""Lagrangian_VAE, run small: what it writes beyond the shared keys (no published NLL, one
evaluation per reported number, every run compared at one epoch, the training target a margin below
eps1), that its three checkpoints reload without retraining, and that impossible values of its own
parameters stop it at setup, each named."""

import json

import papermill
import pytest
from conftest import REPO
from test_notebooks import COMMON, SMALL_PARAMETERS, run_small, small_run


def test_lagrangian_vae_results_and_reload(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("VAE_BATCH_RUN", "1")
    results = small_run("Lagrangian_VAE.ipynb", tmp_path)
    contrast_epochs = SMALL_PARAMETERS["Lagrangian_VAE.ipynb"][1]["contrast_epochs"]

    published = results["published"]
    assert published["value"] is None and "Zhao" in published["source"] and "no test" in published["differs"]
    assert results["eps1_train"] == results["eps1"] - results["eps1_margin"]

    # The top-level validation and test numbers are the one evaluation after training.
    table = results["constraint_values"]
    assert results["val_d_plus_r"] == table["validation"]["d_plus_r"]
    assert results["test_elbo_nats"] == -table["test"]["d_plus_r"]
    assert results["constraint1_holds_on_validation"] == (results["val_d_plus_r"] <= results["eps1"])
    assert results["constraint1_holds_on_test"] == (table["test"]["d_plus_r"] <= results["eps1"])

    # Every run is reported at the same epoch, from its per-epoch history, and labelled so.
    history = results["history"]
    assert len(history["seconds"]) == len(history["val_d_plus_r"]) == COMMON["epochs"]
    assert set(results["runs"]) == {"main", "InfoVAE", "opposite"}
    for run in results["runs"].values():
        assert run["at_epoch"] == contrast_epochs
    main = results["runs"]["main"]
    assert main["val_d_plus_r"] == history["val_d_plus_r"][contrast_epochs - 1]
    assert results["runs"]["InfoVAE"]["effective_beta"] == pytest.approx(0.5)

    for name in ("lagrangian_vae", "lagrangian_vae_infovae", "lagrangian_vae_opposite"):
        assert (tmp_path / "checkpoints" / f"{name}.pt").is_file()
    reloaded = run_small("Lagrangian_VAE.ipynb", tmp_path, load_checkpoint=True)
    assert reloaded["train_seconds"] == results["train_seconds"], "nothing was retrained"
    assert reloaded["test_nll_nats"] == results["test_nll_nats"]
    assert reloaded["runs"] == results["runs"]

    executed = json.loads(sorted(tmp_path.glob("run-*-Lagrangian_VAE.ipynb"))[0].read_text())
    outputs = [o for c in executed["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
    assert not [o for o in outputs if o.get("name") == "stderr"], "warnings or progress bars in the outputs"


IMPOSSIBLE = [
    # su.setup's checks of this notebook's ranges, every bad value named in one message
    (
        dict(
            mi="more",
            eps1=-1.0,
            eps1_margin=-1.0,
            eps2=0.0,
            mmd_scale=0.0,
            adam_beta1=1.0,
            lambda_learning_rate=0.0,
            batch_size=1,
            val_size=1,
        ),
        [
            "mi='more': choose a number",
            "eps1=-1.0: choose a number > 0",
            "eps1_margin=-1.0: choose a number >= 0",
            "eps2=0.0: choose a number > 0",
            "mmd_scale=0.0: choose a number > 0",
            "adam_beta1=1.0: choose a number in [0, 0.99]",
            "lambda_learning_rate=0.0: choose a number in (0, 10]",
            "batch_size=1: choose a number >= 2",
            "val_size=1: choose a number >= 2",
        ],
    ),
    (dict(eps1_margin=200.0), ["eps1_margin=200.0: choose a number in [0, 105]"]),
    (dict(contrast_epochs=0), ["contrast_epochs=0 must be a whole number >= 1"]),
]


@pytest.mark.parametrize(("changes", "messages"), IMPOSSIBLE)
def test_impossible_parameters_fail_at_setup(changes, messages, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    with pytest.raises(papermill.PapermillExecutionError, match="Impossible parameters") as error:
        run_small("Lagrangian_VAE.ipynb", tmp_path, **changes)
    for message in messages:
        assert message in str(error.value), message
    assert not (tmp_path / "checkpoints").exists() or not list((tmp_path / "checkpoints").iterdir())
