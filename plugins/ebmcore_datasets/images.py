"""Image data sets: scikit-learn's 8×8 digits, MNIST and Fashion-MNIST.

Each data set is a fixed split (``"train"`` or ``"test"``) of labelled images whose pixels
take ``levels`` discrete intensities. The images are kept as integer level indices ``k``;
:meth:`ImageDataset.sample` and :meth:`ImageDataset.tensor` map them to ``[0, 1]``, either
dequantised, ``(k + u) / levels`` with ``u ~ U[0, 1)`` per pixel (the usual way to give
discrete data a density), or as bin centres ``(k + 0.5) / levels``.

The arrays are loaded once per process and shared (see :func:`functools.lru_cache` on the
loaders), so building a data set again, or its :meth:`~ImageDataset.held_out` split, is
cheap. The shared tensors must not be modified in place.
"""

from __future__ import annotations

import functools
import math
import os
from numbers import Real
from pathlib import Path
from typing import Any, ClassVar

import torch

from ebmcore.dataset import ImageDataset as ImageDataProtocol
from ebmcore_datasets._common import check_dtype, check_sample_args, resolve_generator
from ebmcore_datasets.idx import read_idx

__all__ = ["MNIST", "Digits", "FashionMNIST", "ImageDataset"]

SPLITS = ("train", "test")

# Dequantise this many pixels at a time, so tensor() of a large split needs only a few
# tens of MiB of float64 scratch space rather than several GiB.
_CHUNK_PIXELS = 1 << 22


def _check_split(split: Any) -> str:
    """Return ``split`` after checking it is ``"train"`` or ``"test"``."""
    if not isinstance(split, str):
        raise TypeError(f"split must be 'train' or 'test', got {type(split).__name__}")
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return split


def _check_bool(name: str, value: Any) -> bool:
    """Return ``value`` after checking it is a bool (not merely truthy)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


@functools.lru_cache(maxsize=16)
def _bin_bounds(levels: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The smallest and largest ``dtype`` values inside each bin ``[k, k + 1) / levels``.

    Rounding ``(k + u) / levels`` to ``dtype`` can land on a bin edge (for ``u`` near 1 it
    may round up to ``(k + 1) / levels``); clamping into these bounds keeps every value in
    its own bin, so ``floor(x * levels)`` recovers ``k``.
    """
    edges = torch.arange(levels + 1, dtype=torch.float64) / levels
    cast = edges.to(dtype)
    up = torch.full_like(cast, math.inf)
    lo = torch.where(cast.double() < edges, torch.nextafter(cast, up), cast)[:-1]
    hi = torch.where(cast.double() >= edges, torch.nextafter(cast, -up), cast)[1:]
    if bool((lo > hi).any()):
        raise ValueError(f"dtype {dtype} is too coarse to hold a value inside each of "
                         f"{levels} intensity bins; use float32 or float64")
    return lo, hi


