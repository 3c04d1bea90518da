"""The image path's whole tracked command against a plain PyTorch loop with the same network, data, optimiser,
crops and per-epoch passes, side by side: `kdtrack train-teacher --dataset digits --arch resnet8x4` and
`kdtrack simkd` (ResNet-32x4 -> ResNet-8x4), each at several sizes (epochs x seeds), interleaved.

    .venv/bin/python benchmarks/image_speed.py [--sizes 3x2,10x2,30x2,10x5] [--repeats 1] [--simkd] [--threads N]

Each side is a process timed from start to exit, wall seconds; beside them, the CPU seconds the whole machine was
busy meanwhile (/proc/stat: every process, kdtrack's seed workers included; read it on an idle machine).
The plain loop is what a researcher writes by hand: scikit-learn's digits split as kdtrack splits them (80/20
test, a 10% stratified holdout of train), uint8 images as tensors, per epoch a shuffle, per batch of 64 random
1-pixel crops and normalisation, SGD (momentum 0.9, weight decay 5e-4, lr 0.01, x0.1 at the recipe's
milestones), then a test pass and a holdout pass (batches of 512 under no_grad) and a deep copy of the state
when the holdout's accuracy improves (ties by its cross-entropy); at the end the best checkpoint is scored on
test and saved with torch.save. No tracking. kdtrack runs in a store that exists already (SQLite, in a
temporary folder; the one-off cost of creating a store is printed apart), with everything it logs.

The ratio is plain / kdtrack: above 1, the tracked command is the faster. Both processes get the same
environment (with --threads, OMP_NUM_THREADS=N for both) and so the same torch threads: the plain loop trains
its seeds one after another with all of them, kdtrack its seeds side by side, a process per thread up to the
seeds (kdtrack.spine.workers.seed_workers). Quoted in docs/image-speed.md; run by hand.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow

from kdtrack.tracking.store import STATE_DICT_PATH

PLAIN = r'''
import copy, sys
import numpy as np, torch, torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from kdtrack.models import NetworkConfig, build_network

epochs, seeds, folder = int(sys.argv[1]), [int(s) for s in sys.argv[2].split(",")], sys.argv[3]
teacher_file = sys.argv[4] if len(sys.argv) > 4 else ""
digits = load_digits()
images = np.rint(digits.images * 255 / 16).astype(np.uint8)[:, None]
x, x_test, y, y_test = train_test_split(images, digits.target, test_size=0.2, stratify=digits.target, random_state=0)
fit, held = train_test_split(np.arange(len(y)), test_size=0.1, stratify=y, random_state=0)
fit, held = np.sort(fit), np.sort(held)
mean, std = float((x / 255.0).mean()), float((x / 255.0).std())
x_fit, y_fit = torch.from_numpy(x[fit]), torch.from_numpy(y[fit])
splits = {"test": (torch.from_numpy(x_test), torch.from_numpy(y_test)), "holdout": (torch.from_numpy(x[held]), torch.from_numpy(y[held]))}
milestones = sorted({max(1, round(f * epochs)) for f in (150 / 240, 180 / 240, 210 / 240)} - {epochs})

def normalise(batch):
    return (batch.float() / 255 - mean) / std

def crop(batch, generator, pad=1):
    padded = F.pad(batch, (pad,) * 4)
    offsets = torch.randint(0, 2 * pad + 1, (len(batch), 2), generator=generator).tolist()
    return torch.stack([image[:, top:top + 8, left:left + 8] for image, (top, left) in zip(padded, offsets)])

def projector(channels_in, channels_out, factor=2):
    middle = channels_out // factor
    return nn.Sequential(nn.Conv2d(channels_in, middle, 1, bias=False), nn.BatchNorm2d(middle), nn.ReLU(),
                         nn.Conv2d(middle, middle, 3, padding=1, bias=False), nn.BatchNorm2d(middle), nn.ReLU(),
                         nn.Conv2d(middle, channels_out, 1, bias=False), nn.BatchNorm2d(channels_out), nn.ReLU())

teacher = None
if teacher_file:
    teacher = build_network(NetworkConfig("resnet32x4", 10, 1))
    teacher.load_state_dict(torch.load(teacher_file, weights_only=True))
    teacher.eval().requires_grad_(False)

def forward(student, project, batch, labels):
    """(logits, loss): cross-entropy, or SimKD (the projected map's squared error to the teacher's, and the
    teacher's classifier on it)."""
    if teacher is None:
        logits = student(batch)
        return logits, F.cross_entropy(logits, labels)
    with torch.no_grad():
        target = teacher.features(batch)[-1]
    projected = project(student.features(batch)[-1])
    return teacher.classify(projected), F.mse_loss(projected, target)

def evaluate(student, project, split):
    images, labels = split
    loss = correct = 0.0
    with torch.no_grad():
        for start in range(0, len(labels), 512):
            batch, target = normalise(images[start:start + 512]), labels[start:start + 512]
            logits, batch_loss = forward(student, project, batch, target)
            loss += float(batch_loss) * len(target)
            correct += int((logits.argmax(1) == target).sum())
    return loss / len(labels), correct / len(labels)

for seed in seeds:
    torch.manual_seed(seed)
    student = build_network(NetworkConfig("resnet8x4", 10, 1))
    project = projector(256, 256) if teacher is not None else None
    params = list(student.parameters()) if teacher is None else \
        [*(p for name, p in student.named_parameters() if not name.startswith("classifier.")), *project.parameters()]
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, 0.1)
    generator = torch.Generator().manual_seed(seed)
    best, best_state = (-1.0, float("inf")), None
    for epoch in range(epochs):
        student.train()
        if project is not None:
            project.train()
        order = torch.randperm(len(y_fit), generator=generator)
        for indices in order.split(64):
            batch = normalise(crop(x_fit[indices], generator))
            logits, loss = forward(student, project, batch, y_fit[indices])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
        student.eval()
        if project is not None:
            project.eval()
        test_loss, test_acc = evaluate(student, project, splits["test"])
        held_loss, held_acc = evaluate(student, project, splits["holdout"])
        if held_acc > best[0] or (held_acc == best[0] and held_loss < best[1]):
            best = (held_acc, held_loss)
            best_state = copy.deepcopy((student.state_dict(), project.state_dict() if project else None))
    student.load_state_dict(best_state[0])
    if project is not None:
        project.load_state_dict(best_state[1])
    evaluate(student, project, splits["test"])
    torch.save(best_state, f"{folder}/seed{seed}.pt")
