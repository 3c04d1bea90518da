"""The `kdtrack` command: parses options and calls the library, nothing more."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .distillers import DISTILL_METHODS
from .engine.optim import OPTIMIZERS, SCHEDULES
from .errors import InputError
from .models.mlp import parse_hidden
from .tasks.options import SELECTIONS, STEP_ORDERS, DistillOptions, TrainOptions, parse_seeds

DEFAULT_DATA = "data/sep1.00.pkl"
DEFAULT_SEEDS = "0,10,1234,99,2021"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except InputError as error:
        print(f"kdtrack: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kdtrack: interrupted; the open runs were marked FAILED", file=sys.stderr)
        return 130
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kdtrack",
        description="Knowledge-distillation experiments in PyTorch, every run tracked in MLflow "
        "(MLFLOW_TRACKING_URI, default ./mlflow.db with artifacts in ./mlruns).",
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    make = commands.add_parser("make-data", help="write a multi-domain dataset in the assignment's pickle schema",
                               description="Write a multi-domain dataset: three domains 120 degrees apart at radius "
                               "4*S, class 0 a disk and class 1 a ring in each; 2400 train / 300 valid.")
    make.add_argument("--separation", type=float, required=True, help="S: domain centres at radius 4*S")
    make.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    make.add_argument("--out", required=True, help="output path, .pkl (the assignment's schema) or .npz")
    make.set_defaults(run=_make_data)

    baseline = commands.add_parser("baseline", help="Q1: one MLP on all domains per seed",
                                   description="Train one MLP on the mixed domains per seed: a parent run with a "
                                   "child run per seed.")
    _add_job_options(baseline)
    baseline.set_defaults(run=_baseline)

    teachers = commands.add_parser("teachers", help="one expert MLP per domain and seed",
                                   description="Train one expert MLP per domain and seed on that domain's data "
                                   "alone: a parent run with a child run per seed and domain.")
    _add_job_options(teachers)
    teachers.set_defaults(run=_teachers)

    distill = commands.add_parser("distill", help="a student per seed from each sample's in-domain teacher",
                                  description="Distil a student per seed from each sample's in-domain teacher of "
                                  "the same seed. Teachers come from --teachers, or finished teachers of the same "
                                  "configuration are reused, or they are trained first.")
    _add_job_options(distill)
    _add_distill_options(distill)
    distill.set_defaults(run=_distill)
    return parser


def _add_job_options(parser: argparse.ArgumentParser) -> None:
    defaults = TrainOptions()
    job = parser.add_argument_group("data and runs")
    job.add_argument("--data", default=DEFAULT_DATA, help=f"dataset file, .pkl or .npz (default {DEFAULT_DATA})")
    job.add_argument("--seeds", default=DEFAULT_SEEDS, help=f"comma-separated seeds (default {DEFAULT_SEEDS})")
    job.add_argument("--experiment-name", default=None,
                     help="MLflow experiment (default: MLflow's active one, e.g. MLFLOW_EXPERIMENT_NAME)")
    job.add_argument("--log-every", type=int, default=0,
                     help="log per-epoch metrics every N epochs and the last (default 0: auto, at most ~1000 "
                     "points per metric); history.parquet always holds every epoch")

    train = parser.add_argument_group("training")
    train.add_argument("--epochs", type=_whole_number, default=defaults.epochs,
                       help=f"full-batch epochs (default {defaults.epochs}, the assignment's)")
    train.add_argument("--hidden", type=parse_hidden, default=defaults.hidden,
                       help="hidden layer sizes, comma-separated (default 20,10)")
    train.add_argument("--batch-norm", type=_boolean, nargs="?", const=True, default=defaults.batch_norm,
                       help="batch norm before each ReLU (default false)")
    train.add_argument("--lr", type=float, default=defaults.lr, help=f"learning rate (default {defaults.lr})")
    train.add_argument("--optimizer", choices=OPTIMIZERS, default=defaults.optimizer, help="default adam")
    train.add_argument("--weight-decay", type=float, default=defaults.weight_decay,
                       help="weight decay: L2 for adam, decoupled for adamw (default 0)")
    train.add_argument("--amsgrad", type=_boolean, nargs="?", const=True, default=defaults.amsgrad,
                       help="use the AMSGrad variant (default false)")
    train.add_argument("--schedule", choices=SCHEDULES, default=defaults.schedule,
                       help="learning-rate schedule; onecycle peaks at --lr (default constant)")
    train.add_argument("--early-stopping", type=_boolean, nargs="?", const=True, default=defaults.early_stopping,
                       help="log the checkpoint of least selection loss as the model, else the last epoch's "
                       "(default true)")
    train.add_argument("--selection", choices=SELECTIONS, default=defaults.selection,
                       help="the split that selects checkpoints: holdout, carved from train and stratified by "
                       "domain and class, or validation, as the report did (default holdout)")
    train.add_argument("--selection-fraction", type=float, default=defaults.selection_fraction,
                       help=f"share of train held out for selection (default {defaults.selection_fraction})")
    train.add_argument("--selection-seed", type=int, default=defaults.selection_seed,
                       help="seed of the holdout draw (default 0)")


def _add_distill_options(parser: argparse.ArgumentParser) -> None:
    defaults = DistillOptions()
    group = parser.add_argument_group("distillation")
    group.add_argument("--teachers", default=None,
                       help="run id of a `teachers` run to learn from (default: reuse or train teachers)")
    group.add_argument("--method", choices=DISTILL_METHODS, default=defaults.method,
                       help="kd: Hinton KD; anneal-cosine: annealing KD as the report ran it; anneal-jafari: as "
                       "Jafari et al. define it (default kd)")
    group.add_argument("--alpha", type=float, default=defaults.alpha,
                       help=f"weight of the teacher term (default {defaults.alpha})")
    group.add_argument("--temperature", type=float, default=defaults.temperature,
                       help=f"softmax temperature T, or T_max / tau_max for annealing (default {defaults.temperature:g})")
    group.add_argument("--step-order", choices=STEP_ORDERS, default=defaults.step_order,
                       help="joint: one step per epoch on all data; per-domain: one step per domain per epoch, "
                       "as the report did (default joint)")


def _train_options(args: argparse.Namespace) -> TrainOptions:
    return TrainOptions(
        epochs=args.epochs, hidden=args.hidden, batch_norm=args.batch_norm, lr=args.lr, optimizer=args.optimizer,
        weight_decay=args.weight_decay, amsgrad=args.amsgrad, schedule=args.schedule,
        early_stopping=args.early_stopping, selection=args.selection,
        selection_fraction=args.selection_fraction, selection_seed=args.selection_seed,
    )


def _job(args: argparse.Namespace):
    from .tasks.multidomain import Job

    if args.log_every < 0:
        raise InputError(f"log-every must be 0 (auto) or positive, got {args.log_every}")
    return Job(args.data, parse_seeds(args.seeds), _train_options(args), args.experiment_name, args.log_every)


def _make_data(args: argparse.Namespace) -> None:
    from .data import make_multidomain, save_multidomain

    save_multidomain(make_multidomain(args.separation, args.seed, name=Path(args.out).stem), args.out)
    print(args.out)


def _baseline(args: argparse.Namespace) -> None:
    from .tasks.multidomain import run_baseline

    print(run_baseline(_job(args)))


def _teachers(args: argparse.Namespace) -> None:
    from .tasks.multidomain import run_teachers

    print(run_teachers(_job(args)))


def _distill(args: argparse.Namespace) -> None:
    from .tasks.multidomain import run_distill

    distill = DistillOptions(args.method, args.alpha, args.temperature, args.step_order)
    print(run_distill(_job(args), distill, teachers=args.teachers or None))


def _whole_number(text: str) -> int:
    value = int(text) if text.isdigit() else float(text)
    if value != int(value) or value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(value)


def _boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
