"""Helpers shared by the VAE notebooks: data, devices and seeds, evaluation, results, plots.

Model code lives in the notebooks, in plain sight. This module holds only what at least two
notebooks repeat: reading MNIST, the fixed evaluation protocol, the results file, the figures.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import platform
import random
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------

DATA_ENV_VAR = "VAE_DATA_DIR"
DEFAULT_DATA_DIR = "data"
# One fixed binarisation of the test (and validation) images, the same bits for every notebook.
BINARIZATION_SEED = 1234

DATASETS = {
    "mnist": {
        "folder": "MNIST",
        "mirrors": [
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ],
        "extra_dirs": [],
        "sha256": {
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
    },
    "fashion-mnist": {
        "folder": "FashionMNIST",
        "mirrors": [
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ],
        # Debian's package `dataset-fashion-mnist` installs the official files here.
        "extra_dirs": ["/usr/share/datasets/fashion-mnist"],
        "sha256": {
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
    },
}
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
OFFICIAL_COUNTS = {"train": 60000, "test": 10000}


class DataError(RuntimeError):
    """A data file is missing, corrupt or could not be downloaded; the message says how to fix it."""


def _fix_hint(name: str) -> str:
    return (
        f"To fix: set the environment variable {DATA_ENV_VAR} (or pass data_dir=...) to a folder "
        f"holding the four {name} IDX files (raw or .gz, flat or as <folder>/{DATASETS[name]['folder']}"
        f"/raw/), or delete the bad file and run again with download allowed to fetch a fresh copy."
    )


def read_idx(path: str | os.PathLike, expected_ndim: int | None = None) -> np.ndarray:
    """Read one IDX file (raw or .gz) of unsigned bytes, checking its header against its size."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found.") from None
    except (OSError, EOFError) as err:  # truncated or garbled gzip stream
        raise DataError(f"{path}: cannot be read or decompressed ({err}).") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number {data[:4].hex() or 'empty'}).")
    if data[2] != 0x08:
        raise DataError(f"{path}: IDX element type 0x{data[2]:02x}, expected 0x08 (unsigned byte).")
    ndim = data[3]
    if expected_ndim is not None and ndim != expected_ndim:
        raise DataError(f"{path}: IDX file has {ndim} dimensions, expected {expected_ndim}.")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated inside the header ({len(data)} bytes).")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + math.prod(shape)
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says"
        raise DataError(f"{path}: {what}: header shape {shape} needs {expected} bytes, file has {len(data)}.")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """Where data lives: the explicit argument, else $VAE_DATA_DIR, else ./data."""
    return Path(data_dir or os.environ.get(DATA_ENV_VAR) or DEFAULT_DATA_DIR).expanduser()


def _candidate_dirs(root: Path, name: str) -> list[Path]:
    """Flat, torchvision's <root>/<Folder>/raw/, <root>/<Folder>/, then system copies (Debian)."""
    folder = DATASETS[name]["folder"]
    return [root, root / folder / "raw", root / folder] + [Path(d) for d in DATASETS[name]["extra_dirs"]]


def find_file(root: Path, name: str, filename: str) -> Path | None:
    """The first of <dir>/<filename> or <dir>/<filename>.gz over the accepted layouts, or None."""
    for d in _candidate_dirs(root, name):
        for candidate in (d / filename, d / f"{filename}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _sha256_of_idx(path: Path) -> str:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def download_file(
    name: str, filename: str, root: Path, mirrors: list[str] | None = None, timeout: float = 60
) -> Path:
    """Download <filename>.gz from the first mirror that works into <root>/<Folder>/raw/<filename>.

    The decompressed bytes must match the published sha256; only then is the temporary file
    renamed into place, so a failed or corrupt download never leaves a file behind.
    """
    spec = DATASETS[name]
    dest_dir = root / spec["folder"] / "raw"
    dest = dest_dir / filename
    errors = []
    for mirror in mirrors or spec["mirrors"]:
        url = mirror.rstrip("/") + f"/{filename}.gz"
        try:
            request = urllib.request.Request(url, headers={"User-Agent": "vae-notebooks"})
            with urllib.request.urlopen(request, timeout=timeout) as response:
                data = gzip.decompress(response.read())
        except (urllib.error.URLError, OSError, EOFError, ValueError) as err:
            errors.append(f"{url}: {getattr(err, 'reason', err)}")
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest != spec["sha256"][filename]:
            errors.append(f"{url}: sha256 {digest} does not match the published {spec['sha256'][filename]}")
            continue
        dest_dir.mkdir(parents=True, exist_ok=True)
        _atomic_write_bytes(dest, data)
        return dest
    tried = "\n  ".join(errors)
    raise DataError(
        f"Could not download {filename} for {name}; every mirror failed:\n  {tried}\n"
        f"No file was written. Without network access, download the files elsewhere and set "
        f"{DATA_ENV_VAR} to the folder holding them (or pass data_dir=...)."
    )


