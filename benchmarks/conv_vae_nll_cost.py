"""What the convolutional VAE's likelihood costs on this machine: the protocol's test NLL (k = 1000
codes decoded for each of 10,000 test images) for Conv_VAE's default network and for one with twice
the decoder's channels, each with PyTorch's native CPU kernels and with oneDNN.

The model is built from the notebook's own copyable cells (extracted from Conv_VAE.ipynb, so the
benchmark cannot drift from the lesson), untrained: the cost depends on the shapes only. Each
setting scores the same `--images` test images; the rounds are interleaved and the best of
`--rounds` is kept, so a burst of other work on the machine hurts every setting alike. It prints
the minutes the full test NLL would take, scaled from those images, and writes nothing.

    python benchmarks/conv_vae_nll_cost.py            # about 1 minute on a 2-core CPU
    python benchmarks/conv_vae_nll_cost.py --quick    # a smoke test: a few seconds

Run it with the machine to itself: the minutes are the point.
"""

import argparse
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import shared_utils as su  # noqa: E402

DEFAULT = dict(encoder_channels=[16, 32], decoder_channels=[16, 8], fc_hidden=256, latent_dim=32)
NETWORKS = {
    "default decoder [16, 8]": DEFAULT,
    "twice the channels [32, 16]": {**DEFAULT, "decoder_channels": [32, 16]},
}


def nll_seconds(cells, network, x, k, onednn):
    """Seconds the importance-sampled NLL of x takes with k samples, on an untrained model."""
    torch.manual_seed(0)
    model = cells["ConvVAE"](**network, dropout=0.1).eval()
    torch.backends.mkldnn.enabled = onednn
    try:
        start = time.perf_counter()
        su.importance_sampled_nll(lambda xb, n: cells["log_importance_weights"](model, xb, n), x, k=k)
        return time.perf_counter() - start
    finally:
        torch.backends.mkldnn.enabled = True


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--nll-samples", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny: checks the script runs")
    args = parser.parse_args()
    if args.quick:
        args.images, args.nll_samples, args.rounds = 2, 10, 1
    if min(args.images, args.nll_samples, args.rounds) < 1:
        parser.error("--images, --nll-samples and --rounds must be whole numbers >= 1")

    cells = vars(su.load_cells(REPO / "Conv_VAE.ipynb"))
    test_images = su.load_split("mnist", "test")[0][: args.images]
    x = su.fixed_binarization(test_images.reshape(-1, 784).float() / 255)  # binarised as the protocol does
    settings = [(name, onednn) for name in NETWORKS for onednn in (False, True)]
    best = {setting: float("inf") for setting in settings}
    for _ in range(args.rounds):
        for name, onednn in settings:
            seconds = nll_seconds(cells, NETWORKS[name], x, args.nll_samples, onednn)
            best[(name, onednn)] = min(best[(name, onednn)], seconds)
    print(f"{torch.get_num_threads()} threads; k = {args.nll_samples}, {args.images} test images, "
          f"best of {args.rounds} rounds")  # fmt: skip
    for (name, onednn), seconds in best.items():
        minutes = seconds / args.images * 10_000 / 60
        kernels = "oneDNN" if onednn else "native"
        print(f"{name:28s} {kernels:7s} full test NLL about {minutes:5.1f} min")


if __name__ == "__main__":
    main()
