"""Run every notebook with its default parameters, then rebuild the README's results table and
figure gallery from results/*.json and images/.

    python run_all.py                        # all notebooks, then the README
    python run_all.py --jobs 4               # four notebooks side by side, each on a quarter of the cores
    python run_all.py --only MADE.ipynb      # one notebook (repeatable), then the README
    python run_all.py --readme-only          # just rebuild the README tables
    python run_all.py --timings              # how long each committed default run took
    python run_all.py --only Basic_VAE.ipynb --seeds 0 1 2   # one notebook with several seeds

Each notebook is executed by papermill into a scratch copy, which replaces the committed notebook
once the run has succeeded (a failed run leaves the committed one as it was and says where its
copy and log are). By default they run one after another so that every notebook has the whole
machine and its timings are honest; --jobs N runs N side by side, each with its share of the
cores, for a faster run on a machine with 8 or more cores whose timings are those of a shared
machine. A notebook that reads another's outputs starts after that one, and the comparison last.
Volatile metadata (papermill's timestamps and paths) is stripped and the run's wall time goes
into results/<name>.json, so a rerun that changes no result changes no committed byte beyond
timings. Runs with other seeds write results/<name>_seed<N>.json (and its .npy files) only.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

REPO = Path(__file__).resolve().parent
README = REPO / "README.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
GALLERY_BEGIN, GALLERY_END = "<!-- gallery:begin -->", "<!-- gallery:end -->"

# Which figure of each notebook the gallery shows.
GALLERY = {
    "basic_vae": ["basic_vae_samples", "basic_vae_recipe_frontier", "basic_vae_tsne"],
    "iwae": ["iwae_bounds", "iwae_gradient_snr"],
    "iaf_vae": ["iaf_vae_posterior_samples", "iaf_vae_gap_and_paired_difference"],
    "vampprior_vae": ["vampprior_vae_pseudo_inputs", "vampprior_vae_vs_basic_vae_samples"],
    "made": ["made_samples", "made_nll_vs_masks"],
    "lagrangian_vae": ["lagrangian_vae_constraints", "lagrangian_vae_rate_distortion"],
    "conv_vae": ["conv_vae_epoch_reconstructions", "conv_vae_class_samples"],
    "autoencoder_vs_vae": ["autoencoder_vs_vae_manifolds", "autoencoder_vs_vae_latent_grids"],
    "beta_vae": ["beta_vae_rate_distortion", "beta_vae_codes_over_prior"],
    "hierarchical_vae": ["hierarchical_vae_rate_per_dimension", "hierarchical_vae_samples_by_top_code"],
    "vq_vae": ["vq_vae_codebook_usage", "vq_vae_samples"],
    "pyro_vae": ["pyro_vae_digit_reconstructions", "pyro_vae_tsne"],
    "semisupervised_vae": ["semisupervised_vae_analogies", "semisupervised_vae_samples"],
    "inpainting": ["inpainting_completions", "inpainting_chains"],
    "comparison": ["comparison_paired_differences", "comparison_rate_distortion", "comparison_prior_samples"],
}


def notebooks() -> list[Path]:
    """Every notebook, the comparison last: it reads what the others wrote."""
    return sorted(REPO.glob("*.ipynb"), key=lambda p: (p.stem == "Comparison", p.name))


def results_name(path: Path) -> str:
    return path.stem.lower()


def label(path: Path, seed: int | None) -> str:
    return path.name + ("" if seed is None else f" (seed {seed})")


# The notebooks that read another one's outputs (results/basic_vae*, checkpoints/basic_vae.pt; the
# tests grep the notebooks for these names). They start once that one has finished, so that they
# read this run's outputs, as in a run one at a time.
READS = {
    name: {"Basic_VAE.ipynb"}
    for name in (
        "Autoencoder_vs_VAE.ipynb",
        "Conv_VAE.ipynb",
        "Hierarchical_VAE.ipynb",
        "IAF_VAE.ipynb",
        "IWAE.ipynb",
        "MADE.ipynb",  # the Basic VAE's inpainting scores, printed beside its own
        "Pyro_VAE.ipynb",
        "SemiSupervised_VAE.ipynb",
        "VampPrior_VAE.ipynb",
        "VQ_VAE.ipynb",
    )
}
READS["Beta_VAE.ipynb"] = {"Basic_VAE.ipynb", "Lagrangian_VAE.ipynb"}  # its reference points
READS["Inpainting.ipynb"] = {"Basic_VAE.ipynb", "MADE.ipynb"}  # their checkpoints


def waits_for(path: Path, chosen: set[Path]) -> set[Path]:
    """The notebooks of this run that must finish before `path` starts: the comparison reads every
    results file, so it waits for all the others."""
    if path.stem == "Comparison":
        return chosen - {path}
    return {p for p in chosen if p.name in READS.get(path.name, ())}


def cpu_count() -> int:
    """The cores this process may use (fewer than the machine's in a container or under taskset)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def strip_volatile(path: Path, target: Path | None = None) -> None:
    """Drop papermill's and Jupyter's per-run metadata (timestamps, durations) and this machine's path,
    writing the result to `target` (default: in place) through a temporary file and a rename, so
    that an interrupted run never leaves `target` half-written."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        for key in ("papermill", "execution"):
            cell.metadata.pop(key, None)
    text = nbformat.writes(nb) + "\n"
    target = target or path
    partial = target.with_name(target.name + ".partial")  # *.partial is in .gitignore
    partial.write_text(text.replace(str(REPO) + os.sep, "").replace(str(REPO), "."))
    os.replace(partial, target)


def record_seconds(name: str, seconds: float, results: Path) -> None:
    """Add the notebook's wall time to its results file (timings live there, not in the notebook)."""
    path = results / f"{name}.json"
    record = json.loads(path.read_text()) if path.is_file() else {"notebook": name}  # the comparison's own
    record["notebook_seconds"] = round(seconds, 1)
    path.write_text(json.dumps(record, indent=2) + "\n")


class NotebookFailed(Exception):
    """A notebook's run failed; the message says where its executed copy and log are."""


def run_notebook(path: Path, seed: int | None = None, threads: int | None = None) -> float:
    """Execute a notebook with its defaults (seed None), replacing the committed notebook, or with
    another seed, whose results go to results/<name>_seed<N>.* and whose figures, checkpoint and
    notebook go to a scratch folder. `threads`: the kernel's torch threads (None: all the cores).

    Papermill runs in its own process, writing the executed notebook and a log (cell outputs
    included) into a scratch folder that is removed once the run has succeeded. Its own process
    gives each kernel its own environment, which side-by-side runs need."""
    work = Path(tempfile.mkdtemp(prefix=f"run_all-{path.stem}-"))
    executed, log = work / path.name, work / f"{path.stem}.log"
    command = [sys.executable, "-m", "papermill", str(path), str(executed), "--cwd", str(REPO)]
    command += ["--kernel", "python3", "--no-progress-bar", "--log-output"]
    if seed is not None:
        parameters = {"seed": seed, "images_dir": str(work / "images"), "checkpoint_dir": str(work)}
        parameters["results_dir"] = str(work / "results")
        command += ["--parameters_yaml", json.dumps(parameters)]  # JSON is YAML, and keeps the types
    env = dict(os.environ, VAE_BATCH_RUN="1")  # one progress line per training in the saved outputs
    # A non-interactive backend such as MPLBACKEND=Agg would leave the committed notebooks without
    # their figures: the kernels use Jupyter's inline backend whatever the shell says.
    env.pop("MPLBACKEND", None)
    # glibc gives each thread its own heap; after training, the importance-sampled NLL's millions of
    # short-lived tensors freed across those heaps grew Hierarchical_VAE's kernel past 24 GiB of a
    # 24 GiB machine. Two heaps keep it under 1 GiB; allocation does not change any number.
    env.setdefault("MALLOC_ARENA_MAX", "2")
    if threads is not None:  # torch reads these when the kernel imports it; the notebooks set none
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    share = "" if threads is None else f", torch threads: {threads}"
    print(f"== {label(path, seed)}{share} (log: {log})", flush=True)
    start = time.time()
    with open(log, "w") as out:
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env).returncode
    if code != 0:
        last = "\n".join("     " + line for line in log.read_text().splitlines()[-10:])
        raise NotebookFailed(f"papermill exited with {code}; executed copy {executed}, log {log}:\n{last}")
    name = results_name(path)
    if seed is None:
        strip_volatile(executed, target=path)
        record_seconds(name, time.time() - start, REPO / "results")
    else:
        record_seconds(name, time.time() - start, work / "results")
        for produced in (work / "results").glob(f"{name}*"):
            target = REPO / "results" / produced.name.replace(name, f"{name}_seed{seed}", 1)
            target.write_bytes(produced.read_bytes())
    shutil.rmtree(work)
    seconds = time.time() - start
    print(f"   {label(path, seed)} done in {seconds / 60:.1f} min", flush=True)
    return seconds


