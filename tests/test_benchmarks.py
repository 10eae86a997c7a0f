"""The recipe benchmark runs end to end (tiny, --quick) on the notebook's own model cells."""

import json
import math
import subprocess
import sys

from conftest import REPO


def test_recipe_benchmark_runs_quick_and_writes_its_frontier(tmp_path):
    out = tmp_path / "recipes.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "basic_vae_recipes.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(out.read_text())
    assert record["quick"] and record["nll_samples"] == 10 and record["val_images"] == 100
    runs = record["runs"]
    assert len(runs) == 7 and len({(r["batch_size"], r["epochs"]) for r in runs}) == 7
    for run in runs:
        assert run["epochs"] >= 1 and run["train_minutes"] > 0
        # A binarised digit costs between 0 and 784 log 2 nats.
        assert 0 < run["val_nll"] < 784 * math.log(2) and run["val_nll_stderr"] > 0
    assert done.stdout.count(" min  validation NLL") == 7  # one line per run


def test_conv_nll_cost_benchmark_runs_quick_and_prints_every_setting():
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "conv_vae_nll_cost.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if "full test NLL about" in line]
    assert len(lines) == 4, done.stdout  # two networks, each with both kernel families
    assert sum(" native " in line for line in lines) == sum(" oneDNN " in line for line in lines) == 2
    minutes = [float(line.split()[-2]) for line in lines]
    assert all(m > 0 for m in minutes), done.stdout


def test_conv_nll_cost_benchmark_refuses_impossible_sizes():
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "conv_vae_nll_cost.py"), "--images", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "--images" in done.stderr
