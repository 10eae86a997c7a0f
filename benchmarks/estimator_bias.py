"""How much the protocol's k = 1000 overstates each model's NLL: the importance-sampled estimate at
k = 1000 and at k = 10,000 on the same first test images, from the checkpoints `make all` left.

-log mean_k w_k is an upper bound on -log p(x) in expectation, and it falls towards -log p(x) as k
grows; with an effective sample size of a few draws out of 1000, the gap at k = 1000 can be as large
as some of the differences the collection reports. This script measures the drop from k = 1000 to
k = 10,000 (a lower bound on the bias that remains at k = 1000) for every latent-variable model,
paired over the same images; with `--write` it writes `results/estimator_bias.json` (keeping the
entries of models not measured), which `Comparison.ipynb` puts on its league table. MADE's
likelihood is exact and has no such bias.

Each model is built from its notebook's copyable cells with the settings its checkpoint records
and loaded from `checkpoints/`; a model whose checkpoint is missing, or was trained with another
seed or length than its committed results, is skipped with a note saying which notebook to run.

    python benchmarks/estimator_bias.py --write     # about 5 minutes on a 2-core CPU (make bias)
    python benchmarks/estimator_bias.py --write --models semisupervised_vae   # one model, the rest kept
    python benchmarks/estimator_bias.py --quick     # a smoke test on 2 images, k = 10 and 100
"""

import argparse
import json
import sys
from functools import partial
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import shared_utils as su  # noqa: E402

VARIANT_FILES = {  # Hierarchical_VAE's variants and the checkpoints its training cell saves them to
    "bottom-up": "hierarchical_vae_bottom_up.pt",
    "bottom-up, warm-up + free bits": "hierarchical_vae_bottom_up_scheduled.pt",
    "top-down, warm-up + free bits": "hierarchical_vae_top_down_scheduled.pt",
}


def vae(c, d):
    return c["VAE"](d["hidden_sizes"], d["latent_dim"])


# results name: (notebook, checkpoint file given the results, build(cells, definition), state-dict prefix)
MODELS = {
    "basic_vae": ("Basic_VAE", lambda r: "basic_vae.pt", vae, ""),
    "iwae": ("IWAE", lambda r: "iwae.pt", vae, ""),
    "iaf_vae": (
        "IAF_VAE",
        lambda r: "iaf_vae.pt",
        lambda c, d: c["IAFVAE"](
            d["hidden_sizes"], d["latent_dim"], d["flow_steps"], d["flow_hidden_size"], d["context_size"]
        ),
        "",
    ),
    "vampprior_vae": (
        "VampPrior_VAE",
        lambda r: "vampprior_vae.pt",
        lambda c, d: c["VampPriorVAE"](d["hidden_sizes"], d["latent_dim"], d["n_pseudo_inputs"]),
        "",
    ),
    "conv_vae": (
        "Conv_VAE",
        lambda r: "conv_vae.pt",
        lambda c, d: c["ConvVAE"](
            d["encoder_channels"], d["decoder_channels"], d["fc_hidden"], d["latent_dim"], d["dropout"]
        ),
        "",
    ),
    "pyro_vae": (
        "Pyro_VAE",
        lambda r: "pyro_vae.pt",
        lambda c, d: c["PyroVAE"](d["hidden_sizes"], d["latent_dim"]),
        "",
    ),
    "lagrangian_vae": ("Lagrangian_VAE", lambda r: "lagrangian_vae.pt", vae, ""),
    "autoencoder_vs_vae": ("Autoencoder_vs_VAE", lambda r: "autoencoder_vs_vae.pt", vae, "vae."),
    "beta_vae": ("Beta_VAE", lambda r: f"beta_vae_beta{r['beta']:g}.pt", vae, ""),
    "hierarchical_vae": (
        "Hierarchical_VAE",
        lambda r: VARIANT_FILES[r["variant"]],
        lambda c, d: c["HierarchicalVAE"](
            "top_down" if d["variant"].startswith("top-down") else "bottom_up",
            d["hidden_sizes"],
            d["latent_sizes"],
        ),
        "",
    ),
    "semisupervised_vae": (  # M2 on pixels, the first label draw: the model its results describe
        "SemiSupervised_VAE",
        lambda r: "semisupervised_vae_draw0.pt",
        lambda c, d: c["M2"](784, d["hidden_sizes"], d["latent_dim"]),
        "",
    ),
}


