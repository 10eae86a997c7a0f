"""Plumbing shared by the VAE notebooks, organised by job: data, protocol, files, plots.

Model code lives in the notebooks, in plain sight. This module holds only what at least two
notebooks repeat: reading MNIST, the fixed evaluation protocol (seeds, parameter checks, the
importance-sampled likelihood, paired comparisons), results files and train-or-load, the figures.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import json
import math
import os
import platform
import random
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.distributions import Normal

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
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
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
        # A refused connection, a timeout, a cut-off transfer (IncompleteRead) or a garbled
        # gzip stream: note it and try the next mirror.
        except (urllib.error.URLError, http.client.HTTPException, OSError, EOFError, zlib.error) as err:
            errors.append(f"{url}: {type(err).__name__}: {getattr(err, 'reason', err)}")
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


# Names of whole-number parameters: exact names, then suffixes and prefixes.
_COUNT_NAMES = ("epochs", "batch_size", "nll_samples", "latent_dim", "tsne_points", "seed")
_COUNT_SUFFIXES = ("_size", "_epochs", "_samples", "_steps", "_repeats", "_points", "_dim")
_MAY_BE_ZERO = ("val_size", "seed")


def _is_count(name: str) -> bool:
    return name in _COUNT_NAMES or name.startswith("n_") or name.endswith(_COUNT_SUFFIXES)


def check_parameters(**params) -> None:
    """Raise one ValueError listing every impossible parameter, before any long work starts.

    Counts (`epochs`, `*_size`, `n_*`, `*_samples`, `*_steps`, `*_dim`, ...) must be whole numbers
    (>= 1, or >= 0 for `val_size` and `seed`); rates positive; `hidden_sizes` a list of positive
    whole numbers. A run that loads a checkpoint gives the epochs it was trained for.
    """
    problems = []
    for name, value in params.items():
        if value is None:
            continue
        if _is_count(name):
            smallest = 0 if name in _MAY_BE_ZERO else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < smallest:
                problems.append(f"{name}={value!r} must be a whole number >= {smallest}")
        elif name in ("learning_rate", "lr") and not (
            isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 10
        ):
            problems.append(f"{name}={value!r} must be a positive number (e.g. 1e-3)")
        elif name.endswith("_sizes") and not (
            isinstance(value, (list, tuple)) and all(isinstance(h, int) and h > 0 for h in value)
        ):
            problems.append(f"{name}={value!r} must be a list of positive whole numbers")
    if problems:
        raise ValueError(
            "Impossible parameters: " + "; ".join(problems) + ". Fix them in the parameters cell."
        )


def check_output_dirs(**folders) -> None:
    """Make each output folder (images_dir=..., results_dir=...) and check it can be written,
    so a bad path fails at setup, naming its parameter, not after training."""
    problems = []
    for name, folder in folders.items():
        path = Path(folder)
        try:
            path.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
                pass
        except OSError as err:
            problems.append(
                f"{name}={str(folder)!r} cannot be used as a folder to write to ({err.strerror or err})"
            )
    if problems:
        raise ValueError("Bad output folders: " + "; ".join(problems) + ". Point them at writable folders.")


_PLAIN = (type(None), bool, int, float, str)


def notebook_parameters(namespace: dict, names_before: set) -> dict:
    """The parameters a notebook runs with: the lowercase names its parameters cell (and the cell
    papermill injects after it) defined, i.e. those of `namespace` not in `names_before`, holding
    plain values (numbers, strings, None, or lists of them). So no name is typed twice."""

    def plain(value):
        return isinstance(value, _PLAIN) or (
            isinstance(value, (list, tuple)) and all(isinstance(v, _PLAIN) for v in value)
        )

    return {
        name: value
        for name, value in namespace.items()
        if name not in names_before and name.islower() and not name.startswith("_") and plain(value)
    }


class between:
    """Numbers from `low` to `high`, for `setup`'s choices: `beta=su.between(0, 1)` (ends included;
    `open_low=True` leaves `low` out). A list is allowed when it is not empty and each number is."""

    def __init__(self, low: float = -math.inf, high: float = math.inf, open_low: bool = False):
        self.low, self.high, self.open_low = low, high, open_low

    def __contains__(self, value) -> bool:
        if isinstance(value, (list, tuple)):  # a list of numbers (a sweep): each one
            return len(value) > 0 and all(v in self for v in value)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return False
        return (self.low < value if self.open_low else self.low <= value) and value <= self.high

    def __str__(self) -> str:
        if self.high == math.inf:
            return f"a number {'>' if self.open_low else '>='} {self.low:g}"
        return f"a number in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}]"


def _allowed(allowed) -> str:
    return str(allowed) if isinstance(allowed, between) else f"one of {list(allowed)}"


def setup(parameters: dict, **choices):
    """Everything a notebook does before its lesson, in one call, failing in seconds: check the
    parameters (counts by name, and each of `choices`, {name: allowed values, or `su.between(low,
    high)`}), make and test-write the output folders, pick the device, seed everything, set the
    figure style and load the data. Returns (device, the seeded torch.Generator for batching, the
    Data)."""
    check_parameters(**parameters)
    wrong = [f"{name}={parameters[name]!r}: choose {_allowed(allowed)}"
             for name, allowed in choices.items() if parameters[name] not in allowed]  # fmt: skip
    if wrong:
        raise ValueError("Impossible parameters: " + "; ".join(wrong) + ". Fix them in the parameters cell.")
    folders = {name: parameters[name] for name in _OUTPUT_FOLDERS if name in parameters}
    check_output_dirs(**folders)
    device = get_device(parameters.get("device", "auto"))
    generator = seed_everything(parameters["seed"], device)
    set_style()
    sizes = parameters.get("val_size", 10000), parameters.get("train_size"), parameters.get("test_size")
    data = load_data(parameters.get("dataset", "mnist"), parameters.get("data_dir"), *sizes, device=device)
    print(
        f"device {device}, {torch.get_num_threads()} threads; train {tuple(data.train_x.shape)}, "
        f"validation {tuple(data.val_x.shape)}, test {tuple(data.test_x.shape)}; "
        f"writing to {', '.join(str(f) + '/' for f in folders.values())}"
    )
    return device, generator, data


def check_finite(loss: torch.Tensor, epoch: int, step: int) -> None:
    """Stop training with a clear message when the loss is NaN or infinite."""
    if not torch.isfinite(loss).all():
        raise FloatingPointError(
            f"The loss became {loss.item()} at epoch {epoch}, step {step}. Nothing was saved from "
            "this run. Lower the learning rate or change the seed, then run again."
        )


# Set by run_all.py and the tests: a run nobody watches prints one line per training, not a bar.
BATCH_ENV_VAR = "VAE_BATCH_RUN"


class _OneLine:
    """The part of tqdm's interface the notebooks use, printing a single summary line at the end."""

    def __init__(self, iterable, desc: str):
        self.iterable, self.desc, self.postfix = iterable, desc, ""

    def __len__(self):
        return len(self.iterable)

    def set_postfix(self, **values):
        self.postfix = ", ".join(
            f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
        )

    def __iter__(self):
        start, count = time.perf_counter(), 0
        for count, item in enumerate(self.iterable, 1):  # noqa: B007 (count is read below)
            yield item
        seconds = time.perf_counter() - start
        print(
            f"{self.desc}: {count} in {seconds:.0f} s" + (f"; last: {self.postfix}" if self.postfix else "")
        )


