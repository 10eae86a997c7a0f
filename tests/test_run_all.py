"""run_all.py --jobs: notebooks side by side, each with its share of the cores, in an order that lets
each read what it needs, the README rebuilt once, failures reported. A fake runner stands in for
papermill, except in the last two tests, which run two tiny notebooks through it."""

import json
import re
import tempfile
import threading
import time

import nbformat
import pytest

import run_all


@pytest.fixture
def fake(monkeypatch):
    """Replace the notebook runner by one that records what ran when, with how many threads, and
    fails the notebooks listed in fake.fail."""
    runs, lock = [], threading.Lock()
    readme = []

    def run_notebook(path, seed=None, threads=None):
        start = time.monotonic()
        time.sleep(0.05 if path.name in fake.fail else 0.2)
        if path.name in fake.fail:
            raise run_all.NotebookFailed(f"papermill exited with 1; executed copy /tmp/x/{path.name}")
        with lock:
            runs.append({"name": path.name, "seed": seed, "threads": threads})
            runs[-1].update(start=start, end=time.monotonic())

    monkeypatch.setattr(run_all, "run_notebook", run_notebook)
    monkeypatch.setattr(run_all, "check_data", lambda: None)
    monkeypatch.setattr(run_all, "cpu_count", lambda: 8)
    monkeypatch.setattr(run_all, "update_readme", lambda: readme.append(1))
    fake.runs, fake.readme, fake.fail = runs, readme, set()
    return fake


def by_name(runs):
    return {r["name"]: r for r in runs}


def overlap(a, b):
    return a["start"] < b["end"] and b["start"] < a["end"]


def test_jobs_2_runs_two_notebooks_side_by_side_with_half_the_cores_each(fake):
    assert run_all.main(["--only", "MADE.ipynb", "--only", "Lagrangian_VAE.ipynb", "--jobs", "2"]) == 0
    made, lagrangian = by_name(fake.runs)["MADE.ipynb"], by_name(fake.runs)["Lagrangian_VAE.ipynb"]
    assert overlap(made, lagrangian)
    assert made["threads"] == lagrangian["threads"] == 4
    assert fake.readme == [1], "the README is rebuilt once, at the end"


def test_jobs_1_runs_one_at_a_time_with_every_core(fake):
    assert run_all.main(["--only", "MADE.ipynb", "--only", "Lagrangian_VAE.ipynb"]) == 0
    made, lagrangian = by_name(fake.runs)["MADE.ipynb"], by_name(fake.runs)["Lagrangian_VAE.ipynb"]
    assert not overlap(made, lagrangian)
    assert made["threads"] is lagrangian["threads"] is None, "no thread setting: torch's default"


def test_readers_wait_for_what_they_read_and_the_comparison_runs_last(fake):
    assert run_all.main(["--jobs", "4"]) == 0
    runs = by_name(fake.runs)
    assert set(runs) == {p.name for p in run_all.notebooks()}
    basic, comparison = runs["Basic_VAE.ipynb"], runs.pop("Comparison.ipynb")
    assert comparison["start"] >= max(r["end"] for r in runs.values())
    for reader in run_all.READS:
        assert runs[reader]["start"] >= basic["end"], f"{reader} started before Basic_VAE finished"
    assert overlap(basic, runs["Lagrangian_VAE.ipynb"]), "a notebook that reads nothing runs alongside"
    assert fake.readme == [1]


def test_seeds_run_side_by_side(fake):
    assert run_all.main(["--only", "Basic_VAE.ipynb", "--seeds", "1", "2", "--jobs", "2", "--no-readme"]) == 0
    one, two = fake.runs
    assert {one["seed"], two["seed"]} == {1, 2} and overlap(one, two)
    assert fake.readme == []


def test_a_failure_is_named_the_running_ones_finish_and_nothing_new_starts(fake, capsys):
    fake.fail = {"Basic_VAE.ipynb"}
    assert run_all.main(["--jobs", "2"]) == 1
    out, err = capsys.readouterr()
    assert "!! Basic_VAE.ipynb FAILED: papermill exited with 1; executed copy /tmp/x/Basic_VAE.ipynb" in out
    assert "FAILED: Basic_VAE.ipynb" in err and "Comparison.ipynb" in err.split("not started:")[1]
    # The first two that can start are Basic_VAE and Lagrangian_VAE (the others before it read
    # Basic_VAE's outputs): Lagrangian_VAE finishes, nothing else starts.
    assert [r["name"] for r in fake.runs] == ["Lagrangian_VAE.ipynb"]
    assert fake.readme == [], "the README is not rebuilt from a failed run"


@pytest.mark.parametrize("jobs", ["0", "-1", "two"])
def test_jobs_must_be_a_positive_whole_number(fake, capsys, jobs):
    with pytest.raises(SystemExit) as exit:
        run_all.main(["--jobs", jobs])
    assert exit.value.code == 2 and "--jobs" in capsys.readouterr().err
    assert fake.runs == []


