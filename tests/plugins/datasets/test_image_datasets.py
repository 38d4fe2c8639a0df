"""The image data sets: MNIST-style IDX folders written here, and scikit-learn's digits."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from ebmcore_datasets import images as image_module
from ebmcore_datasets.idx import write_idx
from ebmcore_datasets.images import MNIST, Digits, FashionMNIST, ImageDataset

import ebmcore

N_TRAIN, N_TEST = 20, 7
IDX_CLASSES = {"mnist": MNIST, "fashion_mnist": FashionMNIST}
FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}


def known_images(n: int, offset: int) -> torch.Tensor:
    """``n`` distinct 28×28 uint8 images, each holding every level 0..255 somewhere."""
    pixels = torch.arange(28 * 28)
    rows = [(pixels * (2 * i + 1) + offset + 11 * i) % 256 for i in range(n)]
    return torch.stack(rows).reshape(n, 28, 28).to(torch.uint8)


def known_labels(n: int, offset: int) -> torch.Tensor:
    return ((torch.arange(n) + offset) % 10).to(torch.uint8)


TRAIN_IMAGES, TRAIN_LABELS = known_images(N_TRAIN, 0), known_labels(N_TRAIN, 0)
TEST_IMAGES, TEST_LABELS = known_images(N_TEST, 100), known_labels(N_TEST, 3)


def write_split_files(folder: Path, *, gz: bool, n_train_labels: int = N_TRAIN) -> None:
    """Write the four standard IDX files into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    write_idx(folder / f"train-images-idx3-ubyte{ext}", TRAIN_IMAGES)
    write_idx(folder / f"train-labels-idx1-ubyte{ext}", TRAIN_LABELS[:n_train_labels])
    write_idx(folder / f"t10k-images-idx3-ubyte{ext}", TEST_IMAGES)
    write_idx(folder / f"t10k-labels-idx1-ubyte{ext}", TEST_LABELS)


@pytest.fixture(params=["torchvision-gz", "torchvision-plain", "flat-plain", "flat-gz"])
def layout(request, tmp_path):
    """A root folder in one of the layouts; returns ``(root, name)`` for each data set."""
    def make(name: str) -> Path:
        where, packing = request.param.split("-")
        root = tmp_path / name
        folder = root / FOLDERS[name] / "raw" if where == "torchvision" else root
        write_split_files(folder, gz=packing == "gz")
        return root
    return make


@pytest.fixture
def mnist_root(tmp_path) -> Path:
    """A root in torchvision's layout with gzipped files, as torchvision downloads them."""
    write_split_files(tmp_path / "MNIST" / "raw", gz=True)
    return tmp_path