def load_split(
    name: str = "mnist",
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    mirrors: list[str] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (uint8, N x 28 x 28) and labels (int64, N) of one split, validated.

    Files whose counts are the official ones must also match the published sha256, so a
    corrupted byte anywhere is caught; smaller files (made for tests) are checked structurally.
    """
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; choose one of {sorted(DATASETS)}.")
    if split not in SPLIT_FILES:
        raise ValueError(f"Unknown split {split!r}; choose 'train' or 'test'.")
    root = data_root(data_dir)
    paths = []
    for filename in SPLIT_FILES[split]:
        path = find_file(root, name, filename)
        if path is None:
            if not download:
                raise DataError(
                    f"{filename} (or .gz) for {name} is not in {root.resolve()} "
                    f"(looked flat and in {DATASETS[name]['folder']}/raw/), and downloading is off. "
                    + _fix_hint(name)
                )
            path = download_file(name, filename, root, mirrors)
        paths.append(path)
    images = read_idx(paths[0], expected_ndim=3)
    labels = read_idx(paths[1], expected_ndim=1)
    if images.shape[1:] != (28, 28):
        raise DataError(f"{paths[0]}: images are {images.shape[1:]}, expected 28 x 28. " + _fix_hint(name))
    if len(images) != len(labels):
        raise DataError(
            f"{paths[0]} holds {len(images)} images but {paths[1]} holds {len(labels)} labels; "
            "they must come from the same split. " + _fix_hint(name)
        )
    if labels.size and labels.max() > 9:
        raise DataError(f"{paths[1]}: label {labels.max()} is outside 0-9. " + _fix_hint(name))
    for path, filename in zip(paths, SPLIT_FILES[split], strict=True):
        if len(images) == OFFICIAL_COUNTS[split]:
            digest = _sha256_of_idx(path)
            if digest != DATASETS[name]["sha256"][filename]:
                raise DataError(
                    f"{path}: sha256 {digest} does not match the official {name} file "
                    f"({DATASETS[name]['sha256'][filename]}); the file is corrupt. " + _fix_hint(name)
                )
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


@dataclass
class Data:
    """Pixel intensities in [0, 1], flattened to 784, on the chosen device.

    `train_x` is binarised afresh for every batch (dynamic binarisation); `val_x` and `test_x`
    are binarised once with BINARIZATION_SEED, so every notebook scores the very same bits.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def fixed_binarization(x: torch.Tensor, seed: int = BINARIZATION_SEED) -> torch.Tensor:
    """One Bernoulli sample of grey levels x in [0, 1], drawn on the CPU so every device agrees."""
    generator = torch.Generator().manual_seed(seed)
    return torch.bernoulli(x.detach().float().cpu(), generator=generator).to(x.device)


def load_data(
    dataset: str = "mnist",
    data_dir: str | os.PathLike | None = None,
    val_size: int = 10000,
    train_size: int | None = None,
    test_size: int | None = None,
    device: str | torch.device = "cpu",
    download: bool = True,
) -> Data:
    """Train (first 60000 - val_size images, optionally only the first train_size), validation
    (the last val_size training images) and test splits, validated, in memory on `device`."""
    check_parameters(val_size=val_size, train_size=train_size, test_size=test_size)
    train_images, train_labels = load_split(dataset, "train", data_dir, download)
    test_images, test_labels = load_split(dataset, "test", data_dir, download)
    n_train = len(train_images) - val_size
    if n_train < 1 or (train_size is not None and train_size > n_train):
        raise ValueError(
            f"val_size={val_size} and train_size={train_size} need more than the "
            f"{len(train_images)} training images available; lower them."
        )
    if test_size is not None and test_size > len(test_images):
        raise ValueError(f"test_size={test_size} exceeds the {len(test_images)} test images; lower it.")

    def flat(images):
        return images.reshape(len(images), -1).float().div(255)

    # The binarised validation and test sets are drawn from the full splits, then cut, so a
    # small test_size scores a prefix of exactly the bits the full protocol uses.
    val_x = fixed_binarization(flat(train_images[n_train:]), BINARIZATION_SEED + 1)
    test_x = fixed_binarization(flat(test_images), BINARIZATION_SEED)[:test_size]
    train_end = n_train if train_size is None else train_size
    return Data(
        train_x=flat(train_images[:train_end]).to(device),
        train_y=train_labels[:train_end].to(device),
        val_x=val_x.to(device),
        val_y=train_labels[n_train:].to(device),
        test_x=test_x.to(device),
        test_y=test_labels[:test_size].to(device),
    )


def binarized_batches(x: torch.Tensor, batch_size: int, generator: torch.Generator):
    """Shuffled mini-batches with a fresh Bernoulli sample per batch (dynamic binarisation).

    Indexing a seeded permutation of the in-memory tensor: no per-image Python work.
    """
    order = torch.randperm(len(x), generator=generator, device=generator.device).to(x.device)
    for start in range(0, len(x), batch_size):
        batch = x[order[start : start + batch_size]]
        yield torch.bernoulli(batch, generator=generator)


def batched(x: torch.Tensor, batch_size: int):
    """Consecutive slices of x (for evaluation, where order does not matter)."""
    for start in range(0, len(x), batch_size):
        yield x[start : start + batch_size]


# ---------------------------------------------------------------------------------------------
# Devices, seeds, parameters
# ---------------------------------------------------------------------------------------------


def get_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else CPU; 'cpu', 'cuda' or 'cuda:1' force a choice."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} was asked for but CUDA is not available; use 'auto' or 'cpu'.")
    return device


