"""What the pre-scan of a pickle (kdtrack.pickle_scan) costs beside the unpickling it guards, on a CIFAR-100
train file of the real size (50,000 images, generated in the official format), against the alternatives:
pickletools' own opcode walker, and Python's pure-Python unpickler (which a bounded loader could subclass).

    .venv/bin/python benchmarks/pickle_scan.py [--images 50000]

Each time is the best of three, in seconds, on one core. Run by hand on an idle machine.
"""
from __future__ import annotations

import argparse
import io
import pickle
import pickletools
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from cifar_folder import write_cifar100_folder  # noqa: E402 (the tests' generator of CIFAR-100's format)
from kdtrack import pickle_scan, safe_pickle  # noqa: E402


class _PurePython(pickle._Unpickler):
    def find_class(self, module: str, name: str) -> object:
        return safe_pickle._ALLOWED_GLOBALS[(module, name)]


def best_of_three(work) -> float:
    times = []
    for _ in range(3):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    images = parser.parse_args().images
    with tempfile.TemporaryDirectory() as folder:
        raw = (write_cifar100_folder(folder, n_train=images, n_test=10) / "train").read_bytes()
    opcodes = sum(1 for _ in pickletools.genops(raw))
    print(f"train file: {len(raw):,} bytes, {opcodes:,} opcodes")
    timings = {
        "kdtrack.pickle_scan.scan": lambda: pickle_scan.scan(raw),
        "C unpickler (what the scan guards)": lambda: safe_pickle._NumpyOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load(),
        "safe_pickle.load (scan + C unpickler)": lambda: safe_pickle.load(raw, encoding="bytes"),
        "pickletools.genops, walked only": lambda: sum(1 for _ in pickletools.genops(raw)),
        "pure-Python unpickler, no checks": lambda: _PurePython(io.BytesIO(raw), encoding="bytes").load(),
    }
    for name, work in timings.items():
        print(f"{name:40s} {best_of_three(work):6.2f} s")


if __name__ == "__main__":
    main()