def progress(iterable, desc: str = "epochs"):
    """A tqdm progress bar when someone watches; one summary line under run_all.py and the tests."""
    if os.environ.get(BATCH_ENV_VAR):
        return _OneLine(iterable, desc)
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, mininterval=2)


# ---------------------------------------------------------------------------------------------
# Training: the loop Basic_VAE teaches (its cell is this function, word for word; the tests
# check it), reused by name by the notebooks that train on the same recipe
# ---------------------------------------------------------------------------------------------


def train(
    model, objective, evaluate, train_x, val_x, epochs, batch_size, learning_rate, generator, after_epoch=None
):
    """Adam with a cosine learning-rate decay on `objective(model, x) -> (loss, per-image terms)`.

    `epochs` is the epoch numbers to run (range(1, n + 1), or a progress bar over them). Each epoch
    visits train_x in a new random order and binarises every batch afresh; then `evaluate(model,
    val_x)` scores the validation images and `after_epoch(epoch, history)` runs, if given. Returns
    the history: per epoch, the mean of each term on the training batches and on validation, and
    the seconds since the start.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=len(epochs))
    history, start = {}, time.perf_counter()
    for epoch in epochs:
        order = torch.randperm(len(train_x), generator=generator, device=generator.device).to(train_x.device)
        sums = {}
        for first in range(0, len(train_x), batch_size):
            x = torch.bernoulli(train_x[order[first : first + batch_size]], generator=generator)
            loss, terms = objective(model, x)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss {loss.item()} in epoch {epoch}: lower the learning rate")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            for name, values in terms.items():
                sums[name] = sums.get(name, 0) + values.detach().sum()
        scheduler.step()
        row = {f"train_{name}": (total / len(train_x)).item() for name, total in sums.items()}
        row |= {f"val_{name}": value for name, value in evaluate(model, val_x).items()}
        row["seconds"] = time.perf_counter() - start
        for name, value in row.items():
            history.setdefault(name, []).append(value)
        if after_epoch is not None:
            after_epoch(epoch, history)
    return history


def train_steps(model, objective, train_x, steps, batch_size, learning_rate, generator, desc="steps"):
    """Exactly `steps` steps of `train`'s loop (a fine-tuning counted in steps, not epochs): one epoch
    over `steps * batch_size` training images, train_x shuffled and repeated as often as needed, at a
    constant learning rate and with no validation. Returns train's history."""
    order = torch.randperm(len(train_x), generator=generator, device=generator.device).to(train_x.device)
    images = train_x[order].repeat(math.ceil(steps * batch_size / len(train_x)), 1)[: steps * batch_size]
    return train(model, objective, lambda model, x: {}, images, None, progress(range(1, 2), desc), batch_size,
                 learning_rate, generator)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Protocol: the importance-sampled likelihood and paired comparisons
