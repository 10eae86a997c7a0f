"""Run every notebook with its default parameters, then rebuild the README's results table and
figure gallery from results/*.json and images/.

    python run_all.py                        # all notebooks, then the README
    python run_all.py --only MADE.ipynb      # one notebook (repeatable), then the README
    python run_all.py --readme-only          # just rebuild the README tables
    python run_all.py --timings              # how long each committed default run took
    python run_all.py --only Basic_VAE.ipynb --seeds 0 1 2   # one notebook with several seeds

Each notebook is executed in place (its committed outputs are replaced by the new run's), one
after another so that every notebook has the whole machine and its timings are honest. Volatile
metadata (papermill's timestamps and paths) is stripped afterwards and the run's wall time goes
into results/<name>.json, so a rerun that changes no result changes no committed byte beyond
timings. Runs with other seeds write results/<name>_seed<N>.json (and its .npy files) only.
"""

import argparse
import json
import os
import sys
import tempfile
import time
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
    "pyro_vae": ["pyro_vae_digit_reconstructions", "pyro_vae_tsne"],
    "comparison": ["comparison_paired_differences", "comparison_prior_samples"],
}


def notebooks() -> list[Path]:
    """Every notebook, the comparison last: it reads what the others wrote."""
    return sorted(REPO.glob("*.ipynb"), key=lambda p: (p.stem == "Comparison", p.name))


def results_name(path: Path) -> str:
    return path.stem.lower()


def strip_volatile(path: Path) -> None:
    """Drop papermill's and Jupyter's per-run metadata (timestamps, durations) and this machine's path."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        for key in ("papermill", "execution"):
            cell.metadata.pop(key, None)
    text = nbformat.writes(nb) + "\n"
    path.write_text(text.replace(str(REPO) + os.sep, "").replace(str(REPO), "."))


def record_seconds(name: str, seconds: float, results: Path) -> None:
    """Add the notebook's wall time to its results file (timings live there, not in the notebook)."""
    path = results / f"{name}.json"
    record = json.loads(path.read_text()) if path.is_file() else {"notebook": name}  # the comparison's own
    record["notebook_seconds"] = round(seconds, 1)
    path.write_text(json.dumps(record, indent=2) + "\n")


def run_notebook(path: Path, seed: int | None = None) -> float:
    """Execute a notebook in place (seed None: its defaults), or a copy with another seed whose
    results go to results/<name>_seed<N>.* and whose figures go to a scratch folder."""
    import papermill

    os.environ["VAE_BATCH_RUN"] = "1"  # one progress line per training in the saved outputs
    # A non-interactive backend such as MPLBACKEND=Agg would leave the committed notebooks without
    # their figures: the kernels use Jupyter's inline backend whatever the shell says.
    os.environ.pop("MPLBACKEND", None)
    start = time.time()
    print(f"== {path.name}" + ("" if seed is None else f" (seed {seed})"), flush=True)
    if seed is None:
        papermill.execute_notebook(
            str(path), str(path), cwd=str(REPO), kernel_name="python3", progress_bar=False
        )
        strip_volatile(path)
        record_seconds(results_name(path), time.time() - start, REPO / "results")
    else:
        with tempfile.TemporaryDirectory() as scratch:
            scratch = Path(scratch)
            parameters = {"seed": seed, "images_dir": str(scratch / "images"), "checkpoint_dir": str(scratch)}
            parameters["results_dir"] = str(scratch / "results")
            out = scratch / path.name
            papermill.execute_notebook(
                str(path),
                str(out),
                parameters=parameters,
                cwd=str(REPO),
                kernel_name="python3",
                progress_bar=False,
            )
            name = results_name(path)
            record_seconds(name, time.time() - start, scratch / "results")
            for produced in (scratch / "results").glob(f"{name}*"):
                target = REPO / "results" / produced.name.replace(name, f"{name}_seed{seed}", 1)
                target.write_bytes(produced.read_bytes())
    seconds = time.time() - start
    print(f"   done in {seconds / 60:.1f} min", flush=True)
    return seconds


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


def results_table() -> str:
    rows = [
        "| notebook | latent dim | test NLL (nats) | k | test ELBO (nats) | epochs | train time | device "
        "| published |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for path in sorted((REPO / "results").glob("*.json")):
        r = json.loads(path.read_text())
        if "_seed" in path.stem or "test_nll_nats" not in r:  # other seeds; the comparison's timing
            continue
        published = r.get("published") or {}
        reference = published.get("source", "not in this results file: rerun the notebook")
        if published.get("value") is not None:
            reference = f"{published['value']:.2f} ({reference})"
        nll = fmt(r["test_nll_nats"])
        if r.get("test_nll_stderr") is not None and r["test_nll_nats"] is not None:
            nll += f" ± {r['test_nll_stderr']:.2f}"
        k = "exact" if r["nll_importance_samples"] == 0 else fmt(r["nll_importance_samples"])
        latent = fmt(r.get("latent_dim")) if r.get("latent_dim") else "none"  # MADE has no latent code
        rows.append(
            f"| {r.get('notebook', path.stem)} | {latent} | {nll} | {k} | {fmt(r['test_elbo_nats'])} "
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
        # Fail in seconds, not after the first notebook, when the data cannot be found.
        sys.path.insert(0, str(REPO))
        import shared_utils

        shared_utils.load_split("mnist", "test")
        shared_utils.load_split("mnist", "train")
        if args.seeds and not args.only:
            parser.error("--seeds needs --only NOTEBOOK: say which notebook to run with several seeds")
        for path in chosen:
            for seed in args.seeds or [None]:
                run_notebook(path, seed)
        print(timings())
    if not args.no_readme:
        update_readme()
    return 0


if __name__ == "__main__":
    sys.exit(main())
