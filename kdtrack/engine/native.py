"""The native step: native_mlp.c built with gcc on first use, loaded with ctypes, driven chunk by chunk.

It trains what the PyTorch step trains, for the stacks the studies are made of: MLPs 2 -> H1 -> H2 -> 2 on
the CPU, any loss a `LossMix` says (every distiller of kdtrack), Adam or AdamW with AMSGrad, any learning
rate schedule, batch norm, masks. `why_not` says in one line why a stack cannot take it.

The built library is cached (by default in ~/.cache/kdtrack, or $KDTRACK_CACHE) under a key made of the
source, the compiler, its flags and this CPU, so each machine builds it once (about 2 s).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..models.mlp import MLPConfig, StackedMLP

SOURCE = Path(__file__).with_name("native_mlp.c")
FLAGS = ("-O3", "-march=native", "-shared", "-fPIC")
HISTORY = ("train_loss", "train_acc", "val_loss", "val_acc", "selection_loss", "selection_acc")
SELECT_LOSS, SELECT_ACCURACY, SELECT_ACCURACY_1SE = range(3)
"""The kernel's selection criteria, numbered as native_mlp.c numbers them."""


class Split(ctypes.Structure):
    _fields_ = [("x", ctypes.c_void_p), ("y", ctypes.c_void_p), ("mask", ctypes.c_void_p),
                ("teacher", ctypes.c_void_p), ("count", ctypes.c_void_p),
                ("x_stride", ctypes.c_long), ("y_stride", ctypes.c_long), ("mask_stride", ctypes.c_long),
                ("teacher_stride", ctypes.c_long), ("np", ctypes.c_int)]


class Job(ctypes.Structure):
    _fields_ = [("n_models", ctypes.c_int), ("n_epochs", ctypes.c_int), ("first_epoch", ctypes.c_int),
                ("n_fit", ctypes.c_int), ("fit", ctypes.POINTER(Split)), ("valid", ctypes.POINTER(Split)),
                ("selection", ctypes.POINTER(Split)), ("selection_is_valid", ctypes.c_int),
                ("mix", ctypes.c_void_p), ("select_mix", ctypes.c_void_p), ("selectable", ctypes.c_void_p),
                ("criterion", ctypes.c_int), ("lr", ctypes.c_void_p), ("beta1", ctypes.c_void_p),
                ("beta2", ctypes.c_double), ("eps", ctypes.c_double), ("weight_decay", ctypes.c_double),
                ("decoupled", ctypes.c_int), ("amsgrad", ctypes.c_int),
                ("params", ctypes.c_void_p), ("moment1", ctypes.c_void_p), ("moment2", ctypes.c_void_p),
                ("moment2_max", ctypes.c_void_p), ("running", ctypes.c_void_p), ("best", ctypes.c_void_p),
                ("best_running", ctypes.c_void_p), ("best_loss", ctypes.c_void_p), ("best_error", ctypes.c_void_p),
                ("least_error", ctypes.c_void_p), ("best_epoch", ctypes.c_void_p), ("history", ctypes.c_void_p)]


def why_not(model: StackedMLP, device: torch.device) -> str | None:
    """None when the native step can train `model`, else the reason in a few words."""
    config = model.config
    if device.type != "cpu":
        return f"it runs on the CPU, and the stack is on {device.type}"
    if os.environ.get("KDTRACK_ENGINE") == "torch":
        return "KDTRACK_ENGINE=torch asks for the PyTorch step"
    if (config.in_features, len(config.hidden), config.n_classes) != (2, 2, 2):
        return "it is built for MLPs 2 -> H1 -> H2 -> 2"
    problem = _machine_problem()
    if problem:
        return problem
    try:
        library(config)
    except (OSError, subprocess.CalledProcessError) as error:
        return f"building it failed ({error})"
    return None