# ---------------------------------------------------------------------------------------------


def log_mean_exp(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """log(mean(exp(x))) along dim, computed stably."""
    return torch.logsumexp(x, dim) - math.log(x.shape[dim])


@torch.no_grad()
def importance_sampled_nll(log_weight_fn, x: torch.Tensor, k: int, max_rows: int = 1000) -> dict:
    """Importance-sampled estimate of -log p(x) = -log mean_k p(x, z_k) / q(z_k | x).

    `log_weight_fn(x_batch, n)` returns an (n, batch) tensor of log p(x, z) - log q(z | x) for n
    samples z ~ q(z | x). Images and samples are batched together, at most `max_rows` rows per
    call. Returns the mean over images, its standard error and the per-image values (nats).
    The default of 1000 rows (one image's k = 1000 samples) keeps a call's logits in a CPU's
    cache: on 2 cores it ran about twice as fast as calls of 50,000 rows.
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


def paired_difference(nll_a, nll_b) -> dict:
    """Mean per-image difference nll_a - nll_b and its paired standard error.

    Two models scored on the same test images share the images' difficulty, so the standard
    error of the difference is far smaller than either model's own: it is the right yardstick.
    """
    a, b = (torch.as_tensor(np.asarray(v), dtype=torch.float64).flatten() for v in (nll_a, nll_b))
    if len(a) != len(b):
        raise ValueError(f"paired_difference needs the same images: {len(a)} vs {len(b)} values.")
    diff = a - b
    return {"mean": diff.mean().item(), "stderr": standard_error(diff), "images": len(diff)}


# Inpainting: every model scores the same completions. The missing pixels of the first
# INPAINTING_IMAGES test images under three fixed masks, as -log p(x_missing | x_observed) in nats.
INPAINTING_MASKS = ("bottom_half", "centre_square", "random_80")
INPAINTING_IMAGES = 1000
INPAINTING_SEED = 2014


def inpainting_masks(n_images: int, seed: int = INPAINTING_SEED) -> dict:
    """The shared masks of the first n_images test images, (n_images, 784) booleans, True where a
    pixel is missing: the bottom 14 rows, the centre 14 x 14 square, and 80% of the pixels (627)
    at random, a different draw for each image, the same for a prefix whatever n_images is."""
    check_parameters(n_images=n_images)
    grid = torch.zeros(28, 28, dtype=torch.bool)
    bottom_half, centre_square = grid.clone(), grid.clone()
    bottom_half[14:] = True
    centre_square[7:21, 7:21] = True
    ranks = torch.rand(n_images, 784, generator=torch.Generator().manual_seed(seed)).argsort(1).argsort(1)
    fixed = {"bottom_half": bottom_half, "centre_square": centre_square}
    masks = {name: mask.flatten().expand(n_images, -1).clone() for name, mask in fixed.items()}
    masks["random_80"] = ranks < round(0.8 * 784)
    return {name: masks[name] for name in INPAINTING_MASKS}


@torch.no_grad()
def conditional_nll(sample_fn, x: torch.Tensor, missing: dict, k: int, max_rows: int = 1000) -> dict:
    """-log p(x_missing | x_observed) = log p(x_observed) - log p(x) for each mask, in nats.

    `sample_fn(x_batch, n)` draws n codes z ~ q(z | x) per image and returns the decoder's Bernoulli
    logits, (n, batch, 784), and log p(z) - log q(z | x), (n, batch). The same draws estimate both
    likelihoods: p(x | z) weighs all pixels, p(x_observed | z) only the observed ones (the
    missing pixels integrate out of a factorised decoder). Any proposal gives an unbiased estimate
    of p(x_observed), but q(z | x) has seen the missing pixels and is narrower than
    p(z | x_observed), so at finite k the log-estimate of p(x_observed) is the more biased one.
    Returns {"nll": -log p(x), mask: -log p(x_missing | x_observed)}, each with mean, stderr,
    per_image.
    """
    if k < 1:
        raise ValueError(f"conditional_nll needs k >= 1 importance samples, got {k}.")
    for name, mask in missing.items():
        if mask.shape != x.shape or mask.dtype != torch.bool:
            raise ValueError(
                f"mask {name!r} is {tuple(mask.shape)} {mask.dtype}; it must be a boolean tensor shaped "
                f"like x, {tuple(x.shape)} (su.inpainting_masks(len(x)) makes the shared ones)."
            )
    images_per_call, samples_per_call = max(1, max_rows // k), min(k, max_rows)
    per_image = {name: [] for name in ["nll", *missing]}
    for first in range(0, len(x), images_per_call):
        batch = slice(first, first + images_per_call)
        xb = x[batch]
        observed = {name: ~mask[batch].to(x.device) for name, mask in missing.items()}
        log_w = {name: [] for name in per_image}
        for s in range(0, k, samples_per_call):
            logits, log_prior_ratio = sample_fn(xb, min(samples_per_call, k - s))
            log_px_z = -F.binary_cross_entropy_with_logits(logits, xb.expand_as(logits), reduction="none")
            log_w["nll"].append(log_px_z.sum(-1) + log_prior_ratio)
            for name, keep in observed.items():
                log_w[name].append((log_px_z * keep).sum(-1) + log_prior_ratio)
        log_p = {name: log_mean_exp(torch.cat(w).double(), dim=0) for name, w in log_w.items()}
        per_image["nll"].append(-log_p["nll"])
        for name in missing:
            per_image[name].append(log_p[name] - log_p["nll"])
    out = {}
    for name, values in per_image.items():
        values = torch.cat(values).cpu()
        out[name] = {"mean": values.mean().item(), "stderr": standard_error(values), "per_image": values}
    return out


# Basic_VAE's sampler of the posterior, word for word: the sample_fn of every VAE with a N(0, I) prior.
def posterior_samples(model, x, k):
    """k codes z ~ q(z | x) per image: the decoder's logits, (k, batch, 784), and log p(z) - log q(z | x)."""
    mu, logvar = model.encode(x)
    q = Normal(mu, (0.5 * logvar).exp())
    z = q.sample((k,))
    return model.decode(z), Normal(0.0, 1.0).log_prob(z).sum(-1) - q.log_prob(z).sum(-1)


def score_inpainting(sample_fn, test_x: torch.Tensor, k: int) -> dict:
    """conditional_nll on the protocol's images and masks: the first INPAINTING_IMAGES test images
    (fewer when test_x is shorter) under inpainting_masks."""
    x = test_x[:INPAINTING_IMAGES]
    return conditional_nll(sample_fn, x, inpainting_masks(len(x)), k)


def format_inpainting(scores: dict) -> str:
    """One line per shared mask: its conditional NLL, mean ± standard error over the images."""
    lines = [f"-log p(missing | observed), {mask:13s} {scores[mask]['mean']:6.2f} ± "
             f"{scores[mask]['stderr']:.2f} nats" for mask in INPAINTING_MASKS]  # fmt: skip
    return "\n".join(lines)


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

# Every results file holds these.
REQUIRED_RESULT_KEYS = ("dataset", "seed", "epochs", "device", "train_seconds", "test_nll_nats",
                        "nll_importance_samples", "test_elbo_nats")  # fmt: skip
# What Comparison.ipynb reads besides: `published` is {"value": nats or None, "source", "differs"};
# `history` holds per-epoch lists with "seconds" since training started; `active_units` is None
# for models without a latent code. Checked when present; the tests require them of every
# reworked notebook (tests/conftest.py lists the others).
COMPARISON_KEYS = ("model_parameters", "active_units", "published", "history")
# How many prior samples each notebook saves for the comparison grid.
PRIOR_SAMPLES = 16


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


def write_json(path, record, indent=2) -> None:
    """`record` as JSON at `path`, written whole or not at all (the benchmarks' results files)."""
    _atomic_write_bytes(Path(path), (json.dumps(record, indent=indent) + "\n").encode())


def library_versions() -> dict:
    import matplotlib
    import sklearn

    modules = {"torch": torch, "numpy": np, "matplotlib": matplotlib, "scikit-learn": sklearn}
    # str(): torch's version is a str subclass, which a weights-only checkpoint cannot hold
    return {"python": platform.python_version(), **{k: str(m.__version__) for k, m in modules.items()}}


def write_results(
    name: str,
    metrics: dict,
    parameters: dict,
    results_dir: str = "results",
    test_nll=None,
    prior_samples=None,
    inpainting=None,
) -> Path:
    """Write results/<name>.json with the keys every notebook shares, the parameters used and
    the library versions; numbers must be finite, likelihood keys may be None where undefined.

    `test_nll` (per-image test NLLs, in test-set order) goes to results/<name>_test_nll.npy and
    `prior_samples` (PRIOR_SAMPLES images of pixel probabilities) to <name>_prior_samples.npy,
    both float32, so models can be compared image by image and drawn on one grid. `inpainting`
    ({mask: per-image conditional NLLs} for every INPAINTING_MASKS) goes to
    <name>_inpainting_nll.npy, one row per mask in INPAINTING_MASKS order.
    """
    missing = [key for key in REQUIRED_RESULT_KEYS if key not in metrics]
    if missing:
        raise ValueError(f"write_results({name!r}): metrics lack the shared keys {missing}.")
    published = metrics.get("published", {"value": None, "source": "", "differs": ""})
    if not (isinstance(published, dict) and {"value", "source", "differs"} <= set(published)):
        raise ValueError(f"write_results({name!r}): published must be a dict with value, source, differs.")
    history = metrics.get("history", {"seconds": [0.0] * metrics["epochs"]})
    if not (isinstance(history, dict) and len(history.get("seconds", [])) == metrics["epochs"]):
        raise ValueError(
            f"write_results({name!r}): history needs 'seconds' for each of the {metrics['epochs']} epochs."
        )
    for key, value in metrics.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"write_results({name!r}): {key} = {value} is not finite.")
    arrays = {}
    if test_nll is not None:
        arrays["test_nll"] = _as_float32(test_nll).reshape(-1)
        if not np.isfinite(arrays["test_nll"]).all():
            raise ValueError(f"write_results({name!r}): the per-image test NLLs are not all finite.")
    if prior_samples is not None:
        arrays["prior_samples"] = _as_float32(prior_samples).reshape(-1, 784)
    if inpainting is not None:
        if set(inpainting) != set(INPAINTING_MASKS):
            raise ValueError(f"write_results({name!r}): inpainting needs the masks {INPAINTING_MASKS}.")
        rows = [_as_float32(inpainting[mask]).reshape(-1) for mask in INPAINTING_MASKS]
        arrays["inpainting_nll"] = np.stack(rows)
        if not np.isfinite(arrays["inpainting_nll"]).all():
            raise ValueError(f"write_results({name!r}): the inpainting NLLs are not all finite.")
    folder = Path(results_dir)
    for suffix, array in arrays.items():
        buffer = io.BytesIO()
        np.save(buffer, array)
        _atomic_write_bytes(folder / f"{name}_{suffix}.npy", buffer.getvalue())
    record = {**metrics, "parameters": parameters, "versions": library_versions()}
    path = folder / f"{name}.json"
    _atomic_write_bytes(path, (json.dumps(record, indent=2, default=_json_default) + "\n").encode())
    return path