def floor_levels(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Undo the dequantisation: the level index of each value."""
    return torch.floor(x.double() * levels).to(torch.int64)


# -- MNIST and Fashion-MNIST on files written here -------------------------------------------

@pytest.mark.parametrize("name", list(IDX_CLASSES))
def test_reads_both_splits_in_every_layout(layout, name):
    root = layout(name)
    train = ebmcore.create("dataset", name, root=root)
    test = ebmcore.create("dataset", name, root=str(root), split="test")
    assert type(train) is IDX_CLASSES[name] and isinstance(train, ImageDataset)
    assert isinstance(train, ebmcore.Dataset) and not train.has_log_prob
    assert (len(train), len(test)) == (N_TRAIN, N_TEST)
    assert (train.split, test.split) == ("train", "test")
    assert train.event_shape == (1, 28, 28) and train.levels == 256 and train.n_classes == 10
    assert train.bin_width == 1 / 256
    assert train.images.shape == (N_TRAIN, 1, 28, 28)
    assert train.images.dtype in (torch.uint8, torch.int64)
    assert torch.equal(train.images[:, 0].to(torch.uint8), TRAIN_IMAGES)
    assert torch.equal(test.images[:, 0].to(torch.uint8), TEST_IMAGES)
    assert train.labels.dtype == torch.int64 and test.labels.dtype == torch.int64
    assert torch.equal(train.labels, TRAIN_LABELS.long())
    assert torch.equal(test.labels, TEST_LABELS.long())


def test_fashion_mnist_is_found_under_its_own_folder_name(tmp_path):
    write_split_files(tmp_path / "FashionMNIST" / "raw", gz=True)
    assert len(ebmcore.create("dataset", "Fashion-MNIST", root=tmp_path)) == N_TRAIN
    with pytest.raises(FileNotFoundError):
        MNIST(tmp_path)  # MNIST does not read Fashion-MNIST's folder


def test_dequantised_values_lie_in_their_bins(mnist_root):
    data = MNIST(mnist_root)
    x, y = data.tensor(generator=torch.Generator().manual_seed(0), return_labels=True)
    assert x.dtype == torch.float32 and x.shape == (N_TRAIN, 1, 28, 28)
    k = TRAIN_IMAGES.unsqueeze(1).double()
    assert bool((x.double() >= k / 256).all()) and bool((x.double() < (k + 1) / 256).all())
    assert torch.equal(floor_levels(x, 256), k.long())
    assert torch.equal(y, TRAIN_LABELS.long())
    # the noise is spread over the bin, not stuck at one spot
    u = x.double() * 256 - k
    assert 0.45 < float(u.mean()) < 0.55 and float(u.min()) < 0.01 and float(u.max()) > 0.99
    x64 = data.tensor(torch.float64, torch.Generator().manual_seed(0))
    assert x64.dtype == torch.float64 and torch.equal(floor_levels(x64, 256), k.long())


def test_bin_centres_without_dequantisation(mnist_root):
    data = MNIST(mnist_root, split="test", dequantize=False)
    k = TEST_IMAGES.unsqueeze(1).double()
    assert torch.equal(data.tensor(torch.float64), (k + 0.5) / 256)
    x, y = data.sample(50, torch.Generator().manual_seed(1), return_labels=True)
    assert bool(((x.double() * 256 - 0.5) % 1 == 0).all())  # every value is a bin centre
    for image, label in zip(x, y, strict=True):
        (match,) = [j for j in range(N_TEST)
                    if torch.equal(image.double(), (k[j] + 0.5) / 256)]
        assert int(TEST_LABELS[match]) == int(label)


def test_sample_draws_with_replacement_and_keeps_labels(mnist_root):
    data = MNIST(mnist_root, split="test")
    x, y = data.sample(200, torch.Generator().manual_seed(2), return_labels=True)
    assert x.shape == (200, 1, 28, 28) and y.shape == (200,) and y.dtype == torch.int64
    assert bool((x >= 0).all()) and bool((x <= 1).all())
    levels = floor_levels(x, 256)
    seen = set()
    for image, label in zip(levels, y, strict=True):
        (match,) = [j for j in range(N_TEST) if torch.equal(image[0], TEST_IMAGES[j].long())]
        assert int(TEST_LABELS[match]) == int(label)
        seen.add(match)
    assert seen == set(range(N_TEST))  # 200 draws with replacement reach all 7 images


def test_same_seed_same_bits_and_global_rng_untouched(mnist_root):
    data = MNIST(mnist_root)
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a = data.sample(30, torch.Generator().manual_seed(5))
    b = data.sample(30, torch.Generator().manual_seed(5))
    c = data.sample(30, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    ta = data.tensor(generator=torch.Generator().manual_seed(5))
    assert torch.equal(ta, data.tensor(generator=torch.Generator().manual_seed(5)))
    fresh = data.sample(30)  # no generator: a private, freshly seeded one
    assert not torch.equal(fresh, data.sample(30))
    assert not torch.equal(data.tensor(), data.tensor())
    data.held_out().sample(4, return_labels=True)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_held_out_gives_the_other_split_with_the_same_parameters(mnist_root):
    train = MNIST(mnist_root, dequantize=False)
    test = train.held_out()
    assert type(test) is MNIST and test.split == "test" and test.dequantize is False
    assert torch.equal(test.images, MNIST(mnist_root, split="test").images)
    again = test.held_out()
    assert again.split == "train" and torch.equal(again.images, train.images)
    # loaded once per process: rebuilding shares the cached arrays
    assert again.images.data_ptr() == train.images.data_ptr()


def test_replaced_files_are_read_again(tmp_path):
    write_split_files(tmp_path, gz=False)
    assert len(MNIST(tmp_path)) == N_TRAIN
    write_idx(tmp_path / "train-images-idx3-ubyte", TRAIN_IMAGES[:5])
    write_idx(tmp_path / "train-labels-idx1-ubyte", TRAIN_LABELS[:5])
    assert len(MNIST(tmp_path)) == 5


def test_missing_files_error_lists_every_path_tried(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as err:
        MNIST(root, split="test")
    message = str(err.value)
    for folder in (root / "MNIST" / "raw", root / "MNIST", root):
        for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
            assert str(folder / name) in message
            assert str(folder / f"{name}.gz") in message
    assert "torchvision.datasets.MNIST(" in message and "download=True" in message
    assert "yann.lecun.com" in message
    with pytest.raises(FileNotFoundError, match="fashion-mnist") as err:
        FashionMNIST(root)
    assert str(root / "FashionMNIST" / "raw" / "train-images-idx3-ubyte.gz") in str(err.value)


def test_a_lone_file_is_not_enough_and_is_reported(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", TRAIN_IMAGES)
    with pytest.raises(FileNotFoundError) as err:
        MNIST(tmp_path)
    assert f"{tmp_path / 'train-images-idx3-ubyte'} (found)" in str(err.value)


def test_mismatched_counts_are_rejected(tmp_path):
    write_split_files(tmp_path, gz=True, n_train_labels=N_TRAIN - 1)
    with pytest.raises(ValueError, match="disagree") as err:
        MNIST(tmp_path)
    assert "20 images" in str(err.value) and "19 labels" in str(err.value)
    assert len(MNIST(tmp_path, split="test")) == N_TEST  # the test split is intact


@pytest.mark.parametrize("images, labels, message", [
    (TRAIN_IMAGES.to(torch.int16), TRAIN_LABELS, "3-D uint8"),
    (TRAIN_IMAGES.reshape(N_TRAIN, -1), TRAIN_LABELS, "3-D uint8"),
    (TRAIN_IMAGES[:, :27, :27], TRAIN_LABELS, "28×28"),
    (TRAIN_IMAGES, TRAIN_LABELS.reshape(4, 5), "1-D uint8"),
    (TRAIN_IMAGES, TRAIN_LABELS + 1, "0..9, found 10"),
])
def test_wrong_file_contents_are_rejected(tmp_path, images, labels, message):
    write_idx(tmp_path / "train-images-idx3-ubyte", images.contiguous())
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels.contiguous())
    with pytest.raises(ValueError, match=message):
        MNIST(tmp_path)


def test_argument_checks(mnist_root):
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        MNIST(mnist_root, split="val")
    with pytest.raises(TypeError, match="split"):
        MNIST(mnist_root, split=0)
    with pytest.raises(TypeError, match="root"):
        MNIST(3)
    with pytest.raises(TypeError, match="dequantize"):
        MNIST(mnist_root, dequantize=1)
    data = MNIST(mnist_root)
    for n in (0, -3):
        with pytest.raises(ValueError, match="n must be at least 1"):
            data.sample(n)
    for n in (2.5, True, "10"):
        with pytest.raises(TypeError, match="n must be an integer"):
            data.sample(n)
    for dtype in (torch.int64, torch.uint8, "float32", None):
        with pytest.raises(TypeError, match="dtype"):
            data.sample(4, dtype=dtype)
        with pytest.raises(TypeError, match="dtype"):
            data.tensor(dtype)
    with pytest.raises(TypeError, match="generator"):
        data.sample(4, generator=0)
    with pytest.raises(TypeError, match="generator"):
        data.tensor(generator=0)
    with pytest.raises(TypeError, match="return_labels"):
        data.sample(4, return_labels="yes")


@pytest.mark.parametrize("levels", [17, 256])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_bin_bounds_stay_inside_each_bin(levels, dtype):
    # rounding (k + u) / levels to a narrow dtype can reach the next bin's edge; the clamp
    # bounds must lie inside [k, k + 1) / levels exactly
    lo, hi = image_module._bin_bounds(levels, dtype)
    for k in range(levels):
        assert Fraction(k, levels) <= Fraction(float(lo[k])) <= Fraction(float(hi[k]))
        assert Fraction(float(hi[k])) < Fraction(k + 1, levels)


def test_values_are_clamped_into_their_bins_for_every_dtype(mnist_root):
    data = MNIST(mnist_root)
    k = TRAIN_IMAGES.unsqueeze(1).long()
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        x = data.tensor(dtype, torch.Generator().manual_seed(0))
        assert x.dtype == dtype and torch.equal(floor_levels(x, 256), k), dtype


# -- scikit-learn's digits ----------------------------------------------------------------------

needs_sklearn = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None,
                                   reason="the digits need scikit-learn (extra 'images')")


@pytest.fixture(scope="module")
def digits() -> tuple[Digits, Digits]:
    train = ebmcore.create("dataset", "digits")
    return train, train.held_out()


@needs_sklearn
def test_digits_sizes_split_and_shape(digits):
    train, test = digits
    assert (train.split, test.split) == ("train", "test")
    assert len(train) + len(test) == 1797
    assert len(test) == round(0.2 * 1797) == 359
    assert set(train.indices.tolist()).isdisjoint(test.indices.tolist())
    assert sorted(train.indices.tolist() + test.indices.tolist()) == list(range(1797))
    for data in digits:
        assert data.event_shape == (1, 8, 8) and data.levels == 17 and data.n_classes == 10
        assert data.images.shape == (len(data), 1, 8, 8)
        assert data.images.dtype in (torch.uint8, torch.int64)
        assert int(data.images.min()) >= 0 and int(data.images.max()) == 16
        assert data.labels.dtype == torch.int64
        assert set(data.labels.tolist()) == set(range(10))  # all classes in each split
        assert math.isclose(data.bin_width, 1 / 17)
        assert not data.has_log_prob


@needs_sklearn
def test_digits_match_scikit_learn(digits):
    from sklearn.datasets import load_digits
    bunch = load_digits()
    for data in digits:
        rows = data.indices.numpy()
        assert torch.equal(data.images[:, 0].double(), torch.as_tensor(bunch.images[rows]))
        assert data.labels.tolist() == bunch.target[rows].tolist()


@needs_sklearn
def test_digits_split_is_fixed_by_its_seed():
    a, b = Digits(split="test", split_seed=7), Digits(split="test", split_seed=7)
    assert torch.equal(a.indices, b.indices)
    assert not torch.equal(a.indices, Digits(split="test").indices)
    smaller = Digits(split="test", test_fraction=0.5)
    assert len(smaller) == round(0.5 * 1797)
    assert smaller.held_out().test_fraction == 0.5


@needs_sklearn
def test_digits_samples_carry_consistent_labels(digits):
    train, _ = digits
    x, y = train.sample(100, torch.Generator().manual_seed(0), return_labels=True)
    assert x.shape == (100, 1, 8, 8) and x.dtype == torch.float32 and y.shape == (100,)
    assert bool((x >= 0).all()) and bool((x <= 1).all())
    levels = floor_levels(x, 17)
    flat = train.images.reshape(len(train), -1).long()
    for image, label in zip(levels.reshape(100, -1), y, strict=True):
        matches = (flat == image).all(dim=1).nonzero().flatten()
        assert len(matches) >= 1
        assert int(label) in train.labels[matches].tolist()


@needs_sklearn
def test_digits_tensor_and_bin_centres():
    data = Digits(split="test", dequantize=False)
    x, y = data.tensor(return_labels=True)
    assert torch.equal(x, ((data.images.double() + 0.5) / 17).float())
    assert torch.equal(y, data.labels)
    noisy = Digits(split="test").tensor(generator=torch.Generator().manual_seed(0))
    assert torch.equal(floor_levels(noisy, 17), data.images.long())
    assert not torch.equal(noisy, x)


@needs_sklearn
def test_digits_seeding_and_global_rng(digits):
    train, _ = digits
    torch.manual_seed(0)
    state = torch.random.get_rng_state()
    a = train.sample(50, torch.Generator().manual_seed(3))
    assert torch.equal(a, train.sample(50, torch.Generator().manual_seed(3)))
    assert not torch.equal(a, train.sample(50, torch.Generator().manual_seed(4)))
    train.sample(5)
    train.tensor()
    Digits(split_seed=11)
    assert torch.equal(torch.random.get_rng_state(), state)


@needs_sklearn
def test_digits_argument_checks():
    for value in (0, 1, 0.0, 1.0, -0.1, 1.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="test_fraction"):
            Digits(test_fraction=value)
    for value in ("0.2", None, True):
        with pytest.raises(TypeError, match="test_fraction"):
            Digits(test_fraction=value)
    with pytest.raises(ValueError, match="test_fraction.*both splits"):
        Digits(test_fraction=1e-4)  # rounds to no test image
    with pytest.raises(ValueError, match="split_seed"):
        Digits(split_seed=-1)
    with pytest.raises(TypeError, match="split_seed"):
        Digits(split_seed=1.0)
    with pytest.raises(ValueError, match="split"):
        Digits(split="validation")
    with pytest.raises(TypeError, match="dequantize"):
        Digits(dequantize="no")


@needs_sklearn
def test_registry_documents_every_parameter():
    names = set(ebmcore.names("dataset"))
    assert {"digits", "mnist", "fashion_mnist"} <= names
    for name, params in [("digits", ["split", "test_fraction", "split_seed", "dequantize"]),
                         ("mnist", ["root", "split", "dequantize"]),
                         ("fashion-mnist", ["root", "split", "dequantize"])]:
        info = ebmcore.describe("dataset", name)
        assert info["summary"]
        assert [p["name"] for p in info["parameters"]] == params
        assert all(p["doc"] for p in info["parameters"]), (name, info["parameters"])
    assert isinstance(ebmcore.create("dataset", "digits"), Digits)


def test_missing_scikit_learn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r'pip install "ebmcore\[images\]"'):
        image_module._load_digits.__wrapped__()  # bypass the per-process cache


def test_importing_the_plugin_does_not_import_scikit_learn():
    code = ("import sys, ebmcore_datasets.images, ebmcore_datasets.idx; "
            "assert 'sklearn' not in sys.modules, 'sklearn was imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