def load_model(name, results_dir: Path, checkpoint_dir: Path):
    """(model, its log-weight function) from the checkpoint behind results/<name>.json, or a note."""
    notebook, checkpoint, build, prefix = MODELS[name]
    results_path = results_dir / f"{name}.json"
    if not results_path.is_file():
        return None, f"{results_path} is missing: run {notebook}.ipynb"
    results = json.loads(results_path.read_text())
    path = checkpoint_dir / checkpoint(results)
    if not path.is_file():
        return None, f"{path} is missing: run {notebook}.ipynb (make all keeps its checkpoints)"
    state = su.load_checkpoint(path)
    definition = state["definition"]
    if definition["seed"] != results["seed"] or definition.get("epochs") != results["epochs"]:
        return None, f"{path} is not the model behind {results_path}: run {notebook}.ipynb again"
    cells = vars(su.load_cells(REPO / f"{notebook}.ipynb"))
    model = build(cells, definition)
    weights = {k[len(prefix) :]: v for k, v in state["model"].items() if k.startswith(prefix)}
    model.load_state_dict(weights)
    log_weights = (
        cells.get("log_importance_weights") or su.load_cells(REPO / "Basic_VAE.ipynb").log_importance_weights
    )
    return model.eval(), partial(log_weights, model)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100, help="the first test images scored")
    parser.add_argument(
        "--k", type=int, nargs=2, default=[1000, 10000], help="the protocol's k and a larger one"
    )
    parser.add_argument("--results-dir", default=str(REPO / "results"))
    parser.add_argument("--checkpoint-dir", default=str(REPO / "checkpoints"))
    parser.add_argument("--quick", action="store_true", help="a smoke test: 2 images, k = 10 and 100")
    parser.add_argument("--write", action="store_true", help="write results/estimator_bias.json")
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="results names (default: all)")
    args = parser.parse_args(argv)
    unknown = set(args.models) - set(MODELS)
    if unknown:
        parser.error(f"--models: no estimate for {sorted(unknown)}; choose from {sorted(MODELS)}")
    if args.quick:
        args.images, args.k = 2, [10, 100]
    if args.images < 2 or not 1 <= args.k[0] < args.k[1]:
        parser.error("--images must be at least 2, and --k two increasing numbers of samples")

    torch.backends.mkldnn.enabled = False  # Conv_VAE's NLL kernels (its notebook says why)
    test_x = su.load_data(test_size=args.images, train_size=1, val_size=1).test_x
    measured = {}
    for name in args.models:
        model, log_weights = load_model(name, Path(args.results_dir), Path(args.checkpoint_dir))
        if model is None:
            print(f"{name}: skipped, {log_weights}")
            continue
        nll = {}
        for k in args.k:
            su.seed_everything(0)
            nll[k] = su.importance_sampled_nll(log_weights, test_x, k)["per_image"]
        drop = su.paired_difference(nll[args.k[0]], nll[args.k[1]])
        committed = su.load_test_nll(name, args.results_dir, args.images)  # the notebook's own draws
        measured[name] = {
            "images": args.images,
            "k": args.k,
            "nll": [nll[k].mean().item() for k in args.k],
            "drop": drop["mean"],
            "drop_stderr": drop["stderr"],
            "committed_nll": None if committed is None else float(committed.mean()),
        }
        low, high = measured[name]["nll"]
        print(f"{name:20} NLL at k = {args.k[0]}: {low:7.2f} (the notebook's run: "
              f"{measured[name]['committed_nll'] or float('nan'):.2f}), at k = {args.k[1]}: {high:7.2f}; "
              f"drop {drop['mean']:.2f} ± {drop['stderr']:.2f} nats")  # fmt: skip
    if args.write:  # models not measured this time keep their entries
        path = Path(args.results_dir) / "estimator_bias.json"
        written = json.loads(path.read_text()) if path.is_file() else {}
        su.write_json(path, {**written, **measured})
        print("wrote", path)
    return measured


if __name__ == "__main__":
    main()