_OUTPUT_FOLDERS = ("images_dir", "results_dir", "checkpoint_dir")


def save_results(name, parameters, model, history, train_seconds, nll, test_elbo, published, prior_samples,
                 inpainting=None, **extra) -> Path:  # fmt: skip
    """write_results for a trained model in one call: the shared keys come from the run (its
    parameters, the model, the history, the test NLL dict of importance_sampled_nll), `extra` adds
    the notebook's own; results go to parameters["results_dir"]. `inpainting` is conditional_nll's
    dict (or an exact one of the same shape): its means go to `inpainting_nll_nats`."""
    if inpainting is not None:
        extra["inpainting_nll_nats"] = {m: {"mean": inpainting[m]["mean"], "stderr": inpainting[m]["stderr"]}
                                        for m in INPAINTING_MASKS}  # fmt: skip
        extra["inpainting_images"] = len(inpainting[INPAINTING_MASKS[0]]["per_image"])
    metrics = dict(
        dataset=parameters["dataset"],
        seed=parameters["seed"],
        epochs=len(history["seconds"]),
        device=next(model.parameters()).device.type,
        train_seconds=train_seconds,
        test_nll_nats=nll["mean"],
        test_nll_stderr=nll["stderr"],
        nll_importance_samples=parameters["nll_samples"],
        test_elbo_nats=test_elbo,
        bits_per_dim=bits_per_dim(nll["mean"]),
        model_parameters=sum(p.numel() for p in model.parameters()),
        test_images=len(nll["per_image"]),
        **extra,
        published=published,
        history=history,
    )
    # Where this run wrote is no property of its result (and would put this machine's paths in it).
    recorded = {key: value for key, value in parameters.items() if key not in _OUTPUT_FOLDERS}
    folder = parameters.get("results_dir", "results")
    per_image = None if inpainting is None else {m: inpainting[m]["per_image"] for m in INPAINTING_MASKS}
    return write_results(
        name, metrics, recorded, folder, test_nll=nll["per_image"], prior_samples=prior_samples,
        inpainting=per_image,
    )  # fmt: skip


