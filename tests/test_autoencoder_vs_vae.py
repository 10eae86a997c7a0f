"""Checks of Autoencoder_vs_VAE.ipynb beyond the shared ones in test_notebooks.py: its functions
take what they use as arguments, it trains with the loop Basic_VAE teaches, it reloads its
checkpoint without retraining, and it writes the VAE's per-image NLLs and prior samples with the
autoencoder's numbers beside them."""

import ast
import builtins
import json
import symtable

import numpy as np
import pytest
from conftest import REPO
from test_notebooks import COMMON, run_small, small_run

NOTEBOOK = "Autoencoder_vs_VAE.ipynb"
COMPREHENSIONS = {"lambda", "listcomp", "genexpr", "setcomp", "dictcomp"}


def notebook_source() -> str:
    cells = json.loads((REPO / NOTEBOOK).read_text())["cells"]
    return "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def module_data_names(tree: ast.Module) -> set[str]:
    """Names the notebook binds at top level other than by def, class or import: its data."""
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)):
            continue
        names |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    return names


def globals_read(table: symtable.SymbolTable) -> set[str]:
    """Global names read by a function (or class) and every scope nested in it."""
    names = set(table.get_globals()) if isinstance(table, symtable.Function) else set()
    for child in table.get_children():
        names |= globals_read(child)
    return names


def test_no_function_reads_a_notebook_global():
    source = notebook_source()
    tree = ast.parse(source)
    data = module_data_names(tree) - set(dir(builtins))
    offenders = {}
    for node in ast.walk(tree):  # defaults are read at definition time, in the notebook's scope
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            defaults = [d for d in node.args.defaults + node.args.kw_defaults if d is not None]
            read = {n.id for d in defaults for n in ast.walk(d) if isinstance(n, ast.Name)} & data
            if read:
                offenders[f"{node.name} (defaults)"] = sorted(read)
    for table in symtable.symtable(source, NOTEBOOK, "exec").get_children():
        if table.get_name() in COMPREHENSIONS:  # a lambda or comprehension at a call site
            continue
        read = globals_read(table) & data
        if read:
            offenders[table.get_name()] = sorted(read)
    assert not offenders, f"functions reading notebook globals (pass them as arguments): {offenders}"


def test_trains_both_models_with_the_shared_loop():
    """Taught once, reused by name: no training loop of its own, su.train on both models at once."""
    source = notebook_source()
    assert "def train(" not in source and "su.binarized_batches" not in source
    assert "su.train(models, both_objective, evaluate_both," in source


@pytest.fixture
def small_env(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("VAE_BATCH_RUN", "1")


def test_writes_both_models_and_reloads_without_retraining(tmp_path, small_env):
    trained = small_run(NOTEBOOK, tmp_path)
    results = tmp_path / "results"
    # Top level: the VAE's numbers, per-epoch history with the seconds of the shared clock.
    epochs = COMMON["epochs"]
    assert trained["epochs"] == epochs and len(trained["history"]["seconds"]) == epochs
    vae_keys = {"train_vae_bce", "train_vae_kl", "val_vae_bce", "val_vae_kl", "val_elbo", "seconds"}
    assert set(trained["history"]) == vae_keys
    ae_keys = {"train_autoencoder_bce", "val_autoencoder_bce", "seconds"}
    assert set(trained["autoencoder"]["history"]) == ae_keys
    assert trained["published"]["value"] is None and "not a contender" in trained["published"]["source"]
    per_image = np.load(results / "autoencoder_vs_vae_test_nll.npy")
    assert per_image.shape == (COMMON["test_size"],)
    assert per_image.mean() == pytest.approx(trained["test_nll_nats"], rel=1e-5)
    prior = np.load(results / "autoencoder_vs_vae_prior_samples.npy")
    assert prior.shape == (16, 784) and 0 <= prior.min() and prior.max() <= 1
    # The holes are counted by the same rule for both models, and by the control rule.
    for rule in ("empty_grid_cells", "empty_grid_cells_quantiles"):
        assert set(trained[rule]) == {"autoencoder", "vae"}
        assert all(0 <= share <= 1 for share in trained[rule].values())
    assert trained["autoencoder"]["empty_grid_cells"] == trained["empty_grid_cells"]["autoencoder"]
    for name in ("latent_grids", "latent_grids_quantiles", "probes", "manifolds"):
        assert (tmp_path / "images" / f"autoencoder_vs_vae_{name}.png").is_file(), name

    (tmp_path / "images" / "autoencoder_vs_vae_latent_grids.png").unlink()
    reloaded = run_small(NOTEBOOK, tmp_path, load_checkpoint=True)
    assert (tmp_path / "images" / "autoencoder_vs_vae_latent_grids.png").is_file(), "figures are redrawn"
    assert reloaded["train_seconds"] == trained["train_seconds"], "nothing was retrained"
    assert reloaded["epochs"] == epochs and reloaded["history"] == trained["history"]
    for key in ("test_nll_nats", "test_elbo_nats", "empty_grid_cells", "probe_accuracy", "autoencoder"):
        assert reloaded[key] == trained[key], key