class ImageDataset(ImageDataProtocol):
    """Base of the image data sets: a fixed split of labelled images with discrete levels.

    It implements the core's image-data protocol (:class:`ebmcore.dataset.ImageDataset`).

    Subclasses load their arrays and call :meth:`_attach`; they keep their constructor
    arguments in ``_params`` so that :meth:`held_out` can rebuild the data set with the other
    split.

    Attributes:
        event_shape: The shape ``(C, H, W)`` of one image.
        levels: The number of discrete intensity levels (pixels hold ``0 .. levels - 1``).
        n_classes: The number of label classes.
        split: ``"train"`` or ``"test"``.
        images: ``(N, C, H, W)`` integer level indices of this split (shared; do not modify).
        labels: ``(N,)`` int64 class labels of this split (shared; do not modify).
        dequantize: Whether :meth:`sample` and :meth:`tensor` add uniform noise within each
            intensity bin (``True``) or return bin centres (``False``).
    """

    event_shape: tuple[int, int, int] = (1, 28, 28)
    levels: int = 256
    n_classes: int = 10
    split: str
    images: torch.Tensor
    labels: torch.Tensor
    dequantize: bool
    _params: dict[str, Any]

    def _attach(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        """Store this split's arrays after checking they fit the class's declared shapes."""
        if images.ndim != 4 or tuple(images.shape[1:]) != tuple(self.event_shape):
            raise ValueError(f"{type(self).__name__}: images must have shape "
                             f"(N, {', '.join(map(str, self.event_shape))}), got "
                             f"{tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"{type(self).__name__}: labels must have shape "
                             f"({images.shape[0]},), got {tuple(labels.shape)}")
        if images.shape[0] < 1:
            raise ValueError(f"{type(self).__name__}: the {self.split} split holds no images")
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        """The number of images in this split."""
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        """Show the constructor arguments and the split's size."""
        args = ", ".join(f"{k}={v!r}" for k, v in self._params.items())
        return f"{type(self).__name__}({args}) with {len(self)} images"

    def _to_unit(self, k: torch.Tensor, generator: torch.Generator | None,
                 dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """Map level indices ``k`` to ``[0, 1]``: dequantised with ``generator``, or centres."""
        lo, hi = _bin_bounds(self.levels, dtype)  # also rejects dtypes too coarse to hold
        if not self.dequantize:
            centres = ((torch.arange(self.levels, dtype=torch.float64) + 0.5)
                       / self.levels).to(dtype=dtype, device=device)
            return centres[k.to(device=device, dtype=torch.int64)]
        assert generator is not None
        lo, hi = lo.to(device), hi.to(device)
        out = torch.empty(k.shape, dtype=dtype, device=device)
        rows = max(1, _CHUNK_PIXELS // max(1, math.prod(k.shape[1:])))
        for start in range(0, k.shape[0], rows):
            chunk = k[start:start + rows].to(device=device, dtype=torch.int64)
            u = torch.rand(chunk.shape, generator=generator, dtype=torch.float64,
                           device=device)
            x = ((chunk + u) / self.levels).to(dtype)
            out[start:start + rows] = torch.minimum(torch.maximum(x, lo[chunk]), hi[chunk])
        return out

    def sample(self, n: int, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float32, *,
               return_labels: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` images uniformly, with replacement, from this split.

        Only ``generator`` supplies randomness (first the image indices, then the
        dequantisation noise); the global RNG is never used.

        Args:
            n: Number of images.
            generator: Source of randomness; ``None`` uses a fresh private generator. The
                result lies on the generator's device.
            dtype: Floating-point dtype of the images.
            return_labels: Also return the ``(n,)`` int64 labels of the drawn images.

        Returns:
            ``(n, C, H, W)`` values in ``[0, 1]``: ``(k + u) / levels`` with
            ``u ~ U[0, 1)`` per pixel when ``dequantize`` is set, else ``(k + 0.5) / levels``;
            or the pair ``(images, labels)`` when ``return_labels`` is set.
        """
        n, generator, dtype = check_sample_args(n, generator, dtype)
        return_labels = _check_bool("return_labels", return_labels)
        device = generator.device
        index = torch.randint(len(self), (n,), generator=generator, device=device).cpu()
        x = self._to_unit(self.images[index], generator, dtype, device)
        if return_labels:
            return x, self.labels[index].to(device)
        return x

    def tensor(self, dtype: torch.dtype = torch.float32,
               generator: torch.Generator | None = None, *,
               return_labels: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Return the whole split, in order, mapped to ``[0, 1]`` like :meth:`sample`.

        Args:
            dtype: Floating-point dtype of the images.
            generator: Source of the dequantisation noise; ``None`` uses a fresh private
                generator. The result lies on the generator's device (the CPU without one).
            return_labels: Also return the ``(N,)`` int64 labels.

        Returns:
            ``(N, C, H, W)`` values in ``[0, 1]``, or the pair ``(images, labels)``.
        """
        dtype = check_dtype(dtype)
        return_labels = _check_bool("return_labels", return_labels)
        if generator is not None or self.dequantize:
            generator = resolve_generator(generator)  # checks the type; a fresh one is on CPU
            device = generator.device
        else:
            device = torch.device("cpu")
        x = self._to_unit(self.images, generator, dtype, device)
        if return_labels:
            return x, self.labels.to(device)
        return x

    def held_out(self) -> ImageDataset:
        """Return the same data set, with the same parameters, for the other split."""
        other = "test" if self.split == "train" else "train"
        return type(self)(**{**self._params, "split": other})


# -- scikit-learn's digits -----------------------------------------------------------------

_INSTALL_HINT = 'pip install "ebmcore[images]" (or pip install scikit-learn)'


@functools.lru_cache(maxsize=1)
def _load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as ``(N, 1, 8, 8)`` uint8 levels 0..16 and ``(N,)`` int64 labels."""
    try:
        # imported here so that importing the plugin does not pull in scikit-learn
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise ImportError(
            f"the digits data set needs scikit-learn, which is not installed: {_INSTALL_HINT}"
        ) from err
    bunch = load_digits()
    values = torch.as_tensor(bunch.images, dtype=torch.float64)
    if (values.ndim != 3 or tuple(values.shape[1:]) != (8, 8) or values.min() < 0
            or values.max() > 16 or not bool((values == values.round()).all())):
        raise ValueError(f"scikit-learn's load_digits() returned unexpected images: shape "
                         f"{tuple(values.shape)}, expected (N, 8, 8) integers in 0..16")
    labels = torch.as_tensor(bunch.target).to(torch.int64)
    return values.to(torch.uint8).unsqueeze(1).contiguous(), labels


@functools.lru_cache(maxsize=32)
def _digits_split(test_fraction: float, split_seed: int,
                  split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The indices, images and labels of one split of the digits."""
    images, labels = _load_digits()
    total = labels.shape[0]
    n_test = round(test_fraction * total)
    if not 1 <= n_test <= total - 1:
        raise ValueError(f"test_fraction={test_fraction!r} of {total} images leaves "
                         f"{n_test} test and {total - n_test} train images; both splits "
                         f"need at least one")
    # a private generator: the split is fixed by split_seed and leaves the global RNG alone
    perm = torch.randperm(total, generator=torch.Generator().manual_seed(split_seed))
    index = (perm[:n_test] if split == "test" else perm[n_test:]).sort().values
    return index, images[index], labels[index]


class Digits(ImageDataset):
    """The 1,797 8×8 handwritten digits that scikit-learn ships (``load_digits``).

    Pixels hold 17 levels (0..16); the images keep their original order within each split.
    The train/test split is a fixed random permutation: the first
    ``round(test_fraction * 1797)`` images of ``torch.randperm`` under
    ``manual_seed(split_seed)`` form the test split (not stratified). Needs scikit-learn:
    ``pip install "ebmcore[images]"``.

    Args:
        split: Which split to hold: ``"train"`` or ``"test"``.
        test_fraction: Fraction of the images in the test split, in (0, 1).
        split_seed: Seed of the permutation that fixes the split (a non-negative integer).
        dequantize: Add uniform noise within each intensity bin when sampling (``True``),
            or return bin centres (``False``).

    Attributes:
        indices: ``(N,)`` int64 row numbers of this split's images in ``load_digits()``.
    """

    event_shape = (1, 8, 8)
    levels = 17
    n_classes = 10

    def __init__(self, split: str = "train", test_fraction: float = 0.2, split_seed: int = 0,
                 dequantize: bool = True) -> None:
        self.split = _check_split(split)
        if isinstance(test_fraction, bool) or not isinstance(test_fraction, Real):
            raise TypeError(f"test_fraction must be a number, got "
                            f"{type(test_fraction).__name__}")
        test_fraction = float(test_fraction)
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must lie strictly between 0 and 1, got "
                             f"{test_fraction!r}")
        if isinstance(split_seed, bool) or not isinstance(split_seed, int):
            raise TypeError(f"split_seed must be an integer, got {type(split_seed).__name__}")
        if split_seed < 0:
            raise ValueError(f"split_seed must be at least 0, got {split_seed}")
        self.dequantize = _check_bool("dequantize", dequantize)
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self._params = {"split": self.split, "test_fraction": test_fraction,
                        "split_seed": split_seed, "dequantize": self.dequantize}
        self.indices, images, labels = _digits_split(test_fraction, split_seed, self.split)
        self._attach(images, labels)


# -- MNIST-style IDX files ------------------------------------------------------------------

def _file_names(split: str) -> tuple[str, str]:
    """The standard image and label file names of a split."""
    prefix = "train" if split == "train" else "t10k"
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


@functools.lru_cache(maxsize=8)
def _load_idx_pair(images_path: str, labels_path: str,
                   stamp: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Read and cross-check one split's IDX files.

    ``stamp`` (modification times and sizes) is part of the cache key only, so that files
    replaced on disk are read again.
    """
    del stamp
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.dtype != torch.uint8 or images.ndim != 3:
        raise ValueError(f"{images_path}: expected a 3-D uint8 array of images (N, 28, 28), "
                         f"got {images.dtype} of shape {tuple(images.shape)}")
    if tuple(images.shape[1:]) != (28, 28):
        raise ValueError(f"{images_path}: expected 28×28 images, got "
                         f"{images.shape[1]}×{images.shape[2]}")
    if labels.dtype != torch.uint8 or labels.ndim != 1:
        raise ValueError(f"{labels_path}: expected a 1-D uint8 array of labels, got "
                         f"{labels.dtype} of shape {tuple(labels.shape)}")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"the image and label files disagree: {images_path} holds "
                         f"{images.shape[0]} images but {labels_path} holds "
                         f"{labels.shape[0]} labels")
    if images.shape[0] == 0:
        raise ValueError(f"{images_path}: the file holds no images")
    if int(labels.max()) > 9:
        raise ValueError(f"{labels_path}: labels must lie in 0..9, found {int(labels.max())}")
    return images.unsqueeze(1), labels.to(torch.int64)


class _IDXImageDataset(ImageDataset):
    """An MNIST-style data set read from the four standard IDX files under ``root``."""

    event_shape = (1, 28, 28)
    levels = 256
    n_classes = 10
    #: The folder torchvision downloads into (``root/<folder>/raw``).
    _folder: ClassVar[str] = ""
    #: Where the files can be downloaded by hand.
    _home: ClassVar[str] = ""

    def __init__(self, root: str | os.PathLike[str] = "data", split: str = "train",
                 dequantize: bool = True) -> None:
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"root must be a str or os.PathLike, got {type(root).__name__}")
        self.split = _check_split(split)
        self.dequantize = _check_bool("dequantize", dequantize)
        self.root = root
        self._params = {"root": root, "split": self.split, "dequantize": self.dequantize}
        images_path, labels_path = self._find_files(Path(root))
        stamp = tuple(v for p in (images_path, labels_path)
                      for v in (p.stat().st_mtime_ns, p.stat().st_size))
        self._attach(*_load_idx_pair(str(images_path), str(labels_path), stamp))

    def _find_files(self, root: Path) -> tuple[Path, Path]:
        """Return this split's image and label files: the first folder holding both wins."""
        names = _file_names(self.split)
        tried: list[Path] = []
        for folder in (root / self._folder / "raw", root / self._folder, root):
            found: list[Path] = []
            for name in names:
                # the plain file first: torchvision keeps both, and it reads faster
                for path in (folder / name, folder / f"{name}.gz"):
                    tried.append(path)
                    if path.is_file():
                        found.append(path)
                        break
            if len(found) == 2:
                return found[0], found[1]
        title = type(self).__name__
        listing = "\n".join(f"  {p}{' (found)' if p.is_file() else ''}" for p in tried)
        all_names = ", ".join(n for s in SPLITS for n in _file_names(s))
        raise FileNotFoundError(
            f"{title} {self.split} files not found under {str(root)!r}. Looked for "
            f"{names[0]} and {names[1]} (each optionally .gz), both in one folder, at:\n"
            f"{listing}\n"
            f"To get them, let torchvision download them into this root:\n"
            f"  python -c \"import torchvision; torchvision.datasets.{title}("
            f"{str(root)!r}, download=True)\"\n"
            f"or download the four files ({all_names}, usually as .gz) from {self._home} "
            f"into {root / self._folder / 'raw'}."
        )


class MNIST(_IDXImageDataset):
    """The MNIST handwritten digits: 60,000 train and 10,000 test 28×28 images, 256 levels.

    Read from the standard IDX files (``train-images-idx3-ubyte``,
    ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``,
    each optionally gzipped) found in ``root/MNIST/raw/`` (where torchvision downloads
    them), ``root/MNIST/`` or ``root/`` itself. Nothing is downloaded.

    Args:
        root: The folder holding the files, or torchvision's ``MNIST/raw/`` layout.
        split: Which split to hold: ``"train"`` or ``"test"``.
        dequantize: Add uniform noise within each intensity bin when sampling (``True``),
            or return bin centres (``False``).
    """

    _folder = "MNIST"
    _home = ("https://yann.lecun.com/exdb/mnist/ (or torchvision's mirror "
             "https://ossci-datasets.s3.amazonaws.com/mnist/)")


class FashionMNIST(_IDXImageDataset):
    """Zalando's Fashion-MNIST: 60,000 train and 10,000 test 28×28 clothing images.

    Read from the standard IDX files (``train-images-idx3-ubyte``,
    ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``,
    each optionally gzipped) found in ``root/FashionMNIST/raw/`` (where torchvision
    downloads them), ``root/FashionMNIST/`` or ``root/`` itself. Nothing is downloaded.

    Args:
        root: The folder holding the files, or torchvision's ``FashionMNIST/raw/`` layout.
        split: Which split to hold: ``"train"`` or ``"test"``.
        dequantize: Add uniform noise within each intensity bin when sampling (``True``),
            or return bin centres (``False``).
    """

    _folder = "FashionMNIST"
    _home = "https://github.com/zalandoresearch/fashion-mnist"
