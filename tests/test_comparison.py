"""Comparison.ipynb reads results/ only: run it on results the test writes, with known differences."""

import json
import math
import re

import numpy as np
import papermill
import pytest
from conftest import REPO, write_fake_results

import shared_utils as su

SHIFTS = {"basic_vae": 0.0, "conv_vae": 0.9, "made": -0.8, "pyro_vae": 1.9}
# Seed 0, then seeds 1 and 2. Basic and Pyro, on the Basic VAE's network, give the pooled spread; the
# convolutional VAE's seeds (wide apart) count for its own mean only.
SEED_OFFSETS = {"basic_vae": (0.0, 0.4, -0.1), "pyro_vae": (0.0, -0.3, 0.5), "conv_vae": (0.0, 2.0, -2.0)}
POOLED = ("basic_vae", "pyro_vae")


def write_fake_models(folder, rng):
    """Models whose per-image NLLs are the baseline's plus a known shift and small noise."""
    difficulty = rng.normal(91, 26, 2000)
    for name, shift in SHIFTS.items():
        nll = difficulty + shift + (rng.normal(0, 1.0, len(difficulty)) if shift else 0)
        rate_and_distortion = {"test_kl_nats": 20.0 + shift, "test_reconstruction_nats": -(75.0 + shift)}
        write_fake_results(
            name,
            folder,
            nll,
            rng.random((16, 784)),
            exact=name == "made",
            train_seconds=30.0,
            test_nll_stderr=float(nll.std() / len(nll) ** 0.5),
            history={
                "val_log_likelihood" if name == "made" else "val_elbo": [-100.0, -98.0, -97.0],
                "seconds": [10.0, 20.0, 30.0],
            },
            **({} if name == "made" else rate_and_distortion),
        )
    scores = {m: {"mean": 30.0 + i, "stderr": 0.5} for i, m in enumerate(su.INPAINTING_MASKS)}
    path = folder / "results" / "conv_vae.json"  # one model scores inpainting, the others not yet
    path.write_text(json.dumps({**json.loads(path.read_text()), "inpainting_nll_nats": scores}))
    for name, offsets in SEED_OFFSETS.items():  # two more seeds: the same model, shifted as a whole
        record = json.loads((folder / "results" / f"{name}.json").read_text())
        nll = np.load(folder / "results" / f"{name}_test_nll.npy").astype(np.float64)
        for seed, offset in enumerate(offsets[1:], start=1):
            np.save(folder / "results" / f"{name}_seed{seed}_test_nll.npy", (nll + offset).astype(np.float32))
            (folder / "results" / f"{name}_seed{seed}.json").write_text(
                json.dumps({**record, "seed": seed, "test_nll_nats": float((nll + offset).mean())})
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
    write_fake_models(tmp_path, np.random.default_rng(0))
    printed = run_comparison(tmp_path)
    # Seed means: each model minus the Basic VAE's seed mean, image by image, with the seed error
    # from the pooled seed spread (Basic, Pyro and Conv have three seeds, the others one).
    results = tmp_path / "results"
    files = {n: [f"{n}_test_nll.npy", f"{n}_seed1_test_nll.npy", f"{n}_seed2_test_nll.npy"] for n in POOLED}
    means = {n: [np.load(results / f).astype(np.float64).mean() for f in fs] for n, fs in files.items()}
    sd = math.sqrt(sum(np.var(m, ddof=1) for m in means.values()) / 2)
    assert f"pooled seed-to-seed standard deviation: {sd:.2f} nats (4 degrees of freedom)" in printed
    pattern = re.compile(
        r"^(\w+) +([+-][\d.]+) ± ([\d.]+) seed SE \(95%: ±([\d.]+)\), ± ([\d.]+) paired SE", re.M
    )
    found = {m[1]: [float(v) for v in m.groups()[1:]] for m in pattern.finditer(printed)}
    assert set(found) == set(SHIFTS) - {"basic_vae"}, found
    for name in found:
        mean, seed_se, half_width, image_se = found[name]
        shift = SHIFTS[name]
        seeds = 3 if name in SEED_OFFSETS else 1
        expected = shift + np.mean(SEED_OFFSETS.get(name, (0.0,))) - np.mean(SEED_OFFSETS["basic_vae"])
        assert abs(mean - expected) < 4 * max(image_se, 0.005), (name, mean, expected)
        assert seed_se == pytest.approx(sd * math.sqrt(1 / seeds + 1 / 3), abs=0.006), (name, seed_se)
        assert half_width == pytest.approx(2.776 * seed_se, abs=0.02), (name, half_width)  # t, 4 df
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
    write_fake_models(tmp_path, np.random.default_rng(1))
    (tmp_path / "results" / "conv_vae.json").unlink()
    printed = run_comparison(tmp_path)
    assert "conv_vae.json is missing: run Conv_VAE.ipynb" in printed
    (tmp_path / "results" / "basic_vae.json").unlink()
    with pytest.raises(papermill.PapermillExecutionError, match="run Basic_VAE.ipynb first"):
        run_comparison(tmp_path)
