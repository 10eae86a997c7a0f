"""Comparison.ipynb reads results/ only: run it on results the test writes, with known differences."""

import json

import numpy as np
import papermill
import pytest
from conftest import REPO

import shared_utils as su

SHIFTS = {"basic_vae": 0.0, "conv_vae": 0.9, "made": -0.8, "pyro_vae": 1.9}


def write_fake_results(folder, rng):
    """Models whose per-image NLLs are the baseline's plus a known shift and small noise."""
    difficulty = rng.normal(91, 26, 2000)
    for name, shift in SHIFTS.items():
        nll = difficulty + shift + (rng.normal(0, 1.0, len(difficulty)) if shift else 0)
        exact = name == "made"
        su.write_results(
            name,
            dict(
                notebook=name,
                dataset="mnist",
                seed=0,
                epochs=3,
                device="cpu",
                train_seconds=30.0,
                test_nll_nats=float(nll.mean()),
                test_nll_stderr=float(nll.std() / len(nll) ** 0.5),
                nll_importance_samples=0 if exact else 1000,
                test_elbo_nats=None if exact else -float(nll.mean()) - 4,
                model_parameters=1000,
                active_units=None if exact else 12,
                test_kl_nats=None if exact else 20.0 + shift,
                test_reconstruction_nats=None if exact else -(75.0 + shift),
                published={"value": None, "source": "none", "differs": "n/a"},
                history={
                    "val_log_likelihood" if exact else "val_elbo": [-100.0, -98.0, -97.0],
                    "seconds": [10.0, 20.0, 30.0],
                },
            ),  # fmt: skip
            {},
            str(folder / "results"),
            test_nll=nll,
            prior_samples=rng.random((16, 784)),
        )
    scores = {m: {"mean": 30.0 + i, "stderr": 0.5} for i, m in enumerate(su.INPAINTING_MASKS)}
    path = folder / "results" / "conv_vae.json"  # one model scores inpainting, the others not yet
    path.write_text(json.dumps({**json.loads(path.read_text()), "inpainting_nll_nats": scores}))
    for seed, nll in ((1, 91.3), (2, 91.1)):
        record = json.loads((folder / "results" / "basic_vae.json").read_text())
        (folder / "results" / f"basic_vae_seed{seed}.json").write_text(
            json.dumps({**record, "seed": seed, "test_nll_nats": nll})
        )


def run_comparison(folder):
    papermill.execute_notebook(
        str(REPO / "Comparison.ipynb"),
        str(folder / "Comparison.ipynb"),
        parameters={"results_dir": str(folder / "results"), "images_dir": str(folder / "images")},
        cwd=str(folder),
        kernel_name="python3",
        progress_bar=False,
    )
    nb = json.loads((folder / "Comparison.ipynb").read_text())
    return "".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", []))


def test_comparison_reads_results_and_finds_the_known_differences(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    write_fake_results(tmp_path, np.random.default_rng(0))
    printed = run_comparison(tmp_path)
    for name, shift in SHIFTS.items():
        if name != "basic_vae":
            line = next(
                line for line in printed.splitlines() if line.startswith(f"{name} ") and "paired SE" in line
            )
            mean, stderr = float(line.split()[1]), float(line.split()[3])
            assert abs(mean - shift) < 4 * stderr + 1e-9 and 0 < stderr < 0.05, line
    seed0 = json.loads((tmp_path / "results" / "basic_vae.json").read_text())["test_nll_nats"]
    spread = np.std([seed0, 91.3, 91.1], ddof=1)
    assert f"seed-to-seed standard deviation: {spread:.2f} nats" in printed
    # The rate-distortion plane: each model's rate and distortion, MADE at rate 0 with its NLL.
    made_nll = json.loads((tmp_path / "results" / "made.json").read_text())["test_nll_nats"]
    rows = {line.split()[0]: line.split()[1:] for line in printed.splitlines() if len(line.split()) == 4}
    assert rows["conv_vae"][:2] == ["20.90", "75.90"] and rows["made"][:2] == ["0.00", f"{made_nll:.2f}"], (
        rows
    )
    # The league table's inpainting columns: the scores where a model wrote them, n/a elsewhere.
    table = json.loads((tmp_path / "Comparison.ipynb").read_text())
    markdown = "".join(
        "".join(o["data"]["text/markdown"]) for c in table["cells"] for o in c.get("outputs", [])
        if "text/markdown" in o.get("data", {})
    )  # fmt: skip
    conv_row = next(line for line in markdown.splitlines() if line.startswith("| conv_vae "))
    assert "| 30.00 | 31.00 | 32.00 |" in conv_row, conv_row
    made_row = next(line for line in markdown.splitlines() if line.startswith("| made "))
    assert "| n/a | n/a | n/a |" in made_row, made_row
    for figure in ("paired_differences", "learning_curves", "rate_distortion", "prior_samples"):
        assert (tmp_path / "images" / f"comparison_{figure}.png").stat().st_size > 5000


def test_comparison_names_the_notebook_to_run_for_a_missing_file(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    write_fake_results(tmp_path, np.random.default_rng(1))
    (tmp_path / "results" / "conv_vae.json").unlink()
    printed = run_comparison(tmp_path)
    assert "conv_vae.json is missing: run Conv_VAE.ipynb" in printed
    (tmp_path / "results" / "basic_vae.json").unlink()
    with pytest.raises(papermill.PapermillExecutionError, match="run Basic_VAE.ipynb first"):
        run_comparison(tmp_path)