def seed_everything(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """Seed Python, NumPy and PyTorch; return a torch.Generator on `device` for batching."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator(device=device).manual_seed(seed)


def check_parameters(**params) -> None:
    """Raise one ValueError listing every impossible parameter, before any long work starts."""
    problems = []
    positive = ("epochs", "batch_size", "nll_samples", "latent_dim", "n_masks", "tsne_points")
    for name, value in params.items():
        if value is None:
            continue
        if name in positive or name.endswith("_size"):
            smallest = 0 if name in ("epochs", "val_size") else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < smallest:
                problems.append(f"{name}={value!r} must be a whole number >= {smallest}")
        elif name in ("learning_rate", "lr") and not (isinstance(value, (int, float)) and 0 < value < 10):
            problems.append(f"{name}={value!r} must be a positive number (e.g. 1e-3)")
        elif name == "hidden_sizes" and not (
            isinstance(value, (list, tuple)) and all(isinstance(h, int) and h > 0 for h in value)
        ):
            problems.append(f"hidden_sizes={value!r} must be a list of positive whole numbers")
    if problems:
        raise ValueError(
            "Impossible parameters: " + "; ".join(problems) + ". Fix them in the parameters cell."
        )


def check_finite(loss: torch.Tensor, epoch: int, step: int) -> None:
    """Stop training with a clear message when the loss is NaN or infinite."""
    if not torch.isfinite(loss).all():
        raise FloatingPointError(
            f"The loss became {loss.item()} at epoch {epoch}, step {step}. Nothing was saved from "
            "this run. Lower the learning rate or change the seed, then run again."
        )


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


def log_mean_exp(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """log(mean(exp(x))) along dim, computed stably."""
    return torch.logsumexp(x, dim) - math.log(x.shape[dim])


@torch.no_grad()
def importance_sampled_nll(log_weight_fn, x: torch.Tensor, k: int, max_rows: int = 50_000) -> dict:
    """Importance-sampled estimate of -log p(x) = -log mean_k p(x, z_k) / q(z_k | x).

    `log_weight_fn(x_batch, n)` returns an (n, batch) tensor of log p(x, z) - log q(z | x) for n
    samples z ~ q(z | x). Images and samples are batched together, at most `max_rows` rows per
    call. Returns the mean over images, its standard error and the per-image values (nats).
    """
    images_per_call = max(1, max_rows // k)
    samples_per_call = min(k, max_rows)
    nll = []
    for xb in batched(x, images_per_call):
        chunks = [log_weight_fn(xb, min(samples_per_call, k - s)) for s in range(0, k, samples_per_call)]
        log_w = torch.cat(chunks, dim=0)
        nll.append(-log_mean_exp(log_w.double(), dim=0))
    nll = torch.cat(nll).cpu()
    return {"mean": nll.mean().item(), "stderr": standard_error(nll), "per_image": nll}


def standard_error(values: torch.Tensor) -> float:
    """Standard error of the mean of a 1-D tensor."""
    return (values.double().std() / math.sqrt(len(values))).item() if len(values) > 1 else float("nan")


def kl_per_dimension(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Mean over the data of KL(N(mu, exp(logvar)) || N(0, 1)) for each latent dimension."""
    return (0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)).mean(0)