def run_tasks(tasks: list[tuple[Path, int | None]], jobs: int = 1) -> tuple[list[str], list[str]]:
    """Run (notebook, seed) tasks `jobs` at a time, each once the notebooks it reads have finished
    (waits_for), in the order given otherwise. With jobs > 1 each kernel gets its share of the
    cores. After a failure nothing new starts; the running ones finish. Returns the failed and the
    never started, as labels."""
    threads = None if jobs == 1 else max(1, cpu_count() // jobs)
    chosen = {path for path, _ in tasks}
    waiting, running, failed = list(tasks), {}, []
    # Threads are enough: each notebook runs in its own papermill process (run_notebook).
    with ThreadPoolExecutor(jobs) as pool:
        while running or (waiting and not failed):
            unfinished = {path for path, _ in waiting + list(running.values())}
            for task in list(waiting):
                if not failed and len(running) < jobs and not waits_for(task[0], chosen) & unfinished:
                    waiting.remove(task)
                    running[pool.submit(run_notebook, *task, threads)] = task
            assert running, f"READS has a cycle: nothing can start among {waiting}"
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                path, seed = running.pop(future)
                try:
                    future.result()
                except NotebookFailed as err:
                    failed.append(label(path, seed))
                    print(f"!! {label(path, seed)} FAILED: {err}", flush=True)
    return failed, [label(path, seed) for path, seed in waiting]


def check_data() -> None:
    """Fail in seconds, not after the first notebook, when the data cannot be found."""
    sys.path.insert(0, str(REPO))
    import shared_utils

    shared_utils.load_split("mnist", "test")
    shared_utils.load_split("mnist", "train")


# Minutes each notebook may take with its defaults on a 2-core CPU.
BUDGET_MINUTES = {"Lagrangian_VAE.ipynb": 12, "Comparison.ipynb": 2}


def timings() -> str:
    """A table of the committed default runs' times, read from results/<name>.json."""
    rows = ["notebook                    minutes  budget  train (s)  device"]
    for path in notebooks():
        result = REPO / "results" / f"{results_name(path)}.json"
        record = json.loads(result.read_text()) if result.is_file() else {}
        total = record.get("notebook_seconds")
        if total is None:
            rows.append(f"{path.name:27s} no timing in results/ (run it with run_all.py)")
            continue
        budget = BUDGET_MINUTES.get(path.name, 10)
        over = "  OVER BUDGET" if total > 60 * budget else ""
        train = record.get("train_seconds")
        train = f"{train:9.0f}" if isinstance(train, (int, float)) else "      n/a"
        rows.append(
            f"{path.name:27s} {total / 60:7.1f} {budget:7d}  {train}  {record.get('device', '?')}{over}"
        )
    return "\n".join(rows)


def fmt(value, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def over_seeds(path: Path) -> str:
    """Mean and standard deviation of the test NLL over the default run and results/<name>_seed<N>.json,
    with the number of seeds; "one seed" when there are no others."""
    runs = [path, *sorted(path.parent.glob(f"{path.stem}_seed*.json"))]
    values = [json.loads(p.read_text())["test_nll_nats"] for p in runs]
    if len(values) < 2:
        return "one seed"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f} ({len(values)})"


def results_table() -> str:
    rows = [
        "| notebook | latent dim | test NLL (nats) | over seeds | k | test ELBO (nats) | epochs | train time "
        "| device | published |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for path in sorted((REPO / "results").glob("*.json")):
        r = json.loads(path.read_text())
        if "_seed" in path.stem or r.get("test_nll_nats") is None:  # other seeds; timing; no model of its own
            continue
        published = r.get("published") or {}
        reference = published.get("source", "not in this results file: rerun the notebook")
        if published.get("value") is not None:
            reference = f"{published['value']:.2f} ({reference})"
        nll = fmt(r["test_nll_nats"])
        if r.get("test_nll_stderr") is not None and r["test_nll_nats"] is not None:
            nll += f" ± {r['test_nll_stderr']:.2f}"
        k = "exact" if r["nll_importance_samples"] == 0 else fmt(r["nll_importance_samples"])
        k = "bound" if r.get("nll_is_upper_bound") else k  # VQ_VAE: an exact upper bound, not the NLL
        sizes = r.get("latent_dim") or r["parameters"].get("latent_sizes")  # two layers: "100 + 50"
        sizes = sizes or (r["parameters"].get("n_codes") and f"{r['parameters']['n_codes']} symbols")
        latent = (" + ".join(map(fmt, sizes)) if isinstance(sizes, list) else fmt(sizes)) if sizes else "none"
        rows.append(
            f"| {r.get('notebook', path.stem)} | {latent} | {nll} | {over_seeds(path)} | {k} "
            f"| {fmt(r['test_elbo_nats'])} "
            f"| {r['epochs']} | {r['train_seconds'] / 60:.1f} min | {r['device']} "
            f"| {reference} |"
        )
    return "\n".join(rows)


def gallery() -> str:
    lines = []
    for name, figures in GALLERY.items():
        present = [f for f in figures if (REPO / "images" / f"{f}.png").is_file()]
        if present:
            lines.append(f"**{name}**\n")
            images = [f'<img src="images/{f}.png" alt="{f}" height="220">' for f in present]
            lines.append(" ".join(images) + "\n")
    return "\n".join(lines)


def replace_between(text: str, begin: str, end: str, body: str) -> str:
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{body}\n{end}{tail}"


def update_readme() -> None:
    text = README.read_text()
    text = replace_between(text, BEGIN, END, results_table())
    text = replace_between(text, GALLERY_BEGIN, GALLERY_END, gallery())
    README.write_text(text)
    print(f"updated {README.name}")


def jobs_count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of notebooks, 1 or more")
    return int(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", action="append", help="run only this notebook (repeatable)")
    parser.add_argument("--readme-only", action="store_true", help="only rebuild the README tables")
    parser.add_argument("--timings", action="store_true", help="print the committed runs' wall times")
    parser.add_argument("--no-readme", action="store_true", help="do not rebuild the README tables")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        help="run with these seeds into results/<name>_seed<N>.* (with --only)",
    )
    parser.add_argument(
        "--jobs",
        type=jobs_count,
        default=1,
        metavar="N",
        help="run N notebooks side by side, each with 1/N of the cores (default 1: one at a time)",
    )
    args = parser.parse_args(argv)
    if args.timings:
        print(timings())
        return 0
    if not args.readme_only:
        chosen = notebooks()
        if args.only:
            unknown = [n for n in args.only if not (REPO / n).is_file()]
            if unknown:
                parser.error(f"no such notebook: {unknown}; choose from {[p.name for p in chosen]}")
            chosen = [REPO / n for n in args.only]
        if args.seeds and not args.only:
            parser.error("--seeds needs --only NOTEBOOK: say which notebook to run with several seeds")
        check_data()
        failed, not_started = run_tasks([(p, s) for p in chosen for s in args.seeds or [None]], args.jobs)
        print(timings())
        if failed:
            print(
                f"FAILED: {', '.join(failed)} (the messages above say where their logs are)", file=sys.stderr
            )
            if not_started:
                print(f"not started: {', '.join(not_started)}", file=sys.stderr)
            print("the README tables were not rebuilt", file=sys.stderr)
            return 1
    if not args.no_readme:
        update_readme()
    return 0


if __name__ == "__main__":
    sys.exit(main())
