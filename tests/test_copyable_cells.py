"""A reader copies a notebook's model, loss and training-loop cells into their own material: those
cells (tagged "model", "objective" or "train", made only of imports and definitions) must run in a
fresh Python that has only torch, without shared_utils or any notebook global. Each notebook's cells
are extracted, run in a new interpreter started in an empty folder (isolated mode, so neither the
repository nor PYTHONPATH is importable), followed by the small check in
tests/copyable/<Notebook>.py that builds a tiny model, scores a batch and backpropagates.
"""

import ast
import inspect
import json
import subprocess
import sys

import pytest
from conftest import NOT_YET_REWORKED, REPO

import shared_utils as su

NOTEBOOKS = sorted(p.name for p in REPO.glob("*.ipynb") if p.stem != "Comparison")
# What copied cells may import: torch and the standard library (and Pyro, in the Pyro notebook).
ALLOWED = {"torch", "math", "time", "functools", "itertools", "typing", "collections", "dataclasses"}
EXTRA = {"Pyro_VAE.ipynb": {"pyro"}}


def tagged_source(notebook: str) -> str:
    return "\n\n".join(su.copyable_cells(REPO / notebook))


def copied_cells(notebook: str) -> dict:
    """The namespace of the notebook's copyable cells, run here as a reader would copy them."""
    namespace: dict = {}
    exec(compile(tagged_source(notebook), notebook, "exec"), namespace)
    return namespace


def imported_modules(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    return names


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_model_cells_run_alone_with_only_torch(notebook, tmp_path):
    if notebook in NOT_YET_REWORKED:
        pytest.skip(NOT_YET_REWORKED[notebook])
    source = tagged_source(notebook)
    assert source.strip(), f"{notebook}: tag the model and loss cells with 'model' (or 'objective', 'train')"
    foreign = imported_modules(source) - ALLOWED - EXTRA.get(notebook, set())
    assert not foreign, f"{notebook}: the model cells import {foreign}; a reader has only torch"
    check = REPO / "tests" / "copyable" / f"{REPO.joinpath(notebook).stem}.py"
    assert check.is_file(), f"write {check.relative_to(REPO)}: a tiny model, one batch, backward"
    script = tmp_path / "copied.py"
    script.write_text(source + "\n\n# --- the reader's own use of the copied cells\n" + check.read_text())
    done = subprocess.run(
        [sys.executable, "-I", str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{notebook}: the copied cells fail alone:\n{done.stderr[-3000:]}"
    assert "copied cells ok" in done.stdout, "the check must end by printing 'copied cells ok'"


def test_basic_vae_teaches_the_loop_the_others_import():
    """Taught once, reused by name: Basic_VAE's training-loop cell is su.train, word for word."""
    cells = json.loads((REPO / "Basic_VAE.ipynb").read_text())["cells"]
    loops = [c for c in cells if "def train(" in "".join(c["source"])]
    assert len(loops) == 1 and "train" in loops[0]["metadata"]["tags"]
    assert "".join(loops[0]["source"]).strip() == inspect.getsource(su.train).strip()


def test_basic_vae_teaches_the_posterior_sampler_the_others_import():
    """Basic_VAE's posterior_samples cell (the inpainting scores' sample_fn) is su.posterior_samples."""
    cells = json.loads((REPO / "Basic_VAE.ipynb").read_text())["cells"]
    samplers = [c for c in cells if "def posterior_samples(" in "".join(c["source"])]
    assert len(samplers) == 1 and "model" in samplers[0]["metadata"]["tags"]
    assert "".join(samplers[0]["source"]).strip() == inspect.getsource(su.posterior_samples).strip()