def active_units(mu: torch.Tensor, threshold: float = 0.01) -> tuple[int, torch.Tensor]:
    """Burda et al.: a latent unit is active when Var_x(E_q[z_u | x]) exceeds the threshold."""
    variance = mu.double().var(0)
    return int((variance > threshold).sum()), variance


def bits_per_dim(nats: float, dims: int = 784) -> float:
    """Convert a per-image negative log-likelihood in nats to bits per pixel."""
    return nats / (dims * math.log(2))


# ---------------------------------------------------------------------------------------------
# Files: results, checkpoints
# ---------------------------------------------------------------------------------------------

REQUIRED_RESULT_KEYS = (
    "dataset",
    "seed",
    "epochs",
    "device",
    "train_seconds",
    "test_nll_nats",
    "nll_importance_samples",
    "test_elbo_nats",
)


_UMASK = os.umask(0)
os.umask(_UMASK)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def library_versions() -> dict:
    import matplotlib
    import sklearn

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "matplotlib": matplotlib.__version__,
        "scikit-learn": sklearn.__version__,
    }


def write_results(name: str, metrics: dict, parameters: dict, results_dir: str = "results") -> Path:
    """Write results/<name>.json with the keys every notebook shares, the parameters used and
    the library versions. Numbers must be finite; likelihood keys may be None where undefined."""
    missing = [key for key in REQUIRED_RESULT_KEYS if key not in metrics]
    if missing:
        raise ValueError(f"write_results({name!r}): metrics lack the shared keys {missing}.")
    for key, value in metrics.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"write_results({name!r}): {key} = {value} is not finite.")
    record = {**metrics, "parameters": parameters, "versions": library_versions()}
    path = Path(results_dir) / f"{name}.json"
    _atomic_write_bytes(path, (json.dumps(record, indent=2, default=_json_default) + "\n").encode())
    return path


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    if isinstance(value, (Path, torch.device)):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def save_checkpoint(state: dict, path: str | os.PathLike) -> Path:
    """Save a state dict atomically (plain tensors and numbers, so it loads with weights_only)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> dict:
    """Load a checkpoint saved by save_checkpoint, refusing pickled code (weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"No checkpoint at {path}; run the notebook with load_checkpoint=False first."
        )
    return torch.load(path, map_location=device, weights_only=True)


# ---------------------------------------------------------------------------------------------
# Plots: one style for every notebook, figures saved to images/<name>.png
# ---------------------------------------------------------------------------------------------

DIGIT_COLORS = "tab10"


def set_style() -> None:
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "figure.dpi": 100,
            "savefig.dpi": 100,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "font.size": 10,
            "axes.titlesize": 11,
        }
    )