@torch.no_grad()
def decode_prior_samples(decode, latent_dim: int, seed: int, device="cpu") -> torch.Tensor:
    """PRIOR_SAMPLES codes z ~ N(0, I), the same draws in every notebook, decoded to pixel
    probabilities: the rows of the comparison's grid of samples."""
    z = torch.randn(PRIOR_SAMPLES, latent_dim, generator=torch.Generator().manual_seed(seed))
    return torch.sigmoid(decode(z.to(device))).cpu()


# The roles of the cells a reader copies out of a notebook: its model, objective and training loop.
COPYABLE_ROLES = ("model", "objective", "train")


def copyable_cells(notebook: str | os.PathLike) -> list[str]:
    """The sources of a notebook's cells tagged with a COPYABLE_ROLES role that hold only imports,
    functions and classes: what runs when copied with torch alone (a cell that builds or trains
    the notebook's own model uses its globals). The tests and the recipe benchmark run them."""
    import ast

    cells = json.loads(Path(notebook).read_text())["cells"]
    definitions = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)
    tagged = [c for c in cells if set(COPYABLE_ROLES) & set(c["metadata"].get("tags", []))]
    sources = ["".join(c["source"]) for c in tagged if c["cell_type"] == "code"]
    return [source for source in sources if all(isinstance(n, definitions) for n in ast.parse(source).body)]


