"""Run every notebook with its default parameters, then rebuild the README's results table and
figure gallery from results/*.json and images/.

    python run_all.py                        # all notebooks, then the README
    python run_all.py --only MADE.ipynb      # one notebook (repeatable), then the README
    python run_all.py --readme-only          # just rebuild the README tables
    python run_all.py --timings              # how long each committed default run took

Each notebook is executed in place (its committed outputs are replaced by the new run's), one
after another so that every notebook has the whole machine and its timings are honest.
"""

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent
README = REPO / "README.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
GALLERY_BEGIN, GALLERY_END = "<!-- gallery:begin -->", "<!-- gallery:end -->"

# Published numbers to read the measured ones against (negative log-likelihood, nats, on
# binarised MNIST; the papers used other binarisations and far longer training).
REFERENCES = {
    "basic_vae": "86.76 (IWAE paper, Table 1, 1-layer VAE, 3280 epochs)",
    "made": "88.40 one mask, 86.64 mask ensemble (MADE paper, their binarisation)",
    "lagrangian_vae": "not reported as NLL (paper plots mutual information vs. consistency)",
    "conv_vae": "none (a popular write-up's architecture)",
    "autoencoder_vs_vae": "none (the VAE of a 2-D picture, not a contender)",
    "pyro_vae": "86.76 (as Basic VAE: same model)",
}
# Which figure of each notebook the gallery shows.
GALLERY = {
    "basic_vae": ["basic_vae_samples", "basic_vae_reconstructions", "basic_vae_tsne"],
    "made": ["made_samples", "made_nll_vs_masks"],
    "lagrangian_vae": ["lagrangian_vae_constraints", "lagrangian_vae_rate_distortion"],
    "conv_vae": ["conv_vae_epoch_reconstructions", "conv_vae_class_samples"],
    "autoencoder_vs_vae": ["autoencoder_vs_vae_manifolds", "autoencoder_vs_vae_latent_grids"],
    "pyro_vae": ["pyro_vae_digit_reconstructions", "pyro_vae_tsne"],
}


def notebooks() -> list[Path]:
    return sorted(REPO.glob("*.ipynb"))


def run_notebook(path: Path) -> float:
    import papermill

    start = time.time()
    print(f"== {path.name}", flush=True)
    papermill.execute_notebook(str(path), str(path), cwd=str(REPO), kernel_name="python3", progress_bar=False)
    seconds = time.time() - start
    print(f"   done in {seconds / 60:.1f} min", flush=True)
    return seconds


# Minutes each notebook may take with its defaults on a 2-core CPU.
BUDGET_MINUTES = {"Lagrangian_VAE.ipynb": 12}


def timings() -> str:
    """A table of the committed default runs' wall times, read from papermill's metadata."""
    rows = ["notebook                    minutes  budget  device  slowest cell (s)"]
    for path in notebooks():
        nb = json.loads(path.read_text())
        total = nb["metadata"].get("papermill", {}).get("duration")
        if total is None:
            rows.append(f"{path.name:27s} not executed by papermill")
            continue
        durations = [c["metadata"].get("papermill", {}).get("duration") or 0 for c in nb["cells"]]
        slowest = max(range(len(durations)), key=durations.__getitem__)
        name = path.stem.lower()
        result = REPO / "results" / f"{name}.json"
        device = json.loads(result.read_text())["device"] if result.is_file() else "?"
        budget = BUDGET_MINUTES.get(path.name, 10)
        rows.append(
            f"{path.name:27s} {total / 60:7.1f} {budget:7d}  {device:6s}  "
            f"cell {slowest}: {durations[slowest]:.0f}{'  OVER BUDGET' if total > 60 * budget else ''}"
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
        nll = fmt(r["test_nll_nats"])
        if r.get("test_nll_stderr") is not None and r["test_nll_nats"] is not None:
            nll += f" ± {r['test_nll_stderr']:.2f}"
        k = "exact" if r["nll_importance_samples"] == 0 else fmt(r["nll_importance_samples"])
        latent = fmt(r.get("latent_dim")) if r.get("latent_dim") else "none"  # MADE has no latent code
        rows.append(
            f"| {r.get('notebook', path.stem)} | {latent} | {nll} | {k} | {fmt(r['test_elbo_nats'])} "
            f"| {r['epochs']} | {r['train_seconds'] / 60:.1f} min | {r['device']} "
            f"| {REFERENCES.get(path.stem, '')} |"
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
        for path in chosen:
            run_notebook(path)
        print(timings())
    update_readme()
    return 0


if __name__ == "__main__":
    sys.exit(main())