def quoted_names(code: str, names: set[str]) -> set[str]:
    """The results names in quotes ("basic_vae", "basic_vae.pt", "basic_vae_test_nll.npy", ...), not
    the keys every results file has ("inpainting_nll_nats", "inpainting_images": not Inpainting's)."""
    return {n for n in names if re.search(rf"[\"']{n}([\"'.]|_(?!nll_nats|images))", code)}


def test_reads_lists_every_notebook_that_reads_another_ones_outputs():
    paths = {run_all.results_name(p): p for p in run_all.notebooks() if p.stem != "Comparison"}
    for name, path in paths.items():
        cells = json.loads(path.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        read = {paths[n].name for n in quoted_names(code, set(paths) - {name})}
        assert read == run_all.READS.get(path.name, set()), f"{path.name} reads {read}: update run_all.READS"


# Tiny notebooks through papermill, in a scratch folder laid out as run_all expects.


def tiny_notebook(folder, name, code):
    nb = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell('results_dir = "results"\nseed = 0')
    parameters.metadata["tags"] = ["parameters"]
    nb.cells = [parameters, nbformat.v4.new_code_cell(code)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / name)


REPORT = """import json, os, time, torch
start = time.time()
time.sleep(3)
os.makedirs(results_dir, exist_ok=True)  # as the notebooks do (su.check_output_dirs)
record = dict(threads=torch.get_num_threads(), start=start, end=time.time(), seed=seed)
json.dump(dict(record, batch=os.environ["VAE_BATCH_RUN"]), open(f"{results_dir}/NAME.json", "w"))
print("ran in", os.getcwd())
"""


@pytest.fixture
def tiny_repo(tmp_path, monkeypatch):
    (tmp_path / "results").mkdir()
    (tmp_path / "scratch").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "scratch"))  # the runs' scratch folders
    monkeypatch.setattr(run_all, "REPO", tmp_path)
    monkeypatch.setattr(run_all, "check_data", lambda: None)
    for name in ("a", "b"):
        tiny_notebook(tmp_path, f"{name}.ipynb", REPORT.replace("NAME", name))
    return tmp_path


def test_two_tiny_notebooks_through_papermill_side_by_side(tiny_repo):
    assert run_all.main(["--jobs", "2", "--no-readme"]) == 0
    a, b = (json.loads((tiny_repo / "results" / f"{n}.json").read_text()) for n in ("a", "b"))
    assert a["threads"] == b["threads"] == max(1, run_all.cpu_count() // 2), "the kernel got its share"
    assert overlap(a, b) and a["batch"] == "1"
    assert a["notebook_seconds"] > 0
    nb = json.loads((tiny_repo / "a.ipynb").read_text())
    assert "papermill" not in nb["metadata"], "executed, stripped and put in place"
    output = "".join(nb["cells"][1]["outputs"][0]["text"])
    assert output == "ran in .\n", "run in the repository, whose path is stripped"
    assert not list(tiny_repo.glob("*.partial")) and not list((tiny_repo / "scratch").iterdir())


def test_seeds_through_papermill_leave_the_committed_notebook_alone(tiny_repo):
    committed = (tiny_repo / "a.ipynb").read_bytes()
    assert run_all.main(["--only", "a.ipynb", "--seeds", "1", "2", "--jobs", "2", "--no-readme"]) == 0
    one, two = (json.loads((tiny_repo / "results" / f"a_seed{n}.json").read_text()) for n in (1, 2))
    assert (one["seed"], two["seed"]) == (1, 2) and overlap(one, two)
    assert (tiny_repo / "a.ipynb").read_bytes() == committed


def test_a_failing_notebook_leaves_the_committed_one_as_it_was(tiny_repo, capsys):
    tiny_notebook(tiny_repo, "bad.ipynb", "raise ValueError('this notebook is broken')")
    committed = (tiny_repo / "bad.ipynb").read_bytes()
    assert run_all.main(["--only", "bad.ipynb", "--only", "a.ipynb", "--no-readme"]) == 1
    captured = capsys.readouterr()
    assert "!! bad.ipynb FAILED" in captured.out and "this notebook is broken" in captured.out
    executed = re.search(r"executed copy (\S+), log (\S+):", captured.out)
    assert executed and "this notebook is broken" in open(executed[1]).read() + open(executed[2]).read()
    assert (tiny_repo / "bad.ipynb").read_bytes() == committed
    assert "not started: a.ipynb" in captured.err, "one at a time, nothing starts after a failure"


def test_the_readme_table_gives_the_spread_over_seeds(tmp_path):
    for name, nll in (("a", 90.0), ("a_seed1", 91.0), ("a_seed2", 92.0), ("b", 88.0)):
        (tmp_path / f"{name}.json").write_text(json.dumps({"test_nll_nats": nll}))
    assert run_all.over_seeds(tmp_path / "a.json") == "91.00 ± 1.00 (3)"
    assert run_all.over_seeds(tmp_path / "b.json") == "one seed"