def notebook_defaults(notebook: str | os.PathLike) -> dict:
    """The values its parameters cell assigns: a notebook's defaults, read without running it (so a
    model trained by another notebook is checked against that notebook's defaults, never a copy)."""
    import ast

    cells = json.loads(Path(notebook).read_text())["cells"]
    tagged = ["".join(c["source"]) for c in cells if "parameters" in c["metadata"].get("tags", [])]
    if not tagged:
        raise ValueError(f"{notebook} has no cell tagged 'parameters': tag the cell of its defaults")
    defaults: dict = {}
    for node in ast.parse(tagged[0]).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            defaults[node.targets[0].id] = ast.literal_eval(node.value)
    return defaults


def load_cells(notebook: str | os.PathLike):
    """Another notebook's copyable cells (its model classes, objectives, samplers) run into a
    namespace: reuse a model as that notebook teaches it, e.g. load_cells("Basic_VAE.ipynb").VAE."""
    import types

    namespace: dict = {}
    exec(compile("\n\n".join(copyable_cells(notebook)), str(notebook), "exec"), namespace)
    # the cells' functions keep `namespace` as their globals, __builtins__ included
    return types.SimpleNamespace(**{k: v for k, v in namespace.items() if k != "__builtins__"})


def _as_float32(values) -> np.ndarray:
    values = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else values
    return np.asarray(values, dtype=np.float32)


def load_test_nll(name: str, results_dir: str = "results", images: int | None = None):
    """Per-image test NLLs another notebook saved (first `images` of them), or None with a note
    saying which notebook to run, when its results file is not there."""
    path = Path(results_dir) / f"{name}_test_nll.npy"
    if not path.is_file():
        print(f"{path} is missing: run the notebook that writes results/{name}.json first.")
        return None
    values = np.load(path)
    if images is not None and len(values) < images:
        print(f"{path} holds {len(values)} images, fewer than the {images} scored here.")
        return None
    return values[:images]


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    if isinstance(value, (Path, torch.device)):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