@cache
def _machine_problem() -> str | None:
    if platform.machine() not in ("x86_64", "AMD64"):
        return f"it needs an x86-64 CPU with AVX2, and this is {platform.machine()}"
    flags = _cpu_flags()
    if not {"avx2", "fma"} <= set(flags.split()):
        return "it needs a CPU with AVX2 and FMA"
    if shutil.which("gcc") is None:
        return "gcc, which builds it, is not installed"
    return None


def _cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    return next((line.split(":", 1)[1] for line in text.splitlines() if line.startswith("flags")), "")


@cache
def library(config: MLPConfig) -> ctypes.CDLL:
    """The kernel for `config`'s hidden sizes and batch norm, built once per machine."""
    h1, h2 = config.hidden
    flags = [*FLAGS, f"-DH1={h1}", f"-DH2={h2}", f"-DBN={int(config.batch_norm)}"]
    compiler = subprocess.run(["gcc", "--version"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    key = hashlib.sha256("\n".join([SOURCE.read_text(), compiler, *flags, _cpu_flags()]).encode()).hexdigest()[:16]
    folder = Path(os.environ.get("KDTRACK_CACHE", Path.home() / ".cache" / "kdtrack")) / "native"
    built = folder / f"mlp_{h1}_{h2}_{int(config.batch_norm)}_{key}.so"
    if not built.exists():
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, suffix=".so", delete=False) as temporary:
            pass
        try:  # build beside it, then rename: two processes building at once both end with a whole file
            subprocess.run(["gcc", *flags, "-o", temporary.name, str(SOURCE), "-lm"], check=True, capture_output=True)
            os.replace(temporary.name, built)
        finally:
            Path(temporary.name).unlink(missing_ok=True)
    lib = ctypes.CDLL(str(built))
    lib.train_epochs.argtypes = [ctypes.POINTER(Job)]
    lib.train_epochs.restype = ctypes.c_int
    return lib


class PaddedSplit:
    """A batch as the kernel reads it: x as (S, 2, Np), labels and mask (S, Np), teacher logits (M, 2, Np),
    Np a multiple of the kernel's block; S = 1 when every model shares the samples (stride 0), else M."""

    def __init__(self, x: Tensor, y: Tensor, mask: Tensor | None, teacher: Tensor | None, n_models: int, block: int):
        rows, n = x.shape[0], x.shape[1]
        if mask is not None:
            rows = max(rows, mask.shape[0])
        padded = -(-n // block) * block
        pad = (0, padded - n)
        self.x = torch.nn.functional.pad(x.transpose(1, 2).float(), pad).expand(rows, 2, padded).contiguous()
        self.y = torch.nn.functional.pad(y.float(), pad).expand(rows, padded).contiguous()
        ones = torch.ones(rows, n) if mask is None else mask.float().expand(rows, n)
        self.mask = torch.nn.functional.pad(ones, pad).contiguous()
        self.count = self.mask.sum(dim=1).expand(n_models).contiguous()
        self.teacher = None if teacher is None else torch.nn.functional.pad(
            teacher.transpose(1, 2).float(), pad).expand(n_models, 2, padded).contiguous()
        shared = 0 if rows == 1 else 1
        self.struct = Split(self.x.data_ptr(), self.y.data_ptr(), self.mask.data_ptr(),
                            0 if self.teacher is None else self.teacher.data_ptr(), self.count.data_ptr(),
                            2 * padded * shared, padded * shared, padded * shared, 2 * padded, padded)


class NativeStack:
    """The kernel's state for a stack: parameters, Adam's moments, batch-norm statistics, the best
    checkpoint; `run` trains a chunk of epochs."""

    def __init__(self, model: StackedMLP, batches: list, valid, selection, optim, beta2: float, eps: float):
        self.lib = library(model.config)
        self.model = model
        block = self.lib.block_size()
        m = model.n_models
        tensors = model.tensors()
        self.param_keys = [key for key in tensors if key.endswith(("weight", "bias"))]
        self.running_keys = [key for key in tensors if key.endswith(("running_mean", "running_var"))]
        self.params = _flat(tensors, self.param_keys, m)
        self.running = _flat(tensors, self.running_keys, m) if self.running_keys else torch.zeros(m, 1)
        if self.params.shape[1] != self.lib.parameter_count():
            raise ValueError(f"the kernel expects {self.lib.parameter_count()} parameters, the stack has {self.params.shape[1]}")
        self.moments = [torch.zeros_like(self.params) for _ in range(3)]
        self.best, self.best_running = self.params.clone(), self.running.clone()
        self.best_loss, self.best_error, self.least_error = (torch.full((m,), float("inf")) for _ in range(3))
        self.best_epoch = torch.zeros(m, dtype=torch.int64)
        self.fit = [PaddedSplit(b.x, b.y, b.mask, b.teacher, m, block) for b in batches]
        self.valid = PaddedSplit(valid.x, valid.y, valid.mask, valid.teacher, m, block)
        self.selection = self.valid if selection is None else PaddedSplit(
            selection.x, selection.y, selection.mask, selection.teacher, m, block)
        self.fit_structs = (Split * len(self.fit))(*(split.struct for split in self.fit))
        self.optim, self.beta2, self.eps = optim, beta2, eps

    def run(self, first: int, mix: np.ndarray, select_mix: np.ndarray, selectable: np.ndarray, criterion: int,
            lr: np.ndarray, beta1: np.ndarray) -> np.ndarray:
        """Train epochs first .. first + E - 1 (0-based); mix and select_mix (E, M, 5), selectable (E,), lr and
        beta1 (E * batches). The history rows (E, 6, M), as HISTORY names them."""
        m, epochs = self.model.n_models, len(selectable)
        history = np.empty((epochs, len(HISTORY), m), dtype=np.float32)
        arrays = [np.ascontiguousarray(mix, np.float32), np.ascontiguousarray(select_mix, np.float32),
                  np.ascontiguousarray(selectable, np.int32), np.ascontiguousarray(lr, np.float64),
                  np.ascontiguousarray(beta1, np.float64)]
        same = self.selection is self.valid and np.array_equal(arrays[0], arrays[1]) and criterion == SELECT_LOSS
        first_moment, second_moment, second_max = self.moments
        job = Job(m, epochs, first, len(self.fit), self.fit_structs, ctypes.pointer(self.valid.struct),
                  ctypes.pointer(self.selection.struct), int(same), *(a.ctypes.data for a in arrays[:3]),
                  criterion, arrays[3].ctypes.data, arrays[4].ctypes.data, self.beta2, self.eps,
                  self.optim.weight_decay, int(self.optim.optimizer == "adamw"), int(self.optim.amsgrad),
                  self.params.data_ptr(), first_moment.data_ptr(), second_moment.data_ptr(), second_max.data_ptr(),
                  self.running.data_ptr(), self.best.data_ptr(), self.best_running.data_ptr(),
                  self.best_loss.data_ptr(), self.best_error.data_ptr(), self.least_error.data_ptr(),
                  self.best_epoch.data_ptr(),
                  history.ctypes.data)
        code = self.lib.train_epochs(ctypes.byref(job))
        if code:
            raise RuntimeError(f"the native step failed with code {code}")
        return history

    def snapshot(self, best: bool) -> dict[str, Tensor]:
        """The best or the current tensors of the stack, keyed like StackedMLP.tensors()."""
        params, running = (self.best, self.best_running) if best else (self.params, self.running)
        shapes = {key: value.shape for key, value in self.model.tensors().items()}
        out = _unflat(params, self.param_keys, shapes)
        if self.running_keys:
            out.update(_unflat(running, self.running_keys, shapes))
        return out


def _flat(tensors: dict[str, Tensor], keys: list[str], m: int) -> Tensor:
    return torch.cat([tensors[key].reshape(m, -1).float() for key in keys], dim=1).contiguous()


def _unflat(flat: Tensor, keys: list[str], shapes: dict[str, torch.Size]) -> dict[str, Tensor]:
    out, at = {}, 0
    for key in keys:
        size = int(np.prod(shapes[key][1:]))
        out[key] = flat[:, at : at + size].reshape(shapes[key]).clone()
        at += size
    return out