def save_figure(fig, name: str, images_dir: str = "images") -> Path:
    """Save `fig` as images/<name>.png (atomically) and return the path."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    path = Path(images_dir) / f"{name}.png"
    _atomic_write_bytes(path, buffer.getvalue())
    return path


def _as_images(x) -> np.ndarray:
    x = x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=float)
    return x.reshape(len(x), 28, 28)


def image_grid(images, nrow: int, pad: int = 2) -> np.ndarray:
    """Tile N images of 28 x 28 (or 784) into one array with `nrow` images per row."""
    images = _as_images(images)
    rows = math.ceil(len(images) / nrow)
    # Light grey gutters: with the gray_r colour map 0 is white paper and 1 is black ink.
    grid = np.full((rows * (28 + pad) + pad, nrow * (28 + pad) + pad), 0.15)
    for i, image in enumerate(images):
        r, c = divmod(i, nrow)
        grid[
            pad + r * (28 + pad) : pad + r * (28 + pad) + 28, pad + c * (28 + pad) : pad + c * (28 + pad) + 28
        ] = image
    return grid


def plot_image_grid(images, nrow: int = 10, title: str | None = None, ax=None, size: float = 0.6):
    """Show images as one grid (white background lines, grey levels from 0 to 1)."""
    import matplotlib.pyplot as plt

    grid = image_grid(images, nrow)
    if ax is None:
        rows = math.ceil(len(images) / nrow)
        _, ax = plt.subplots(figsize=(size * nrow, size * rows + (0.4 if title else 0)))
    ax.imshow(grid, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax.figure


def plot_rows(rows: dict, title: str | None = None, size: float = 0.6):
    """One labelled row of images per entry of `rows` (e.g. originals, mean and sampled recons)."""
    import matplotlib.pyplot as plt

    n = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(rows), 1, figsize=(size * n + 1.5, size * len(rows) + 0.5), squeeze=False)
    for ax, (label, images) in zip(axes[:, 0], rows.items(), strict=True):
        ax.imshow(image_grid(images, n), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_ylabel(label, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_curves(history: dict, panels: dict, title: str | None = None):
    """Training curves: one panel per entry of `panels`, {panel title: [history keys]}.

    `history` maps a key to a list of per-epoch values; keys starting with 'val' are dashed. The
    y axis shows the range after the first tenth of training, where the interesting part is.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), squeeze=False)
    for ax, (panel, keys) in zip(axes[0], panels.items(), strict=True):
        settled = []
        for key in keys:
            values = history[key]
            ax.plot(range(1, len(values) + 1), values, "--" if key.startswith("val") else "-", label=key)
            settled += list(values[len(values) // 10 + 1 :])
        if len(settled) > 4:  # zoom on where training settles; the first epochs are far off
            low, high = min(settled), max(settled)
            margin = 0.15 * (high - low) + 1e-9
            ax.set_ylim(low - margin, high + margin)
        ax.set_title(panel)
        ax.set_xlabel("epoch")
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def embed_2d(codes, method: str = "auto", labels=None, seed: int = 0) -> tuple[np.ndarray, str]:
    """Project codes to 2-D: as they are when 2-D, else t-SNE ('auto'), 'pca', 'lda' or 'tsne'."""
    codes = codes.detach().cpu().numpy() if isinstance(codes, torch.Tensor) else np.asarray(codes)
    if method == "auto":
        method = "identity" if codes.shape[1] == 2 else "tsne"
    if method == "identity":
        return codes, "latent z"
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(2, random_state=seed).fit_transform(codes), "PCA"
    if method == "lda":
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

        labels = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else labels
        return LinearDiscriminantAnalysis(n_components=2).fit_transform(codes, labels), "LDA"
    if method == "tsne":
        from sklearn.manifold import TSNE

        return TSNE(2, init="pca", random_state=seed, perplexity=30).fit_transform(codes), "t-SNE"
    raise ValueError(f"Unknown projection {method!r}; use 'auto', 'pca', 'lda' or 'tsne'.")


def plot_latent_scatter(
    codes, labels, method: str = "auto", title: str | None = None, ax=None, seed: int = 0
):
    """Scatter of 2-D codes (projected when needed) coloured by digit."""
    import matplotlib.pyplot as plt

    points, how = embed_2d(codes, method, labels, seed)
    labels = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 5))
    scatter = ax.scatter(
        points[:, 0], points[:, 1], c=labels, cmap=DIGIT_COLORS, s=3, alpha=0.7, vmin=-0.5, vmax=9.5
    )
    ax.figure.colorbar(scatter, ax=ax, ticks=range(10), label="digit")
    ax.set_title(title or f"{how} of the codes")
    ax.set_aspect("equal" if how == "latent z" else "auto")
    return ax.figure


def interpolate(a: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
    """Points on the straight line from a to b (both endpoints included), shape (steps, dim)."""
    t = torch.linspace(0, 1, steps, device=a.device).unsqueeze(1)
    return (1 - t) * a + t * b