# Checkpoints hold a trained model with what defines it: every parameter of the run except these,
# which change only what is evaluated or drawn, or where files go (a notebook adds its own, such
# as IWAE's snr_repeats, through `evaluation_only`). A checkpoint is loaded only for a run that
# asks for the model it holds.
EVALUATION_ONLY = ("data_dir", "device", "test_size", "nll_samples", "tsne_points", "images_dir",
                   "results_dir", "checkpoint_dir", "load_checkpoint")  # fmt: skip
CHECKPOINT_FORMAT = 2  # 1: the first checkpoints, which recorded the network's sizes alone
_NEW_CHECKPOINT = "set load_checkpoint=False to train the model again, which saves a new checkpoint there"


class CheckpointError(ValueError):
    """A checkpoint that cannot serve this run: damaged, not this project's, or another model."""


def model_definition(parameters: dict, evaluation_only=()) -> dict:
    """What defines a trained model: the run's parameters less those that change only what is
    evaluated or drawn, as plain JSON values (so a tuple and a list of the same sizes agree)."""
    skip = {*EVALUATION_ONLY, *evaluation_only}
    kept = {name: value for name, value in parameters.items() if name not in skip}
    return json.loads(json.dumps(kept, default=_json_default))


def save_checkpoint(state: dict, path: str | os.PathLike) -> Path:
    """Save a state dict atomically (plain tensors and numbers, so it loads with weights_only)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    _atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def load_checkpoint(path, device="cpu", expect: dict | None = None, evaluation_only=()) -> dict:
    """Load a checkpoint that train_or_load saved, refusing pickled code (weights_only=True).

    A damaged file, or one that is no checkpoint of this project, raises CheckpointError naming it
    (the file is left where it is). With `expect` (a run's parameters), so does a checkpoint whose
    model was trained under other values of what defines it (see model_definition).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"No checkpoint at {path}; run the notebook with load_checkpoint=False first."
        )
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # torch raises RuntimeError, UnpicklingError, EOFError, ... by cause
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path} cannot be read: it is damaged (cut short by an interrupted copy or a full disk?) "
            f"or is not a checkpoint of this project ({reason}). It is left as it is; {_NEW_CHECKPOINT}."
        ) from None
    if not (isinstance(state, dict) and {"model", "record", "train_seconds"} <= set(state)):
        raise CheckpointError(f"{path} is not a checkpoint of this project; {_NEW_CHECKPOINT}.")
    if expect is not None:
        _check_definition(path, state, expect, evaluation_only)
    return state


def _check_definition(path: Path, state: dict, expect: dict, evaluation_only) -> None:
    """Raise CheckpointError listing each setting on which the checkpoint and the run differ."""
    if state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} was saved by an earlier version of this project and does not record the data, "
            f"objective and training it came from, so it cannot be matched to this run; {_NEW_CHECKPOINT}."
        )
    saved = model_definition(state["definition"], evaluation_only)
    wanted, missing = model_definition(expect, evaluation_only), "(not set)"
    differ = [
        name for name in sorted({*saved, *wanted}) if saved.get(name, missing) != wanted.get(name, missing)
    ]
    if differ:
        lines = "".join(
            f"\n  {name}: checkpoint {saved.get(name, missing)!r}, this run {wanted.get(name, missing)!r}"
            for name in differ
        )
        raise CheckpointError(
            f"{path} holds a model trained with other settings than this run asks for:{lines}\n"
            "Either set these parameters to the checkpoint's values to load it, or "
            f"{_NEW_CHECKPOINT} (it replaces this file)."
        )
    if state.get("versions") != library_versions():
        print(f"note: {path} was saved with other library versions ({state.get('versions')}).")


def train_or_load(train, model, path, parameters: dict, load=False, device="cpu", evaluation_only=()):
    """Train, time and save, or load a trained model: the one call every notebook makes.

    `train()` trains `model` in place and returns what the figures need (a dict: the history,
    samples by epoch, ...). It is timed and saved to `path` with the weights and what defines the
    model: `parameters` less those that change only evaluation (EVALUATION_ONLY and the notebook's
    `evaluation_only`). With `load=True` the checkpoint is loaded instead, once it is known to hold
    the model these parameters ask for. Returns (what train returned, training seconds).
    """
    if load:
        state = load_checkpoint(path, device, expect=parameters, evaluation_only=evaluation_only)
        model.load_state_dict(state["model"])
        print(f"loaded {path}: trained in {state['train_seconds']:.0f} s")
        return state["record"], state["train_seconds"]
    definition = model_definition(parameters, evaluation_only)  # before training: a bad value fails now
    start = time.perf_counter()
    record = train()
    seconds = time.perf_counter() - start
    state = dict(format=CHECKPOINT_FORMAT, definition=definition, versions=library_versions())
    save_checkpoint({**state, "model": model.state_dict(), "record": record, "train_seconds": seconds}, path)
    return record, seconds