'''


def timed(command: list[str], cwd: str, env: dict[str, str]) -> tuple[float, float]:
    """(wall, busy CPU) seconds of a process, from its start until it and every process holding its output have
    ended. The CPU is the machine's (kdtrack's seed workers are its fork server's children, whose times its exit
    does not collect), so it counts whatever else runs meanwhile."""
    start, busy = time.perf_counter(), _busy_cpu()
    subprocess.run(command, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start, _busy_cpu() - busy


def _busy_cpu() -> float:
    """CPU seconds this machine has spent busy since it started (Linux: not idle, not waiting on I/O)."""
    user, nice, system, idle, iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def teacher_run(folder: str, env: dict[str, str]) -> tuple[str, str]:
    """A ResNet-32x4 teacher trained by kdtrack (1 epoch, seed 0) in the store: its model URI, and its
    checkpoint as a file for the plain loop."""
    argv = [sys.executable, "-m", "kdtrack", "train-teacher", "--dataset", "digits", "--arch", "resnet32x4",
            "--epochs", "1", "--seeds", "0"]
    parent = subprocess.run(argv, cwd=folder, env=env, check=True, capture_output=True, text=True).stdout.split()[-1]
    child = mlflow.search_runs(search_all_experiments=True, output_format="list",
                               filter_string=f"tags.mlflow.parentRunId = '{parent}'")[0]
    checkpoint = mlflow.artifacts.download_artifacts(run_id=child.info.run_id, artifact_path=STATE_DICT_PATH,
                                                     dst_path=folder)
    return f"runs:/{child.info.run_id}/model", checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="3x2,10x2,30x2,10x5", help="epochs x seeds, comma-separated")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--simkd", action="store_true", help="also SimKD, ResNet-32x4 -> ResNet-8x4")
    parser.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS for both sides (default: unset)")
    args = parser.parse_args()
    sizes = [tuple(map(int, size.split("x"))) for size in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder}/mlflow.db",
               "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        if args.threads:
            env["OMP_NUM_THREADS"] = str(args.threads)
        mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
        print(f"load average at the start: {_load()}")
        start = time.perf_counter()
        teacher, checkpoint = teacher_run(folder, env)
        print(f"(a fresh store, then a 1-epoch ResNet-32x4 teacher in it: {time.perf_counter() - start:.1f} s)\n")
        kinds = [("train-teacher", [], "")] + ([("simkd", ["--teacher", teacher], checkpoint)] if args.simkd else [])
        print("| command | epochs x seeds | kdtrack (s) | plain (s) | ratio | busy CPU: kdtrack / plain (s) |\n"
              "|---|---|---|---|---|---|", flush=True)
        for repeat in range(args.repeats):
            for epochs, n_seeds in sizes:
                seeds = ",".join(map(str, range(n_seeds)))
                for command, options, plain_teacher in kinds:
                    tracked = [sys.executable, "-m", "kdtrack", command, "--dataset", "digits", "--arch", "resnet8x4",
                               "--epochs", str(epochs), "--seeds", seeds, *options]
                    plain = [sys.executable, "-c", PLAIN, str(epochs), seeds, folder, plain_teacher]
                    first, second = (tracked, plain) if repeat % 2 == 0 else (plain, tracked)
                    times = {id(first): timed(first, folder, env), id(second): timed(second, folder, env)}
                    (kd_wall, kd_cpu), (plain_wall, plain_cpu) = times[id(tracked)], times[id(plain)]
                    print(f"| {command} | {epochs} x {n_seeds} | {kd_wall:.1f} | {plain_wall:.1f} | "
                          f"{plain_wall / kd_wall:.2f} | {kd_cpu:.1f} / {plain_cpu:.1f} |", flush=True)
    print(f"\nload average at the end: {_load()}")


def _load() -> str:
    return f"{' '.join(f'{load:.1f}' for load in os.getloadavg())} (1, 5, 15 min) on {os.cpu_count()} cores"


if __name__ == "__main__":
    main()
