"""The benchmarks run end to end (tiny, --quick) on the notebooks' own model cells."""

import json
import math
import subprocess
import sys

import pytest
import torch
from conftest import REPO


def run_benchmark(script, *args, timeout):
    """Run benchmarks/<script> with args in a fresh interpreter; the finished process."""
    command = [sys.executable, str(REPO / "benchmarks" / script), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def test_recipe_benchmark_runs_quick_and_writes_its_frontier(tmp_path):
    out = tmp_path / "recipes.json"
    done = run_benchmark("basic_vae_recipes.py", "--quick", "--out", str(out), timeout=600)
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
    done = run_benchmark("conv_vae_nll_cost.py", "--quick", timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if "full test NLL about" in line]
    assert len(lines) == 4, done.stdout  # two networks, each with both kernel families
    assert sum(" native " in line for line in lines) == sum(" oneDNN " in line for line in lines) == 2
    minutes = [float(line.split()[-2]) for line in lines]
    assert all(m > 0 for m in minutes), done.stdout


def test_conv_nll_cost_benchmark_refuses_impossible_sizes():
    done = run_benchmark("conv_vae_nll_cost.py", "--images", "0", timeout=60)
    assert done.returncode == 2 and "--images" in done.stderr


def test_cost_ratio_benchmark_times_every_model_against_the_basic_vae(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import cost_ratios

    ratios = cost_ratios.main(["--quick", "--write", "--results-dir", str(tmp_path)])
    assert set(ratios) == set(cost_ratios.MODELS)
    assert ratios["Basic_VAE"] == {"epoch": 1.0, "nll": 1.0}
    assert all(r["epoch"] > 0 and r["nll"] > 0 for r in ratios.values())
    written = json.loads((tmp_path / "cost_ratios.json").read_text())
    assert written == {name.lower(): r for name, r in ratios.items()}, "keyed by the results names"


def test_cost_ratio_benchmark_times_a_subset_and_keeps_the_other_ratios(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import cost_ratios

    (tmp_path / "cost_ratios.json").write_text(json.dumps({"iwae": {"epoch": 9.0, "nll": 9.0}, "old": {}}))
    ratios = cost_ratios.main(["--quick", "--models", "Pyro_VAE", "--write", "--results-dir", str(tmp_path)])
    assert set(ratios) == {"Basic_VAE", "Pyro_VAE"}, "Basic_VAE is always timed, as the unit"
    written = json.loads((tmp_path / "cost_ratios.json").read_text())
    assert written["iwae"] == {"epoch": 9.0, "nll": 9.0} and "old" in written, "ratios not timed are kept"
    assert written["pyro_vae"] == ratios["Pyro_VAE"]
    assert not list(tmp_path.glob(".*partial")), "written atomically"


def test_cost_ratio_benchmark_refuses_impossible_counts():
    done = run_benchmark("cost_ratios.py", "--rounds", "0", timeout=60)
    assert done.returncode == 2 and "--rounds" in done.stderr
    done = run_benchmark("cost_ratios.py", "--models", "Nope_VAE", timeout=60)
    assert done.returncode == 2 and "Nope_VAE" in done.stderr


def test_estimator_bias_benchmark_scores_a_trained_model_at_two_k(tmp_path):
    from test_notebooks import small_run

    sys.path.insert(0, str(REPO / "benchmarks"))
    import estimator_bias

    small_run("Basic_VAE.ipynb", tmp_path)  # results/ and checkpoints/ of a small Basic_VAE run
    folders = ["--results-dir", str(tmp_path / "results"), "--checkpoint-dir", str(tmp_path / "checkpoints")]
    measured = estimator_bias.main(["--images", "5", "--k", "20", "200", "--write", *folders])
    assert set(measured) == {"basic_vae"}, "the models without results or checkpoints are skipped"
    basic = measured["basic_vae"]
    assert basic["k"] == [20, 200] and basic["drop"] == pytest.approx(basic["nll"][0] - basic["nll"][1])
    assert (
        basic["committed_nll"] is not None and abs(basic["nll"][0] - basic["committed_nll"]) < 10
    )  # k = 20: noisy
    assert json.loads((tmp_path / "results" / "estimator_bias.json").read_text()) == measured

    # --models measures a subset, and --write keeps the entries of the models not measured.
    path = tmp_path / "results" / "estimator_bias.json"
    path.write_text(json.dumps({**measured, "iwae": {"drop": 0.5}}))
    again = estimator_bias.main(["--quick", "--models", "basic_vae", "--write", *folders])
    assert set(again) == {"basic_vae"} and again["basic_vae"]["k"] == [10, 100]
    assert json.loads(path.read_text()) == {"basic_vae": again["basic_vae"], "iwae": {"drop": 0.5}}
    with pytest.raises(SystemExit):  # an unknown model is refused before anything is scored
        estimator_bias.main(["--quick", "--models", "Nope_VAE", *folders])

    # A checkpoint of another run than the results describe is not scored.
    state = torch.load(tmp_path / "checkpoints" / "basic_vae.pt", weights_only=True)
    state["definition"]["seed"] = 7
    torch.save(state, tmp_path / "checkpoints" / "basic_vae.pt")
    assert estimator_bias.main(["--quick", *folders]) == {}