# ---------------------------------------------------------------------------------------------
# Plots: one style for every notebook, figures saved to images/<name>.png
# ---------------------------------------------------------------------------------------------

DIGIT_COLORS = "tab10"


def set_style() -> None:
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "figure.dpi": 100,
            "savefig.dpi": 150,  # sharp on a projector
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


def plot_curves(history: dict, panels: dict, title: str | None = None, x: str = "epoch", logx: bool = False):
    """Training curves: one panel per entry of `panels`, {panel title: [history keys]}.

    `history` maps a key to a list of per-epoch values (and "seconds" to the time since training
    started); keys starting with 'val' are dashed. Every epoch is drawn, the first ones too: early
    spikes are part of the story. `x="seconds"` draws against wall-clock time; `logx=True` spreads
    the first epochs out.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), squeeze=False)
    for ax, (panel, keys) in zip(axes[0], panels.items(), strict=True):
        for key in keys:
            values = history[key]
            steps = history["seconds"] if x == "seconds" else range(1, len(values) + 1)
            ax.plot(steps, values, "--" if key.startswith("val") else "-", label=key)
        ax.set_title(panel)
        ax.set_xlabel("seconds of training" if x == "seconds" else "epoch")
        if logx:
            ax.set_xscale("log")
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _plain_label(key: str) -> str:
    """A history key as a legend says it: train_elbo -> training, val_kl -> validation."""
    for prefix, words in (("train_", "training"), ("val_", "validation")):
        if key.startswith(prefix):
            return words
    return key.replace("_", " ")


def plot_training_curves(
    history: dict, panels: dict, title: str, logx: bool = True, labels: dict | None = None
):
    """The collection's training-curve figure, one layout for every notebook: panels two to a row
    in a slide-shaped figure, {panel title: [history keys]}, every epoch drawn; training solid,
    validation dashed, legends in words (`labels` {key: words} overrides), and a title that says
    what the figure shows. `logx` spreads the first epochs, where most of the change happens."""
    import matplotlib.pyplot as plt

    rows = (len(panels) + 1) // 2
    columns = min(2, len(panels))
    fig, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.1 * rows + 0.5), squeeze=False)
    for ax, (panel, keys) in zip(axes.flat, panels.items(), strict=False):
        for key in keys:
            epochs = range(1, len(history[key]) + 1)
            style = "--" if key.startswith("val") else "-"
            ax.plot(epochs, history[key], style, label=(labels or {}).get(key, _plain_label(key)))
        ax.set(title=panel, xlabel="epoch", xscale="log" if logx else "linear")
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
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
    if how == "latent z":
        ax.set(aspect="equal", xlabel="$z_1$", ylabel="$z_2$")
    else:  # a projection's coordinates mean nothing: no ticks, only the neighbourhoods count
        ax.set(xticks=[], yticks=[], xlabel=f"{how} 1", ylabel=f"{how} 2")
    return ax.figure


def interpolate(a: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
    """Points on the straight line from a to b (both endpoints included), shape (steps, dim)."""
    t = torch.linspace(0, 1, steps, device=a.device).unsqueeze(1)
    return (1 - t) * a + t * b


class whole_numbers(between):
    """Whole numbers >= `low`, for `setup`'s choices: `fc_hidden=su.whole_numbers()`; with `count`,
    lists of that many: `channels=su.whole_numbers(count=2)`."""

    def __init__(self, low: int = 1, count: int | None = None):
        super().__init__(low)
        self.count = count

    def __contains__(self, value) -> bool:
        def whole(v):
            return isinstance(v, int) and not isinstance(v, bool) and v >= self.low

        if self.count is None:
            return whole(value)
        return isinstance(value, (list, tuple)) and len(value) == self.count and all(map(whole, value))

    def __str__(self) -> str:
        if self.count is None:
            return f"a whole number >= {self.low:g}"
        return f"a list of {self.count} whole numbers >= {self.low:g}"
