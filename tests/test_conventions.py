"""The committed notebooks follow the collection's conventions (CONTRIBUTING.md): they can be run
by papermill, opened on Colab, read on the web, and rerun without noise in `git diff`."""

import ast
import json
import re

import pytest
from conftest import (
    EXACT_INPAINTING_SCORERS,
    NO_INPAINTING_SCORE,
    NOT_YET_REWORKED,
    NOT_YET_SCORING_INPAINTING,
    REPO,
)

import run_all

NOTEBOOKS = sorted(p.name for p in REPO.glob("*.ipynb"))
URL = re.compile(r'^REPO_URL = "(https://[^"]+)"$', re.MULTILINE)
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"


def cells(notebook):
    return json.loads((REPO / notebook).read_text())["cells"]


def source(cell):
    return "".join(cell["source"])


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook_shape(notebook):
    if notebook in NOT_YET_REWORKED:
        pytest.skip(NOT_YET_REWORKED[notebook])
    all_cells = cells(notebook)
    code = [c for c in all_cells if c["cell_type"] == "code"]
    assert any("parameters" in c["metadata"].get("tags", []) for c in code), "no cell tagged 'parameters'"
    long = {i: len(source(c).splitlines()) for i, c in enumerate(code) if len(source(c).splitlines()) > 40}
    assert not long, f"code cells over 40 lines (a cell makes one point): {long}"
    # A run top to bottom numbers every code cell in order (cells that only define print nothing).
    executed = [c.get("execution_count") for c in code] == list(range(1, len(code) + 1))
    figures = [o for c in code for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert executed and figures, "committed without the outputs of its default run, top to bottom"
    text = "\n".join(source(c) for c in all_cells).lower()
    for phrase in ("older notebook", "seed notebook"):
        assert phrase not in text, f"'{phrase}': describe such bugs as common mistakes"
    # Prose waiting for a default run's numbers is marked with this sign, and never committed.
    assert "\u27e8fill" not in text, "a cell still waits for its numbers (\u27e8FILL\u27e9)"


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_opens_on_colab_and_says_how_to_get_shared_utils(notebook):
    if notebook in NOT_YET_REWORKED:
        pytest.skip(NOT_YET_REWORKED[notebook])
    first = source(next(c for c in cells(notebook) if c["cell_type"] == "code"))
    assert 'if "google.colab" in sys.modules' in first, "the first code cell fetches the repository on Colab"
    ast.parse(first)  # plain Python: it runs under papermill and is skipped there
    text = "\n".join(source(c) for c in cells(notebook))
    assert "import shared_utils as su\nexcept ModuleNotFoundError" in text


def test_one_repository_url_everywhere():
    reworked = [nb for nb in NOTEBOOKS if nb not in NOT_YET_REWORKED]
    urls = {nb: URL.findall("\n".join(source(c) for c in cells(nb))) for nb in reworked}
    found = {u for found in urls.values() for u in found}
    assert len(found) == 1 and all(urls.values()), urls
    (url,) = found
    assert url in (REPO / "README.md").read_text() and url in (REPO / "CITATION.cff").read_text()


def colab_link(notebook):
    """Colab's address for a notebook of the repository that every notebook's REPO_URL names."""
    (url,) = set(URL.findall("\n".join(source(c) for c in cells(notebook))))
    colab = url.replace("https://github.com/", "https://colab.research.google.com/github/")
    return f"{colab}/blob/main/{notebook}"


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_an_open_in_colab_badge_on_the_notebook_and_in_the_readme(notebook):
    first_text = source(next(c for c in cells(notebook) if c["cell_type"] == "markdown"))
    badge = f"[![Open in Colab]({COLAB_BADGE})]({colab_link(notebook)})"
    assert first_text.startswith("# ") and badge in first_text, "a badge under the title opens this notebook"
    row = next(line for line in (REPO / "README.md").read_text().splitlines() if f"[`{notebook}`]" in line)
    assert badge in row, f"the README's table has no badge for {notebook}"


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_no_volatile_metadata_or_machine_paths(notebook):
    if notebook in NOT_YET_REWORKED:
        pytest.skip(NOT_YET_REWORKED[notebook])
    nb = json.loads((REPO / notebook).read_text())
    assert "papermill" not in nb["metadata"], "strip papermill's metadata (run_all.strip_volatile)"
    for cell in nb["cells"]:
        assert not {"papermill", "execution"} & set(cell["metadata"]), "per-cell timestamps make reruns noisy"
    outputs = json.dumps([c.get("outputs", []) for c in nb["cells"]])
    assert str(REPO) not in outputs and "/root/" not in outputs and "/tmp/" not in outputs


def test_strip_volatile_removes_timestamps_and_paths(tmp_path, monkeypatch):
    nb = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"papermill": {"start_time": "2026-01-01"}, "kernelspec": {"name": "python3"}},
        "cells": [
            {
                "cell_type": "code",
                "id": "a",
                "metadata": {"tags": ["parameters"], "papermill": {"duration": 1.5}, "execution": {"x": 1}},
                "execution_count": 1,
                "source": "x = 1",
                "outputs": [
                    {"output_type": "stream", "name": "stdout", "text": f"wrote {REPO}/results/a.json\n"}
                ],
            }
        ],
    }
    path = tmp_path / "n.ipynb"
    path.write_text(json.dumps(nb))
    run_all.strip_volatile(path)
    stripped = json.loads(path.read_text())
    assert "papermill" not in stripped["metadata"] and stripped["cells"][0]["metadata"] == {
        "tags": ["parameters"]
    }
    assert "".join(stripped["cells"][0]["outputs"][0]["text"]) == "wrote results/a.json\n"
    assert stripped["metadata"]["kernelspec"] == {"name": "python3"}


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_every_likelihood_scores_the_shared_inpainting_masks(notebook):
    """A notebook that saves a model's results scores the inpainting masks with the shared helper and
    writes them with its results, unless listed, with its reason, in tests/conftest.py."""
    cells = json.loads((REPO / notebook).read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    if "su.save_results(" not in code or notebook in NO_INPAINTING_SCORE:
        return
    call = code[code.index("su.save_results(") :].split("\n)")[0]  # up to the call's closing line
    scores = EXACT_INPAINTING_SCORERS.get(notebook, "su.score_inpainting(") in code and "inpainting" in call
    if notebook in NOT_YET_SCORING_INPAINTING:
        assert not scores, f"{notebook} scores inpainting now: remove it from NOT_YET_SCORING_INPAINTING"
    else:
        assert scores, f"{notebook} saves results without its inpainting scores passed to su.save_results"
