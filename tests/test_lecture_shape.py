"""Each notebook is a short lecture (CONTRIBUTING.md): every code cell tagged with its role, the
plumbing (setup and results) a small share of the code, the maths before the code, and a body of
at most about 2,000 words, with engineering in an appendix at the end. Measured as
../shared/tools/notebook_shape.py measures it, without needing that file."""

import json
import re

import pytest
from conftest import NOT_YET_IN_LECTURE_SHAPE, REPO

NOTEBOOKS = sorted(p.name for p in REPO.glob("*.ipynb"))
ROLES = {"setup", "model", "objective", "train", "evaluate", "figure", "results", "appendix"}
LIMITS = {"plumbing share": 0.15, "code lines before the first displayed equation": 15, "body words": 2200}


def shape(notebook: str) -> dict:
    """Code lines by role (outside the appendix), untagged code cells, code lines before the first
    displayed equation, and the words of Markdown outside the appendix (inline maths not counted)."""
    by_role, untagged, before_maths, words = {}, 0, 0, 0
    appendix = maths_seen = False
    for cell in json.loads((REPO / notebook).read_text())["cells"]:
        source, tags = "".join(cell["source"]), set(cell["metadata"].get("tags", []))
        if cell["cell_type"] == "markdown":
            heading = next((line for line in source.splitlines() if line.startswith("#")), "")
            appendix = appendix or "appendix" in heading.lower() or "appendix" in tags
            words += 0 if appendix else len(re.sub(r"\$[^$]*\$", " ", source).split())
            maths_seen = maths_seen or "$$" in source or "\\begin{" in source
            continue
        lines = len([line for line in source.splitlines() if line.strip()])
        before_maths += 0 if maths_seen else lines
        role = tags & ROLES or ({"setup"} if "parameters" in tags else set())
        untagged += not role
        if not (appendix or "appendix" in role):
            name = min(role) if role else "untagged"
            by_role[name] = by_role.get(name, 0) + lines
    total = sum(by_role.values()) or 1
    return {
        "lines by role": by_role,
        "untagged code cells": untagged,
        "plumbing share": (by_role.get("setup", 0) + by_role.get("results", 0)) / total,
        "code lines before the first displayed equation": before_maths,
        "body words": words,
    }


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_every_notebook_is_a_short_lecture(notebook):
    measured = shape(notebook)
    total = sum(measured["lines by role"].values()) or 1
    shares = ", ".join(f"{role} {n / total:.0%}" for role, n in sorted(measured["lines by role"].items()))
    numbers = "; ".join(f"{name} {measured[name]:.4g}" for name in [*LIMITS, "untagged code cells"])
    print(f"{notebook}: {shares}; {numbers}")
    if notebook in NOT_YET_IN_LECTURE_SHAPE:
        pytest.skip(NOT_YET_IN_LECTURE_SHAPE[notebook])
    over = [
        f"{name} {measured[name]:.4g} > {limit}" for name, limit in LIMITS.items() if measured[name] > limit
    ]
    untagged = measured["untagged code cells"]
    assert not over and not untagged, f"{notebook} is not in lecture shape: {over}, {untagged} untagged cells"
