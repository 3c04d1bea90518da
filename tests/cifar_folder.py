"""A generated dataset in CIFAR-100's exact python format, for the tests: no CIFAR-100 download is reachable
from the test machines, and the reader must be exercised on the real format (protocol-2 pickles, bytes keys)."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from kdtrack.images.data import CIFAR_SIZE


def write_cifar100_folder(folder: str | os.PathLike, n_train: int, n_test: int, n_classes: int = 100,
                          seed: int = 0) -> Path:
    """A generated dataset in CIFAR-100's python format (protocol-2 pickles with bytes keys, as the official
    files): each class a colour of its own plus noise, so that it can be learnt."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    colours = rng.integers(40, 216, size=(n_classes, 3))
    for part, n in (("train", n_train), ("test", n_test)):
        labels = np.arange(n) % n_classes
        images = colours[labels][:, :, None, None] + rng.integers(-40, 41, size=(n, 3, CIFAR_SIZE, CIFAR_SIZE))
        record = {b"data": images.clip(0, 255).astype(np.uint8).reshape(n, -1), b"fine_labels": labels.tolist(),
                  b"coarse_labels": (labels // 5).tolist(), b"batch_label": part.encode(),
                  b"filenames": [f"{part}_{i}.png".encode() for i in range(n)]}
        (folder / part).write_bytes(pickle.dumps(record, protocol=2))
    meta = {b"fine_label_names": [f"class{i}".encode() for i in range(n_classes)],
            b"coarse_label_names": [f"group{i}".encode() for i in range((n_classes + 4) // 5)]}
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder
