"""What an epoch and the test NLL of each model cost, as ratios to the Basic VAE's, measured back to
back in one process.

"The same compute" for two models is a claim about a cost ratio. Wall clocks of runs made at
different hours cannot carry it (the Basic VAE's identical run took 222, 287 and 445 s of training
on this 2-core machine), so this benchmark times each model's training step and NLL evaluation in
turn, in rounds, and keeps each model's best round: a burst of other work hurts every model alike.

Every model is built from its notebook's own copyable cells with the defaults of its parameters cell
(so the benchmark cannot drift from the lessons), untrained: the cost depends on the shapes. A
training step is a batch of `batch_size` random binary images through the objective, backward and
Adam (for Pyro_VAE, SVI's step, as its notebook trains; for M2, an unlabelled batch plus the
labelled images); the NLL is the protocol's importance-sampled estimate, k = 1000 per image. It
prints, per model, the seconds of one epoch (50,000 images) and of the test NLL (10,000 images),
each scaled from what was timed, the ratios to the Basic VAE, and the epochs that match the Basic
VAE's training budget; with `--write` it writes the ratios to `results/cost_ratios.json`, which the
Comparison's league table shows.

    python benchmarks/cost_ratios.py --write    # about 2 minutes on a 2-core CPU (make costs)
    python benchmarks/cost_ratios.py --models Pyro_VAE --write  # time one (and Basic), keep the rest
    python benchmarks/cost_ratios.py --quick    # a smoke test: a few seconds

Run it with the machine to itself.
"""

import argparse
import json
import sys
import time
from functools import partial
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import shared_utils as su  # noqa: E402


def adam_steps(objective):
    """A training step for a hand-written objective(model, x) -> (loss, terms): backward and Adam."""

    def make_step(cells, defaults, model):
        loss_of = objective(cells, defaults)
        optimizer = torch.optim.Adam(model.parameters(), lr=defaults["learning_rate"])

        def step(x):
            loss, _ = loss_of(model, x)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        return step

    return make_step


def svi_step(cells, defaults, model):
    """Pyro_VAE's training step: SVI's step on the notebook's ELBO estimator, with Pyro's Adam."""
    import pyro

    pyro.clear_param_store()
    loss = getattr(pyro.infer, defaults["elbo_estimator"])()
    optimizer = pyro.optim.Adam({"lr": defaults["learning_rate"]})
    return pyro.infer.SVI(model.model, model.guide, optimizer, loss=loss).step


def pyro_log_weights(cells):
    """Pyro_VAE's log-weights with Pyro's argument checks off, as its notebook evaluates them."""
    import pyro

    def log_weights(model, x, k):
        with pyro.validation_enabled(False):
            return cells["log_importance_weights"](model, x, k)

    return log_weights


def m2_objective(cells, defaults, n_train=50_000):
    """SemiSupervised_VAE's M2 objective as its notebook trains it: each step an unlabelled batch
    plus all `n_labels` labelled images (random ones here: the cost depends on the shapes)."""
    n_labels = defaults["n_labels"]
    labels = torch.full((n_train,), -1)
    labels[torch.randperm(n_train)[:n_labels]] = torch.arange(n_labels) % 10
    images = torch.rand(1, 784).expand(n_train, -1)  # only the labelled rows are ever read
    generator = torch.Generator().manual_seed(0)
    return cells["m2_objective"](images, labels, defaults["alpha_over_n"], generator)


# notebook: (build the model from (cells, defaults), its training step from (cells, defaults, model),
# its log-weights from cells)
MODELS = {
    "Basic_VAE": (
        lambda c, p: c["VAE"](p["hidden_sizes"], p["latent_dim"]),
        adam_steps(lambda c, p: partial(c["elbo_objective"], kl_form=p["kl_form"])),
        lambda c: c["log_importance_weights"],
    ),
    "IWAE": (
        lambda c, p: c["VAE"](p["hidden_sizes"], p["latent_dim"]),
        adam_steps(
            lambda c, p: partial(c["iwae_objective"], k=p["train_samples"], estimator=p["gradient_estimator"])
        ),
        lambda c: c["log_importance_weights"],
    ),
    "IAF_VAE": (
        lambda c, p: c["IAFVAE"](
            p["hidden_sizes"], p["latent_dim"], p["flow_steps"], p["flow_hidden_size"], p["context_size"]
        ),
        adam_steps(lambda c, p: c["elbo_objective"]),
        lambda c: c["log_importance_weights"],
    ),
    "VampPrior_VAE": (
        lambda c, p: c["VampPriorVAE"](p["hidden_sizes"], p["latent_dim"], p["n_pseudo_inputs"]),
        adam_steps(lambda c, p: c["elbo_objective"]),
        lambda c: c["log_importance_weights"],
    ),
    "Hierarchical_VAE": (
        lambda c, p: c["HierarchicalVAE"]("top_down", p["hidden_sizes"], p["latent_sizes"]),
        adam_steps(
            lambda c, p: partial(
                c["hierarchical_objective"], schedule={"kl_weight": 1.0, "free_bits": p["free_bits"]}
            )
        ),
        lambda c: c["log_importance_weights"],
    ),
    "Pyro_VAE": (lambda c, p: c["PyroVAE"](p["hidden_sizes"], p["latent_dim"]), svi_step, pyro_log_weights),
    "SemiSupervised_VAE": (  # M2 on pixels
        lambda c, p: c["M2"](784, p["hidden_sizes"], p["latent_dim"]),
        adam_steps(m2_objective),
        lambda c: c["log_importance_weights"],
    ),
}


