"""The image datasets: CIFAR-100 from the folder its python tarball unpacks to, read without running code
from it, and scikit-learn's digits (shipped with the library, no download). Images are kept as uint8
(N, H, W, C); kdtrack.images.augment turns batches of them into network inputs.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import socket
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from .. import files, safe_pickle
from ..errors import InputError
from ..spine.data import fingerprint_of, stratified_holdout

DATASETS = ("digits", "cifar100")
CIFAR100_MEAN = (0.5071, 0.4867, 0.4408)
CIFAR100_STD = (0.2675, 0.2565, 0.2761)
CIFAR_SIZE = 32
DIGITS_SOURCE = "sklearn.datasets.load_digits"
DIGITS_TEST_FRACTION = 0.2


@dataclass(frozen=True, eq=False)
class ImageSplit:
    x: np.ndarray  # (N, H, W, C) uint8
    y: np.ndarray  # (N,) int64

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.x, self.y)


@dataclass(frozen=True, eq=False)
class ImageData:
    """A dataset: its name (which names the runs), the folder it came from, its splits, its class names,
    and the per-channel mean and std of its pixels on a [0, 1] scale."""

    name: str
    source: str
    train: ImageSplit
    test: ImageSplit
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @cached_property
    def fingerprint(self) -> str:
        """A hash of the content, so that a moved copy of a folder is recognised as the same data."""
        return fingerprint_of(self.train.x, self.train.y, self.test.x, self.test.y)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def __reduce__(self):
        """The dataset crosses to another process (a worker, a machine of a cluster) as a reference, its name,
        folder and fingerprint, and is read there again: not 180 MB of CIFAR-100 arrays pickled per cell."""
        folder = None if self.source == DIGITS_SOURCE else str(Path(self.source).resolve())
        return _reloaded, (self.name, folder, self.source, self.fingerprint)

    @property
    def channels(self) -> int:
        return self.train.x.shape[3]

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.train.x.shape[1], self.train.x.shape[2]


def load_image_data(dataset: str, folder: str | None = None) -> ImageData:
    if dataset == "digits":
        if folder:
            raise InputError(f"--data is for cifar100; digits ships with scikit-learn (got --data {folder})")
        return load_digits()
    if dataset == "cifar100":
        if not folder:
            raise InputError("cifar100 needs --data: the folder CIFAR-100's python tarball unpacks to (train, test, meta)")
        return load_cifar100(folder)
    raise InputError(f"dataset must be one of {', '.join(DATASETS)}, got {dataset!r}")


@functools.lru_cache(maxsize=2)
def _reloaded(dataset: str, folder: str | None, source: str, fingerprint: str) -> ImageData:
    """A dataset that crossed as a reference (ImageData.__reduce__), read where it arrived (once per process)
    and checked against the fingerprint it left with; its source named as where it left from."""
    data = load_image_data(dataset, folder)
    if data.fingerprint != fingerprint:
        raise InputError(f"{folder or dataset} on {socket.gethostname()}: holds other data (fingerprint "
                         f"{data.fingerprint}) than the study's {dataset} ({fingerprint}); every machine needs "
                         "the same data folder, at the same path")
    return dataclasses.replace(data, source=source)


def load_digits() -> ImageData:
    """scikit-learn's 1,797 8x8 digits (values 0..16, scaled to 0..255), a fixed stratified 80/20 split."""
    from sklearn.datasets import load_digits as sklearn_digits  # scikit-learn takes a second to import: only here
    from sklearn.model_selection import train_test_split

    digits = sklearn_digits()
    images = np.rint(digits.images * 255 / 16).astype(np.uint8)[..., None]
    x_train, x_test, y_train, y_test = train_test_split(images, digits.target.astype(np.int64),
                                                        test_size=DIGITS_TEST_FRACTION, stratify=digits.target,
                                                        random_state=0)
    scaled = x_train / 255.0
    return ImageData("digits", DIGITS_SOURCE, ImageSplit(x_train, y_train), ImageSplit(x_test, y_test),
                     tuple(map(str, range(10))), (float(scaled.mean()),), (float(scaled.std()),))


