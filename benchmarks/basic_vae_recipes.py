"""The Basic VAE's recipe frontier: validation NLL reached against wall-clock minutes of training.

Each recipe (batch size, learning rate, width) is trained for a short and a long number of epochs,
each with its own cosine schedule, with the notebook's own model, objective and training loop
(its copyable cells, extracted from Basic_VAE.ipynb, so the benchmark cannot drift from the
lesson). After training it scores the first `--val-images` validation images with the
importance-sampled NLL (k = 1000): recipes are chosen on validation data, never on the test set. It
also times the protocol's test NLL (k = 1000 on 10,000 images) for each width, because a notebook's
budget includes its evaluation. It prints one line per run and writes
results/basic_vae_recipes.json, which Basic_VAE.ipynb draws as its frontier figure.

    python benchmarks/basic_vae_recipes.py            # about 27 minutes on a 2-core CPU
    python benchmarks/basic_vae_recipes.py --quick    # a smoke test: tiny data, a few seconds

Runs already in the output file (same recipe and epochs) are kept and not run again, so adding a
recipe or a number of epochs to RECIPES costs only the new runs.

Run it with the machine to itself: the minutes are the point.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import shared_utils as su  # noqa: E402

# (batch size, learning rate, hidden sizes): epochs for a ~2.5 and a ~6 minute run on 2 CPU cores.
RECIPES = [
    dict(batch_size=128, learning_rate=1e-3, hidden_sizes=[256, 256], epochs=[30, 72]),
    dict(batch_size=256, learning_rate=2e-3, hidden_sizes=[256, 256], epochs=[50, 120]),
    dict(batch_size=512, learning_rate=2e-3, hidden_sizes=[512, 512], epochs=[28, 68, 82]),
]


def train(cells, data_x, recipe, epochs, latent_dim, seed):
    """The notebook's own training loop and ELBO objective with this recipe, validating nothing
    (recipes are scored after training, on validation images the loop never sees)."""
    generator = su.seed_everything(seed)
    model = cells["VAE"](recipe["hidden_sizes"], latent_dim)
    cells["train"](
        model, cells["elbo_objective"], lambda model, x: {}, data_x, None, range(1, epochs + 1),
        recipe["batch_size"], recipe["learning_rate"], generator,
    )  # fmt: skip
    return model.eval()


def test_nll_minutes(cells, recipe, x, k, latent_dim=32, images=100):
    """Minutes the protocol's test NLL (k samples for each of 10,000 images) takes with this
    recipe's network, timed on `images` images and scaled: the cost depends on the width only."""
    model = cells["VAE"](recipe["hidden_sizes"], latent_dim).eval()
    start = time.perf_counter()
    su.importance_sampled_nll(lambda xb, n: cells["log_importance_weights"](model, xb, n), x[:images], k=k)
    return (time.perf_counter() - start) / 60 * 10_000 / images


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--val-images", type=int, default=2000)
    parser.add_argument("--nll-samples", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="tiny data and epochs: checks the script runs")
    parser.add_argument("--out", default=str(REPO / "results" / "basic_vae_recipes.json"))
    args = parser.parse_args()
    train_size = 1000 if args.quick else None
    if args.quick:
        args.val_images, args.nll_samples = 100, 10
    out = Path(args.out)
    su.check_output_dirs(out=out.parent)

    cells = vars(su.load_cells(REPO / "Basic_VAE.ipynb"))
    data = su.load_data("mnist", None, 10000, train_size, 100, "cpu")
    val_x = data.val_x[: args.val_images]  # already the fixed binarised validation set
    done = json.loads(out.read_text())["runs"] if out.is_file() and not args.quick else []
    runs = []
    print(f"{torch.get_num_threads()} threads; validation NLL on {len(val_x)} images, k={args.nll_samples}")
    for recipe in RECIPES:
        nll_minutes = test_nll_minutes(cells, recipe, data.test_x, args.nll_samples)
        print(f"hidden {recipe['hidden_sizes']}: the test NLL takes about {nll_minutes:.1f} min")
        for i, planned in enumerate(recipe["epochs"]):
            epochs = i + 1 if args.quick else planned
            run = {**{k: v for k, v in recipe.items() if k != "epochs"}, "epochs": epochs}
            earlier = [r for r in done if all(r[k] == v for k, v in run.items())]
            if earlier:
                runs.append({**earlier[0], "test_nll_minutes": nll_minutes})
                print(f"kept from {out.name}: {run}")
                continue
            start = time.perf_counter()
            model = train(cells, data.train_x, recipe, epochs, latent_dim=32, seed=0)
            minutes = (time.perf_counter() - start) / 60
            su.seed_everything(0)
            nll = su.importance_sampled_nll(
                lambda xb, n, m=model: cells["log_importance_weights"](m, xb, n), val_x, k=args.nll_samples
            )
            run.update(train_minutes=minutes, test_nll_minutes=nll_minutes)
            run.update(val_nll=nll["mean"], val_nll_stderr=nll["stderr"])
            runs.append(run)
            print(
                f"batch {run['batch_size']:4d}  lr {run['learning_rate']:.0e}  hidden {run['hidden_sizes']}  "
                f"{epochs:4d} epochs  {minutes:5.2f} min  validation NLL {nll['mean']:.2f}",
                flush=True,
            )
    record = dict(
        val_images=len(val_x),
        nll_samples=args.nll_samples,
        threads=torch.get_num_threads(),
        latent_dim=32,
        quick=args.quick,
        runs=runs,
    )
    su.write_json(out, record, indent=1)
    print("wrote", out)


if __name__ == "__main__":
    main()