def time_training(step, x, batch_size) -> float:
    """Seconds per image of training steps over x."""
    start = time.perf_counter()
    for first in range(0, len(x), batch_size):
        step(x[first : first + batch_size])
    return (time.perf_counter() - start) / len(x)


def time_nll(model, log_weights, x) -> float:
    """Seconds per image of the importance-sampled NLL with k = 1000."""
    model.eval()
    start = time.perf_counter()
    su.importance_sampled_nll(partial(log_weights, model), x, k=1000)
    model.train()
    return (time.perf_counter() - start) / len(x)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-images", type=int, default=5120, help="images of training steps per round")
    parser.add_argument("--nll-images", type=int, default=40, help="test images of the NLL per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a smoke test: tiny counts, one round")
    parser.add_argument(
        "--models", nargs="+", default=list(MODELS), help="notebooks to time (Basic_VAE is always timed)"
    )
    parser.add_argument(
        "--write", action="store_true", help="write the ratios into results/cost_ratios.json (others kept)"
    )
    parser.add_argument("--results-dir", default=str(REPO / "results"))
    args = parser.parse_args(argv)
    if args.quick:
        args.train_images, args.nll_images, args.rounds = 256, 2, 1
    for name in ("train_images", "nll_images", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")

    unknown = set(args.models) - set(MODELS)
    if unknown:
        parser.error(f"--models: no benchmark for {sorted(unknown)}; choose from {sorted(MODELS)}")

    torch.manual_seed(0)
    models = {}
    for name in ["Basic_VAE", *[m for m in MODELS if m in args.models and m != "Basic_VAE"]]:
        build, make_step, log_weights = MODELS[name]
        notebook = REPO / f"{name}.ipynb"
        cells, defaults = vars(su.load_cells(notebook)), su.notebook_defaults(notebook)
        model = build(cells, defaults)
        models[name] = (model, make_step(cells, defaults, model), log_weights(cells), defaults)
    x = torch.rand(max(args.train_images, args.nll_images), 784).bernoulli()
    for model, step, log_weights, defaults in models.values():  # warm-up, untimed: first calls are slow
        time_training(step, x[: 2 * defaults["batch_size"]], defaults["batch_size"])
        time_nll(model, log_weights, x[:1])
    best = {name: [float("inf"), float("inf")] for name in models}
    for _ in range(args.rounds):  # interleaved: every model sees the same state of the machine
        for name, (model, step, log_weights, defaults) in models.items():
            train = time_training(step, x[: args.train_images], defaults["batch_size"])
            nll = time_nll(model, log_weights, x[: args.nll_images])
            best[name] = [min(best[name][0], train), min(best[name][1], nll)]

    basic_train, basic_nll = best["Basic_VAE"]
    basic_epochs = models["Basic_VAE"][3]["epochs"]
    print(f"{torch.get_num_threads()} threads; best of {args.rounds} rounds; "
          f"{args.train_images} training images and {args.nll_images} NLL images per round")  # fmt: skip
    print(f"{'model':18} {'s / epoch':>9} {'ratio':>6} {'NLL min':>8} {'ratio':>6} "
          f"{'epochs at Basic budget':>22} {'default epochs':>14}")  # fmt: skip
    ratios = {}
    for name, (train, nll) in best.items():
        ratios[name] = {"epoch": train / basic_train, "nll": nll / basic_nll}
        matched = basic_epochs * basic_train / train
        print(f"{name:18} {train * 50000:9.2f} {ratios[name]['epoch']:6.2f} {nll * 10000 / 60:8.2f} "
              f"{ratios[name]['nll']:6.2f} {matched:22.0f} {models[name][3]['epochs']:14d}")  # fmt: skip
    if args.write:  # keyed by the results name each notebook writes under; models not timed are kept
        path = Path(args.results_dir) / "cost_ratios.json"
        written = json.loads(path.read_text()) if path.is_file() else {}
        written.update({name.lower(): r for name, r in ratios.items()})
        su.write_json(path, written)
        print("wrote", path)
    return ratios


if __name__ == "__main__":
    main()