def load_cifar100(folder: str | os.PathLike) -> ImageData:
    """The python version's folder: `train` and `test` (dicts of b"data" (N, 3072) uint8, channel-planar
    32x32 images, and b"fine_labels"), and `meta` (b"fine_label_names"). Every problem is one line."""
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"{folder}: no such folder (expected CIFAR-100's python folder with train, test, meta)")
    if not folder.is_dir():
        raise InputError(f"{folder}: is not a folder (expected CIFAR-100's python folder with train, test, meta)")
    names = _fine_label_names(folder / "meta")
    train, test = (_cifar_split(folder / part, len(names)) for part in ("train", "test"))
    return ImageData("cifar100", str(folder), train, test, names, CIFAR100_MEAN, CIFAR100_STD)


def holdout(split: ImageSplit, fraction: float, seed: int) -> tuple[ImageSplit, ImageSplit]:
    """(fit, held out): `fraction` of each class held out, drawn with `seed`; a ValueError when either part
    would be empty."""
    fit, held = stratified_holdout(split.y, fraction, seed)
    if not len(fit) or not len(held):
        raise ValueError(f"holding out {fraction} of each class of {len(split.y)} images leaves "
                         f"{len(fit)} to train on and {len(held)} to select on")
    return ImageSplit(split.x[fit], split.y[fit]), ImageSplit(split.x[held], split.y[held])


# ---- reading ---------------------------------------------------------------------------------


def _read_dict(path: Path, keys: tuple[bytes, ...]) -> dict:
    try:
        payload = safe_pickle.load(files.read_regular_file(path), encoding="bytes")
    except files.FileProblem as problem:
        raise InputError(f"{path}: {problem} (CIFAR-100's python folder holds the files train, test and meta)") from None
    except safe_pickle.PickleProblem as problem:
        raise InputError(f"{path}: {problem}") from None
    if not isinstance(payload, dict):
        raise InputError(f"{path}: expected a dict, got {type(payload).__name__}")
    missing = [key.decode() for key in keys if key not in payload]
    if missing:
        raise InputError(f"{path}: missing {', '.join(missing)}")
    return payload


def _fine_label_names(path: Path) -> tuple[str, ...]:
    names = _read_dict(path, (b"fine_label_names",))[b"fine_label_names"]
    if not isinstance(names, list) or not names or not all(isinstance(name, bytes) for name in names):
        raise InputError(f"{path}: fine_label_names must be a non-empty list of names")
    return tuple(name.decode("latin1") for name in names)


def _cifar_split(path: Path, n_classes: int) -> ImageSplit:
    payload = _read_dict(path, (b"data", b"fine_labels"))
    try:
        data = safe_pickle.to_numpy("data", payload[b"data"])
    except safe_pickle.PickleProblem as problem:
        raise InputError(f"{path}: {problem}") from None
    width = 3 * CIFAR_SIZE * CIFAR_SIZE
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != width:
        shape = getattr(data, "shape", type(data).__name__)
        raise InputError(f"{path}: data must be uint8 rows of {width} values (N x {width}), got {shape}")
    labels = payload[b"fine_labels"]
    if not isinstance(labels, list) or len(labels) != len(data) or not all(type(y) is int for y in labels):
        raise InputError(f"{path}: fine_labels must be {len(data)} integers, one per image")
    if labels and (min(labels) < 0 or max(labels) >= n_classes):  # as Python ints: 2**70 fits no int64
        raise InputError(f"{path}: fine_labels must lie in 0..{n_classes - 1} (meta names {n_classes} classes), "
                         f"got {safe_pickle.shorten(str(min(labels)))}..{safe_pickle.shorten(str(max(labels)))}")
    y = np.asarray(labels, dtype=np.int64)
    images = data.reshape(-1, 3, CIFAR_SIZE, CIFAR_SIZE).transpose(0, 2, 3, 1).copy()
    return ImageSplit(images, y)
