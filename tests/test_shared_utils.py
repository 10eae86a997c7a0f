"""Unit tests of shared_utils on data the tests write themselves."""

import gzip
import hashlib
import http.server
import json
import math
import os
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, SHARED_DATA
from torch.distributions import Normal

import shared_utils as su

RNG = np.random.default_rng(0)


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array in IDX: two zero bytes, type 0x08, ndim, big-endian dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def make_split(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


def write_dataset(folder: Path, n_train=30, n_test=20, gz=False, layout="flat", name="mnist") -> dict:
    """Write the four IDX files; return the arrays written."""
    target = folder if layout == "flat" else folder / su.DATASETS[name]["folder"] / "raw"
    target.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = make_split(n, seed=n)
        arrays[split] = (images, labels)
        for filename, array in zip(su.SPLIT_FILES[split], (images, labels), strict=True):
            data = idx_bytes(array)
            if gz:
                (target / f"{filename}.gz").write_bytes(gzip.compress(data))
            else:
                (target / filename).write_bytes(data)
    return arrays


# --- IDX parsing -----------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("layout", ["flat", "torchvision"])
def test_load_split_reads_what_was_written(tmp_path, gz, layout):
    arrays = write_dataset(tmp_path, gz=gz, layout=layout)
    for split in ("train", "test"):
        images, labels = su.load_split("mnist", split, tmp_path, download=False)
        assert images.dtype == torch.uint8 and labels.dtype == torch.int64
        assert np.array_equal(images.numpy(), arrays[split][0])
        assert np.array_equal(labels.numpy(), arrays[split][1])


def test_fashion_mnist_torchvision_layout(tmp_path):
    arrays = write_dataset(tmp_path, layout="torchvision", name="fashion-mnist", gz=True)
    images, _ = su.load_split("fashion-mnist", "test", tmp_path, download=False)
    assert np.array_equal(images.numpy(), arrays["test"][0])


def test_data_dir_order_argument_then_variable_then_default(tmp_path, monkeypatch):
    monkeypatch.setenv(su.DATA_ENV_VAR, str(tmp_path / "from_env"))
    assert su.data_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert su.data_root() == tmp_path / "from_env"
    monkeypatch.delenv(su.DATA_ENV_VAR)
    assert su.data_root() == Path("data")


def corrupt(tmp_path, filename, data: bytes):
    write_dataset(tmp_path)
    (tmp_path / filename).write_bytes(data)


@pytest.mark.parametrize(
    "filename, make_bad, message",
    [
        ("t10k-images-idx3-ubyte", lambda good: b"\x12\x34" + good[2:], "bad magic number"),
        ("t10k-images-idx3-ubyte", lambda good: good[:-100], "truncated"),
        ("t10k-images-idx3-ubyte", lambda good: good + b"\x00" * 5, "longer than its header says"),
        ("t10k-images-idx3-ubyte", lambda good: good[:6], "truncated inside the header"),
        ("t10k-images-idx3-ubyte", lambda good: b"", "bad magic number"),
        ("t10k-labels-idx1-ubyte", lambda good: idx_bytes(np.zeros((20, 2), np.uint8)), "2 dimensions"),
        ("t10k-labels-idx1-ubyte", lambda good: idx_bytes(np.zeros(19, np.uint8)), "holds 20 images but"),
        ("t10k-labels-idx1-ubyte", lambda good: idx_bytes(np.full(20, 12, np.uint8)), "outside 0-9"),
        ("t10k-images-idx3-ubyte", lambda good: idx_bytes(np.zeros((20, 32, 32), np.uint8)), "28 x 28"),
        ("t10k-images-idx3-ubyte", lambda good: good[:3] + b"\x09" + good[4:], "9 dimensions, expected 3"),
        ("t10k-images-idx3-ubyte", lambda good: good[:2] + b"\x0d" + good[3:], "element type 0x0d"),
    ],
)
def test_bad_files_give_clear_errors(tmp_path, filename, make_bad, message):
    write_dataset(tmp_path)
    good = (tmp_path / filename).read_bytes()
    (tmp_path / filename).write_bytes(make_bad(good))
    with pytest.raises(su.DataError, match=message) as error:
        su.load_split("mnist", "test", tmp_path, download=False)
    assert filename in str(error.value), "the error must name the file"


def test_truncated_gzip_names_the_file(tmp_path):
    write_dataset(tmp_path, gz=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(su.DataError, match="cannot be read or decompressed") as error:
        su.load_split("mnist", "test", tmp_path, download=False)
    assert str(path) in str(error.value)


def test_missing_files_without_download_say_how_to_fix(tmp_path):
    with pytest.raises(su.DataError) as error:
        su.load_split("mnist", "test", tmp_path, download=False)
    assert "t10k-images-idx3-ubyte" in str(error.value) and su.DATA_ENV_VAR in str(error.value)


def test_unknown_dataset_and_split():
    with pytest.raises(ValueError, match="Unknown dataset"):
        su.load_split("cifar", "test")
    with pytest.raises(ValueError, match="Unknown split"):
        su.load_split("mnist", "valid")


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs the real MNIST files in ../shared/data")
def test_full_size_file_with_a_flipped_byte_fails_its_checksum(tmp_path):
    for filename in su.SPLIT_FILES["test"]:
        data = bytearray((SHARED_DATA / "MNIST" / "raw" / filename).read_bytes())
        if "images" in filename:
            data[5000] ^= 0xFF
        (tmp_path / filename).write_bytes(bytes(data))
    with pytest.raises(su.DataError, match="does not match the official"):
        su.load_split("mnist", "test", tmp_path, download=False)


# --- the data protocol -------------------------------------------------------------------------


def test_load_data_splits_and_fixed_binarisation(tmp_path):
    write_dataset(tmp_path, n_train=40, n_test=20)
    a = su.load_data(data_dir=tmp_path, val_size=10, train_size=25, download=False)
    b = su.load_data(data_dir=tmp_path, val_size=10, train_size=25, download=False)
    assert a.train_x.shape == (25, 784) and a.val_x.shape == (10, 784) and a.test_x.shape == (20, 784)
    assert 0 <= a.train_x.min() and a.train_x.max() <= 1
    assert set(a.test_x.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(a.test_x, b.test_x) and torch.equal(a.val_x, b.val_x), "binarisation must be fixed"
    # A smaller test_size scores a prefix of the very same bits.
    c = su.load_data(data_dir=tmp_path, val_size=10, test_size=5, download=False)
    assert torch.equal(c.test_x, a.test_x[:5])
    # Pixels are binarised with their grey level as probability.
    grey = torch.full((20000, 784), 0.3)
    assert abs(su.fixed_binarization(grey).mean().item() - 0.3) < 0.002


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs the real MNIST files in ../shared/data")
def test_real_mnist_statistics():
    images, labels = su.load_split("mnist", "train", SHARED_DATA, download=False)
    assert images.shape == (60000, 28, 28) and labels.bincount().tolist()[1] == 6742
    x = images.float() / 255
    assert abs(x.mean().item() - 0.1307) < 1e-4 and abs(x.std().item() - 0.3081) < 1e-4


def test_impossible_sizes_fail_before_loading(tmp_path):
    write_dataset(tmp_path, n_train=40)
    with pytest.raises(ValueError, match="val_size=50"):
        su.load_data(data_dir=tmp_path, val_size=50, download=False)
    with pytest.raises(ValueError, match="train_size=0"):
        su.load_data(data_dir=tmp_path, train_size=0, download=False)
    with pytest.raises(ValueError, match="test_size=21"):
        su.load_data(data_dir=tmp_path, val_size=10, test_size=21, download=False)


def test_check_parameters_lists_every_problem():
    with pytest.raises(ValueError) as error:
        su.check_parameters(epochs=-1, batch_size=0, learning_rate=-0.1, hidden_sizes="[64]", seed=3)
    for name in ("epochs", "batch_size", "learning_rate", "hidden_sizes"):
        assert name in str(error.value)
    su.check_parameters(
        epochs=1, batch_size=8, learning_rate=1e-3, hidden_sizes=[8, 4], train_size=None, load_checkpoint=True
    )


def test_check_parameters_knows_counts_by_name_and_the_epochs_rule():
    with pytest.raises(ValueError) as error:
        su.check_parameters(n_masks=0, elbo_check_repeats=2.5, contrast_epochs=-1, latent_dim=True, seed=-1)
    for bad in ("n_masks=0", "elbo_check_repeats=2.5", "contrast_epochs=-1", "latent_dim=True", "seed=-1"):
        assert bad in str(error.value)
    # A run that loads a checkpoint still says how long the model was trained: the load checks it.
    for load in (False, True):
        with pytest.raises(ValueError, match="epochs=0 must be a whole number >= 1"):
            su.check_parameters(epochs=0, load_checkpoint=load)
    su.check_parameters(contrast_epochs=1, n_masks=1, kl_form="analytic")  # names it does not know pass


def test_check_output_dirs_names_the_bad_parameter(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    su.check_output_dirs(images_dir=tmp_path / "new" / "images", results_dir=tmp_path)
    assert (tmp_path / "new" / "images").is_dir() and sorted(os.listdir(tmp_path / "new" / "images")) == []
    with pytest.raises(ValueError, match="results_dir=.*a_file.*cannot be used") as error:
        su.check_output_dirs(images_dir=tmp_path, results_dir=blocker, checkpoint_dir=blocker / "sub")
    assert "checkpoint_dir" in str(error.value) and "images_dir" not in str(error.value)
    assert blocker.read_text() == "not a folder"


def test_binarized_batches_cover_every_image_once_and_repeat_with_the_seed():
    x = torch.rand(103, 784)
    x[:, 0] = (torch.arange(103) % 2).float()  # probability 0 or 1: the same bit in every draw

    def run(seed):
        generator = torch.Generator().manual_seed(seed)
        return torch.cat(list(su.binarized_batches(x, 10, generator)))

    first, again, other = run(0), run(0), run(1)
    assert first.shape == (103, 784) and set(first.unique().tolist()) <= {0.0, 1.0}
    assert first[:, 0].sum() == 51, "every image appears exactly once per epoch"
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_check_finite_stops_on_nan():
    su.check_finite(torch.tensor(1.0), 0, 0)
    with pytest.raises(FloatingPointError, match="epoch 3, step 7"):
        su.check_finite(torch.tensor(float("nan")), 3, 7)


def test_get_device():
    assert su.get_device("cpu") == torch.device("cpu")
    assert su.get_device("auto").type in ("cpu", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            su.get_device("cuda")


# --- download -------------------------------------------------------------------------------


class Server:
    """A static file server on 127.0.0.1 for one test; answers 404 for missing files."""

    def __init__(self, folder: Path):
        handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(folder), **k)  # noqa: E731
        http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served(tmp_path, monkeypatch):
    """Gzipped test-split files on a local server, with their checksums as the published ones."""
    source = tmp_path / "server"
    source.mkdir()
    images, labels = make_split(20)
    checksums = dict(su.DATASETS["mnist"]["sha256"])
    for filename, array in zip(su.SPLIT_FILES["test"], (images, labels), strict=True):
        data = idx_bytes(array)
        (source / f"{filename}.gz").write_bytes(gzip.compress(data))
        checksums[filename] = hashlib.sha256(data).hexdigest()
    monkeypatch.setitem(su.DATASETS["mnist"], "sha256", checksums)
    server = Server(source)
    yield server, source, images
    server.close()


def test_download_success_uses_next_mirror_and_torchvision_layout(tmp_path, served):
    server, _, images = served
    root = tmp_path / "data"
    missing_mirror = server.url + "nowhere/"
    loaded, _ = su.load_split("mnist", "test", root, mirrors=[missing_mirror, server.url])
    assert np.array_equal(loaded.numpy(), images)
    written = sorted(p.name for p in (root / "MNIST" / "raw").iterdir())
    assert written == sorted(su.SPLIT_FILES["test"]), "only the decompressed files, no temporary leftovers"


def test_download_checksum_mismatch_leaves_no_file(tmp_path, served, monkeypatch):
    server, _, _ = served
    wrong = dict(su.DATASETS["mnist"]["sha256"], **{"t10k-images-idx3-ubyte": "0" * 64})
    monkeypatch.setitem(su.DATASETS["mnist"], "sha256", wrong)
    root = tmp_path / "data"
    with pytest.raises(su.DataError, match="does not match the published") as error:
        su.load_split("mnist", "test", root, mirrors=[server.url])
    assert "No file was written" in str(error.value)
    leftovers = list((root / "MNIST" / "raw").glob("t10k-images*")) if (root / "MNIST").exists() else []
    assert leftovers == []


def test_download_with_server_down_gives_clear_error(tmp_path):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = tmp_path / "data"
    with pytest.raises(su.DataError) as error:
        su.load_split("mnist", "test", root, mirrors=[f"http://127.0.0.1:{port}/"], download=True)
    message = str(error.value)
    for expected in ("t10k-images-idx3-ubyte", "every mirror failed", su.DATA_ENV_VAR):
        assert expected in message
    assert not any(root.rglob("*")) if root.exists() else True


class HalfServer:
    """Promises the whole file (Content-Length), sends half of it, then closes the connection."""

    def __init__(self):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = b"\x1f\x8b" + bytes(4000)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_download_cut_mid_stream_falls_through_to_the_next_mirror(tmp_path, served):
    server, _, images = served
    half = HalfServer()
    try:
        root = tmp_path / "data"
        loaded, _ = su.load_split("mnist", "test", root, mirrors=[half.url, server.url])
        assert np.array_equal(loaded.numpy(), images), "the second mirror's good copy is used"
        with pytest.raises(su.DataError, match="every mirror failed") as error:
            su.load_split("mnist", "test", tmp_path / "other", mirrors=[half.url])
    finally:
        half.close()
    assert "IncompleteRead" in str(error.value) and "No file was written" in str(error.value)
    assert not (tmp_path / "other").exists() or not any((tmp_path / "other").rglob("*ubyte*"))


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs the real MNIST files in ../shared/data")
def test_download_of_the_real_files_matches_the_published_checksums(tmp_path):
    source = tmp_path / "server"
    source.mkdir()
    for filename in su.SPLIT_FILES["test"]:
        data = (SHARED_DATA / "MNIST" / "raw" / filename).read_bytes()
        (source / f"{filename}.gz").write_bytes(gzip.compress(data, compresslevel=1))
    server = Server(source)
    try:
        images, labels = su.load_split("mnist", "test", tmp_path / "data", mirrors=[server.url])
    finally:
        server.close()
    assert images.shape == (10000, 28, 28) and labels[:5].tolist() == [7, 2, 1, 0, 4]


# --- evaluation -------------------------------------------------------------------------------


def test_log_mean_exp_is_stable():
    x = torch.tensor([[1000.0, 1000.0], [-1000.0, 1000.0 + math.log(3)]])
    expected = torch.tensor([1000 - math.log(2), 1000 + math.log(2)])
    assert torch.allclose(su.log_mean_exp(x, dim=0), expected, atol=1e-5)


def linear_gaussian(a=2.0, b=0.5, s=0.7):
    """z ~ N(0, 1), x | z ~ N(a z + b, s^2): p(x) = N(b, a^2 + s^2), posterior Gaussian too."""
    exact = lambda x: Normal(b, math.sqrt(a * a + s * s)).log_prob(x)  # noqa: E731
    post_var = 1 / (1 + a * a / (s * s))

    def log_weights(x, k, proposal="posterior"):
        if proposal == "posterior":
            q = Normal(post_var * a * (x - b) / (s * s), math.sqrt(post_var))
        else:
            q = Normal(torch.zeros_like(x), torch.ones_like(x))
        z = q.sample((k,))
        return Normal(a * z + b, s).log_prob(x) + Normal(0.0, 1.0).log_prob(z) - q.log_prob(z)

    return exact, log_weights


def test_importance_sampled_nll_is_exact_with_the_true_posterior():
    exact, log_weights = linear_gaussian()
    x = torch.linspace(-3, 3, 37, dtype=torch.float64)
    for max_rows in (1000, 50, 7):  # batching over images and samples must not change the answer
        result = su.importance_sampled_nll(log_weights, x, k=100, max_rows=max_rows)
        assert torch.allclose(result["per_image"], -exact(x), atol=1e-9)
    assert math.isclose(result["mean"], -exact(x).mean().item(), abs_tol=1e-7)
    assert math.isclose(result["stderr"], (exact(x).std() / math.sqrt(37)).item(), rel_tol=1e-6)


def test_importance_sampled_nll_converges_from_above_with_a_poor_proposal():
    torch.manual_seed(0)
    exact, log_weights = linear_gaussian()
    x = torch.tensor([-2.0, 0.0, 1.0, 3.0], dtype=torch.float64)
    prior = lambda xb, k: log_weights(xb, k, proposal="prior")  # noqa: E731
    loose = su.importance_sampled_nll(prior, x, k=1)["mean"]
    tight = su.importance_sampled_nll(prior, x, k=100_000, max_rows=20_000)["mean"]
    truth = -exact(x).mean().item()
    assert abs(tight - truth) < 0.01, (tight, truth)
    assert loose > tight, "one sample is the (looser) ELBO"


def test_active_units_and_kl_per_dimension():
    mu = torch.stack([torch.randn(5000), 0.01 * torch.randn(5000), torch.zeros(5000)], dim=1)
    count, variance = su.active_units(mu)
    assert count == 1 and variance[0] > 0.9
    kl = su.kl_per_dimension(torch.zeros(10, 2), torch.zeros(10, 2))
    assert torch.equal(kl, torch.zeros(2))
    assert math.isclose(su.kl_per_dimension(torch.ones(1, 1), torch.zeros(1, 1)).item(), 0.5)
    assert math.isclose(su.bits_per_dim(784 * math.log(2)), 1.0)


# --- files --------------------------------------------------------------------------------------


def good_metrics(**changes):
    metrics = dict(dataset="mnist", seed=0, epochs=1, device="cpu", train_seconds=1.5, test_nll_nats=90.0,
                   nll_importance_samples=1000, test_elbo_nats=-95.0, model_parameters=1000, active_units=3,
                   published={"value": 86.76, "source": "a paper", "differs": "everything"},
                   history={"val_elbo": [-99.0], "seconds": [1.5]})  # fmt: skip
    return {**metrics, **changes}


def test_write_results_round_trip_and_refusals(tmp_path):
    path = su.write_results("demo", good_metrics(extra=np.float32(2.5)), {"epochs": 1}, str(tmp_path))
    record = json.loads(path.read_text())
    assert record["test_nll_nats"] == 90.0 and record["extra"] == 2.5
    assert record["parameters"] == {"epochs": 1}
    assert record["versions"]["torch"] == torch.__version__
    assert set(su.COMPARISON_KEYS) <= set(record), "the comparison's keys are written when given"
    with pytest.raises(ValueError, match="lack the shared keys"):
        su.write_results("demo", {"dataset": "mnist"}, {}, str(tmp_path))
    with pytest.raises(ValueError, match="not finite"):
        su.write_results("demo", good_metrics(test_nll_nats=float("nan")), {}, str(tmp_path))
    with pytest.raises(ValueError, match="published must be a dict"):
        su.write_results("demo", good_metrics(published="86.76"), {}, str(tmp_path))
    with pytest.raises(ValueError, match="'seconds' for each of the 2 epochs"):
        su.write_results("demo", good_metrics(epochs=2), {}, str(tmp_path))
    with pytest.raises(ValueError, match="per-image test NLLs are not all finite"):
        su.write_results("demo", good_metrics(), {}, str(tmp_path), test_nll=[1.0, float("inf")])
    assert json.loads(path.read_text()) == record, "a refused write leaves the old file intact"
    assert sorted(os.listdir(tmp_path)) == ["demo.json"]


def test_write_results_saves_per_image_nll_and_prior_samples(tmp_path):
    nll = torch.tensor([90.5, 80.25, 100.0], dtype=torch.float64)
    samples = torch.rand(su.PRIOR_SAMPLES, 28, 28)
    su.write_results("demo", good_metrics(), {}, str(tmp_path), test_nll=nll, prior_samples=samples)
    saved_nll = np.load(tmp_path / "demo_test_nll.npy")
    assert saved_nll.dtype == np.float32 and saved_nll.tolist() == [90.5, 80.25, 100.0]
    saved = np.load(tmp_path / "demo_prior_samples.npy")
    assert saved.shape == (16, 784) and np.allclose(saved, samples.reshape(16, 784).numpy())
    assert su.load_test_nll("demo", str(tmp_path), 2).tolist() == [90.5, 80.25]
    assert su.load_test_nll("demo", str(tmp_path), 5) is None, "fewer images than asked: no comparison"
    assert su.load_test_nll("absent", str(tmp_path)) is None


def test_paired_difference_uses_the_spread_of_the_differences():
    rng = np.random.default_rng(1)
    difficulty = rng.normal(90, 25, 10_000)  # images differ a lot; the two models track each other
    a, b = difficulty + rng.normal(0, 1, 10_000), difficulty + 0.5 + rng.normal(0, 1, 10_000)
    paired = su.paired_difference(a, b)
    diff = a - b
    assert paired["mean"] == pytest.approx(diff.mean()) and paired["images"] == 10_000
    assert paired["stderr"] == pytest.approx(diff.std(ddof=1) / 100, rel=1e-9)
    unpaired = math.hypot(a.std(ddof=1) / 100, b.std(ddof=1) / 100)
    assert paired["stderr"] < unpaired / 10, "pairing removes the images' shared difficulty"
    with pytest.raises(ValueError, match="same images"):
        su.paired_difference(a, b[:-1])


RUN = dict(dataset="mnist", seed=0, epochs=2, width=3, kl_form="analytic", nll_samples=1000, device="auto")


def trained_checkpoint(tmp_path, **run):
    """A tiny model trained by train_or_load under RUN (changed by `run`): (model, path, record)."""
    model, path = torch.nn.Linear(3, 2), tmp_path / "ck" / "m.pt"

    def train():
        with torch.no_grad():
            model.weight.fill_(0.5)
        return {"history": {"loss": [3.0, 2.0], "seconds": [0.1, 0.2]}}

    record, _ = su.train_or_load(train, model, path, {**RUN, **run}, load=False)
    return model, path, record


def test_train_or_load_trains_times_saves_then_loads_what_the_run_asks_for(tmp_path, capsys):
    _, path, record = trained_checkpoint(tmp_path)
    assert record["history"]["loss"] == [3.0, 2.0] and path.is_file()
    fresh = torch.nn.Linear(3, 2)
    # Settings that change only what is evaluated or where files go do not block a load.
    evaluation = dict(nll_samples=20, device="cpu", test_size=100, images_dir="elsewhere", tsne_points=5)
    again, seconds = su.train_or_load(
        lambda: pytest.fail("retrained"), fresh, path, {**RUN, **evaluation}, load=True
    )
    assert again == record and seconds >= 0 and torch.all(fresh.weight == 0.5)
    with pytest.raises(FileNotFoundError, match="load_checkpoint=False"):
        su.train_or_load(pytest.fail, fresh, tmp_path / "none.pt", RUN, load=True)


@pytest.mark.parametrize(
    "change", [dict(dataset="fashion-mnist"), dict(kl_form="monte_carlo"), dict(seed=1), dict(epochs=3)]
)
def test_a_checkpoint_of_another_model_is_refused_naming_both_values(tmp_path, change):
    _, path, _ = trained_checkpoint(tmp_path)
    before = path.read_bytes()
    [(name, value)] = change.items()
    with pytest.raises(su.CheckpointError) as error:
        su.train_or_load(pytest.fail, torch.nn.Linear(3, 2), path, {**RUN, **change}, load=True)
    message = str(error.value)
    assert str(path) in message and f"{name}: checkpoint {RUN[name]!r}, this run {value!r}" in message
    assert "load_checkpoint=False" in message and "set these parameters" in message
    assert path.read_bytes() == before, "the checkpoint is left as it was"


def test_every_differing_setting_is_listed_and_a_new_one_counts(tmp_path):
    _, path, _ = trained_checkpoint(tmp_path)
    with pytest.raises(su.CheckpointError) as error:
        su.load_checkpoint(path, expect={**RUN, "seed": 5, "dataset": "fashion-mnist", "dropout": 0.1})
    lines = [line.strip() for line in str(error.value).splitlines()[1:4]]
    assert lines == [
        "dataset: checkpoint 'mnist', this run 'fashion-mnist'",
        "dropout: checkpoint '(not set)', this run 0.1",
        "seed: checkpoint 0, this run 5",
    ]


def test_a_notebooks_own_evaluation_settings_do_not_block_a_load(tmp_path):
    _, path, _ = trained_checkpoint(tmp_path, snr_repeats=200)
    with pytest.raises(su.CheckpointError, match="snr_repeats"):
        su.load_checkpoint(path, expect={**RUN, "snr_repeats": 5})
    su.load_checkpoint(path, expect={**RUN, "snr_repeats": 5}, evaluation_only=["snr_repeats"])
    # a tuple and a list of the same sizes are the same network
    assert su.model_definition({"hidden_sizes": (4, 4)}) == su.model_definition({"hidden_sizes": [4, 4]})


@pytest.mark.parametrize("cut", [0, 1, 100, -100])
def test_a_damaged_checkpoint_names_the_file_and_is_left_in_place(tmp_path, cut):
    _, path, _ = trained_checkpoint(tmp_path)
    data = path.read_bytes()
    damaged = data[:cut]  # empty, one byte, the head, all but the tail (a copy cut short)
    path.write_bytes(damaged)
    with pytest.raises(su.CheckpointError) as error:
        su.train_or_load(pytest.fail, torch.nn.Linear(3, 2), path, RUN, load=True)
    message = str(error.value)
    assert str(path) in message and "damaged" in message and "load_checkpoint=False" in message
    assert "PytorchStreamReader" not in message.split("(")[0], "torch's own words are only the detail"
    assert path.read_bytes() == damaged, "the damaged file is left where it is"


def test_files_that_are_not_this_projects_checkpoints(tmp_path):
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)  # a readable checkpoint of something else
    with pytest.raises(su.CheckpointError, match="not a checkpoint of this project"):
        su.load_checkpoint(other, expect=RUN)
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(su.CheckpointError, match=f"{text}.*damaged.*or is not a checkpoint"):
        su.load_checkpoint(text)
    old = tmp_path / "old.pt"  # the first format recorded the network's sizes only
    torch.save({"model": {}, "config": {"width": 3}, "record": {}, "train_seconds": 1.0}, old)
    with pytest.raises(su.CheckpointError, match="earlier version of this project"):
        su.load_checkpoint(old, expect=RUN)


def test_progress_prints_one_line_in_batch_runs(monkeypatch, capsys):
    monkeypatch.setenv(su.BATCH_ENV_VAR, "1")
    bar = su.progress(range(3), desc="epochs")
    seen = []
    for i in bar:
        seen.append(i)
        bar.set_postfix(val_elbo=-95.123, step=i)
    lines = capsys.readouterr().out.strip().splitlines()
    assert seen == [0, 1, 2] and len(lines) == 1
    assert lines[0].startswith("epochs: 3 in ") and lines[0].endswith("last: val_elbo=-95.12, step=2")


def test_checkpoint_round_trip_refuses_code(tmp_path):
    state = {"model": {"w": torch.randn(3)}, "record": {"elbo": [1.0, 2.0]}, "train_seconds": 1.5}
    path = su.save_checkpoint(state, tmp_path / "ckpt" / "m.pt")
    loaded = su.load_checkpoint(path)
    assert torch.equal(loaded["model"]["w"], state["model"]["w"]) and loaded["record"] == state["record"]
    torch.save({"bad": su.Data}, tmp_path / "evil.pt")  # a pickled class: weights_only refuses it
    with pytest.raises(su.CheckpointError, match="evil.pt.*[Ww]eights only"):
        su.load_checkpoint(tmp_path / "evil.pt")
    with pytest.raises(FileNotFoundError, match="load_checkpoint=False"):
        su.load_checkpoint(tmp_path / "missing.pt")


def test_image_grid_and_interpolation():
    grid = su.image_grid(torch.zeros(5, 784), nrow=3, pad=2)
    assert grid.shape == (2 * 30 + 2, 3 * 30 + 2)
    line = su.interpolate(torch.zeros(2), torch.ones(2), 5)
    assert torch.allclose(line[:, 0], torch.tensor([0, 0.25, 0.5, 0.75, 1.0]))


def tiny_objective(model, x):
    """A linear 'decoder' scored by Bernoulli log-likelihood: the loss and one per-image term."""
    log_px = -torch.nn.functional.binary_cross_entropy_with_logits(model(x), x, reduction="none").sum(-1)
    return -log_px.mean(), {"log_px": log_px}


def tiny_evaluate(model, x):
    with torch.no_grad():
        return {"log_px": tiny_objective(model, x)[1]["log_px"].mean().item()}


def test_train_learns_records_each_term_and_repeats_with_the_seed():
    x = torch.rand(64, 784)
    runs, seen = [], []
    for _ in range(2):
        torch.manual_seed(0)
        model = torch.nn.Linear(784, 784)
        history = su.train(
            model, tiny_objective, tiny_evaluate, x, x[:16], range(1, 4), 16, 1e-2,
            torch.Generator().manual_seed(0), after_epoch=lambda epoch, history: seen.append(epoch),
        )  # fmt: skip
        runs.append(history)
    assert list(runs[0]) == ["train_log_px", "val_log_px", "seconds"] and seen == [1, 2, 3, 1, 2, 3]
    assert runs[0]["train_log_px"][-1] > runs[0]["train_log_px"][0], "the likelihood rises"
    assert runs[0]["train_log_px"] == runs[1]["train_log_px"], "the same seed gives the same numbers"
    assert runs[0]["seconds"] == sorted(runs[0]["seconds"])


@pytest.mark.parametrize("steps", [3, 10])  # fewer batches than one pass over x, and more
def test_train_steps_runs_exactly_that_many_full_batches(steps):
    x = torch.arange(40, dtype=torch.float32)[:, None].repeat(1, 784) / 40  # row i is i / 40 everywhere
    batches = []

    def counting(model, xb):
        batches.append(len(xb))
        return tiny_objective(model, xb)

    model, generator = torch.nn.Linear(784, 784), torch.Generator().manual_seed(0)
    history = su.train_steps(model, counting, x, steps, 8, 1e-2, generator)
    assert batches == [8] * steps and len(history["seconds"]) == 1 and "train_log_px" in history


def test_train_stops_on_a_nan_loss_saying_what_to_do():
    def broken(model, x):
        return torch.tensor(float("nan"), requires_grad=True), {}

    with pytest.raises(FloatingPointError, match="epoch 1: lower the learning rate"):
        x = torch.rand(4, 2)
        su.train(torch.nn.Linear(2, 2), broken, tiny_evaluate, x, x, range(1, 3), 2, 1e-3, torch.Generator())


def test_notebook_parameters_are_the_plain_lowercase_names_defined_after_the_mark():
    namespace = {"os": os, "REPO_URL": "x", "In": []}
    before = set(namespace)
    namespace |= {"epochs": 3, "hidden_sizes": [8, 4], "data_dir": None, "kl_form": "analytic", "_i3": "x"}
    namespace |= {"NAME": "basic_vae", "helper": print, "history": {"a": [1]}}
    expected = {"epochs": 3, "hidden_sizes": [8, 4], "data_dir": None, "kl_form": "analytic"}
    assert su.notebook_parameters(namespace, before) == expected


def test_setup_checks_choices_and_folders_before_loading(tmp_path):
    parameters = dict(dataset="mnist", seed=0, device="cpu", epochs=1, val_size=10, train_size=20)
    parameters |= dict(test_size=30, kl_form="exact", images_dir=str(tmp_path / "images"))
    forms = ("analytic", "monte_carlo")
    with pytest.raises(ValueError, match=r"kl_form='exact': choose one of \['analytic', 'monte_carlo'\]"):
        su.setup(parameters, kl_form=forms)
    assert not (tmp_path / "images").exists(), "nothing was made before the parameters were right"
    device, generator, data = su.setup({**parameters, "kl_form": "analytic"}, kl_form=forms)
    assert device.type == "cpu" and isinstance(generator, torch.Generator) and (tmp_path / "images").is_dir()
    assert [len(data.train_x), len(data.val_x), len(data.test_x)] == [20, 10, 30]


def test_setup_checks_ranges_of_numbers():
    parameters = dict(seed=0, beta=0.0, alpha=1.5, steps_per_unit=True)
    choices = dict(beta=su.between(0, 1, open_low=True), alpha=su.between(0, 1), steps_per_unit=su.between(0))
    message = (r"beta=0.0: choose a number in \(0, 1\]; alpha=1.5: choose a number in \[0, 1\]; "
               r"steps_per_unit=True: choose a number >= 0")  # fmt: skip
    with pytest.raises(ValueError, match=message):
        su.setup(parameters, **choices)
    assert 1 in su.between(0, 1) and 0 not in su.between(0, 1, open_low=True)
    assert float("nan") not in su.between()
    assert "0.5" not in su.between(0, 1) and 1e9 in su.between(0)
    assert [0.5, 2] in su.between(0, open_low=True) and [0.5, 0] not in su.between(0, open_low=True)
    assert [] not in su.between()


def test_setup_checks_whole_numbers_and_lists_of_them():
    parameters = dict(seed=0, fc_hidden=2.5, channels=[4, 0], widths=[4, 8, 16])
    choices = dict(fc_hidden=su.whole_numbers(), channels=su.whole_numbers(count=2),
                   widths=su.whole_numbers(count=2))  # fmt: skip
    message = (r"fc_hidden=2.5: choose a whole number >= 1; channels=\[4, 0\]: choose a list of 2 whole "
               r"numbers >= 1; widths=\[4, 8, 16\]: choose a list of 2 whole numbers >= 1")  # fmt: skip
    with pytest.raises(ValueError, match=message):
        su.setup(parameters, **choices)
    assert 3 in su.whole_numbers() and True not in su.whole_numbers() and [4, 8] in su.whole_numbers(count=2)


def test_save_results_writes_the_shared_keys_from_the_run(tmp_path):
    model = torch.nn.Linear(2, 3)
    nll = {"mean": 90.0, "stderr": 0.5, "per_image": torch.tensor([89.0, 91.0])}
    history = {"val_elbo": [-100.0, -95.0], "seconds": [1.0, 2.0]}
    parameters = dict(dataset="mnist", seed=3, nll_samples=10, results_dir=str(tmp_path))
    published = {"value": None, "source": "none", "differs": ""}
    path = su.save_results("m", parameters, model, history, 2.5, nll, -95.5, published, torch.zeros(16, 784),
                           active_units=2)  # fmt: skip
    written = json.loads(path.read_text())
    assert set(su.REQUIRED_RESULT_KEYS) <= set(written) and written["epochs"] == 2 and written["seed"] == 3
    assert written["model_parameters"] == 9 and written["active_units"] == 2 and written["device"] == "cpu"
    assert written["parameters"] == {k: v for k, v in parameters.items() if k != "results_dir"}
    assert np.load(tmp_path / "m_test_nll.npy").tolist() == [89, 91]
    prior = su.decode_prior_samples(lambda z: z @ torch.zeros(4, 784), 4, seed=0)
    assert prior.shape == (16, 784) and torch.all(prior == 0.5)


def test_results_carry_the_inpainting_scores_one_row_per_mask(tmp_path):
    scores = {mask: torch.tensor([10.0 + i, 20.0 + i]) for i, mask in enumerate(su.INPAINTING_MASKS)}
    su.write_results("demo", good_metrics(), {}, str(tmp_path), inpainting=scores)
    saved = np.load(tmp_path / "demo_inpainting_nll.npy")
    assert saved.dtype == np.float32 and saved.tolist() == [[10, 20], [11, 21], [12, 22]]
    with pytest.raises(ValueError, match="needs the masks"):
        su.write_results("other", good_metrics(), {}, str(tmp_path), inpainting={"bottom_half": [1.0]})
    broken = {**scores, "random_80": torch.tensor([1.0, float("inf")])}
    with pytest.raises(ValueError, match="inpainting NLLs are not all finite"):
        su.write_results("other", good_metrics(), {}, str(tmp_path), inpainting=broken)
    assert not list(tmp_path.glob("other*")), "a refused results file left something on disk"

    model, history = torch.nn.Linear(2, 3), {"seconds": [1.0]}
    nll = {"mean": 90.0, "stderr": 0.5, "per_image": torch.tensor([89.0, 91.0])}
    parameters = dict(dataset="mnist", seed=0, nll_samples=10, results_dir=str(tmp_path))
    published = {"value": None, "source": "none", "differs": ""}
    inpainting = {m: {"mean": v.mean().item(), "stderr": 0.5, "per_image": v} for m, v in scores.items()}
    path = su.save_results("m", parameters, model, history, 1.0, nll, -95.0, published, None, inpainting)
    written = json.loads(path.read_text())
    assert written["inpainting_nll_nats"]["centre_square"] == {"mean": 16.0, "stderr": 0.5}
    assert written["inpainting_images"] == 2 and np.load(tmp_path / "m_inpainting_nll.npy").shape == (3, 2)


def test_load_cells_runs_a_notebooks_copyable_cells():
    basic = su.load_cells(REPO / "Basic_VAE.ipynb")
    model = basic.VAE([8], 2)
    logits, log_ratio = basic.posterior_samples(model, torch.rand(3, 784).bernoulli(), 5)
    assert logits.shape == (5, 3, 784) and log_ratio.shape == (5, 3)


def test_notebook_defaults_reads_the_parameters_cell_without_running_it(tmp_path):
    def cell(source, tags):
        return {"cell_type": "code", "metadata": {"tags": tags}, "source": source, "outputs": []}

    notebook = tmp_path / "n.ipynb"
    parameters = cell("epochs = 7  # why\nsizes = [4, 2]\n", ["parameters"])
    cells = [cell("raise SystemExit('not run')", []), parameters]
    notebook.write_text(json.dumps({"cells": cells}))
    assert su.notebook_defaults(notebook) == {"epochs": 7, "sizes": [4, 2]}
    assert su.notebook_defaults(REPO / "Basic_VAE.ipynb")["hidden_sizes"] == [256, 256]
    notebook.write_text(json.dumps({"cells": cells[:1]}))
    with pytest.raises(ValueError, match="no cell tagged 'parameters'"):
        su.notebook_defaults(notebook)
