"""The `kdtrack` command: parses options and calls the library, nothing more."""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import NoReturn

from .distillers import DISTILL_METHODS
from .engine import DEVICES, SELECT_ON
from .engine.optim import OPTIMIZERS, SCHEDULES
from .distillers.simkd import LOSSES as SIMKD_LOSSES, PROJECTORS as SIMKD_PROJECTORS
from .errors import InputError, StoreError
from .images.data import DATASETS as IMAGE_DATASETS
from .images.options import ImageKDOptions, SimKDOptions
from .models.zoo import ARCHS
from .models.mlp import parse_hidden
from .multidomain.cells.tune import DEFAULT_GRIDS
from .multidomain.options import SELECTIONS, STEP_ORDERS, STUDENT_SELECT_ON, DistillOptions, TrainOptions, parse_seeds
from .tracking import ACCURACY_METRICS, store_errors

DEFAULT_DATASETS = ("data/sep1.00.pkl", "data/sep0.75.pkl", "data/sep0.50.pkl", "data/sep0.25.pkl")
DEFAULT_DATA = DEFAULT_DATASETS[0]
DEFAULT_CONFIG = "configs/default.yaml"
DEFAULT_SEEDS = "0,10,1234,99,2021"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with store_errors():
            args.run(args)
    except InputError as error:
        print(f"kdtrack: error: {error}", file=sys.stderr)
        return 2
    except StoreError as error:
        print(f"kdtrack: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("kdtrack: interrupted; any run it had open is marked FAILED", file=sys.stderr)
        return 130
    return 0


def _interrupt(signum, frame) -> None:
    """SIGTERM (a killed job, a scheduler's time limit) ends the open runs as Ctrl-C does."""
    raise KeyboardInterrupt


class _Parser(argparse.ArgumentParser):
    """A bad option is one line on stderr, as every other bad input is (argparse puts its usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"kdtrack: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
    make.add_argument("--n-valid", type=_whole_number, default=300,
                      help="validation points, a multiple of 3 (default 300, as the real files; more measure "
                      "accuracy more precisely)")
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
    _add_job_options(distill, student=True)
    _add_distill_options(distill)
    distill.add_argument("--tuned", default=None,
                         help="run id of a finished `tune` run of the same --method whose chosen values (alpha, "
                         "temperature) replace --alpha and --temperature")
    distill.set_defaults(run=_distill)

    tune = commands.add_parser("tune", help="search a method's alpha and temperature on the selection split",
                               description="Train a student of --method for every combination of a grid (alpha "
                               "and T for kd and kd-mixture, tau_max for anneal-jafari) and seed, as one stack, and "
                               "score each on the selection split (the holdout, or validation under --selection "
                               "validation). One nested run per trial; the parent run logs best_alpha and/or "
                               "best_temperature, which `distill --tuned RUN_ID` uses.")
    _add_job_options(tune, student=True)
    _add_distill_options(tune, grid=True)
    tune.set_defaults(run=_tune)

    study = commands.add_parser("study", help="the whole grid: datasets x methods x seeds, resumable",
                                description="Run every method of a study config on every dataset and seed, "
                                "nested under one study run. Cells whose configuration already has a FINISHED "
                                "run are skipped, so a study resumes where it stopped.")
    study.add_argument("--config", default=DEFAULT_CONFIG, help=f"study config, YAML (default {DEFAULT_CONFIG})")
    study.add_argument("--data", default=",".join(DEFAULT_DATASETS),
                       help="comma-separated dataset files (default: the four embedded ones in data/)")
    study.add_argument("--seeds", default=DEFAULT_SEEDS, help=f"comma-separated seeds (default {DEFAULT_SEEDS})")
    study.add_argument("--epochs", type=_optional_whole_number, default=None,
                       help="override the config's epochs (empty: the config's)")
    study.add_argument("--experiment-name", default=None, help="MLflow experiment (default: MLflow's active one)")
    study.add_argument("--device", choices=DEVICES, default="auto", help="cpu, cuda or auto (default auto)")
    study.add_argument("--workers", type=_workers, default=0,
                       help="cells trained at once, each in a process of its own with one torch thread "
                       "(default 0: one per core)")
    study.set_defaults(run=_study)

    compare = commands.add_parser("compare", help="tables and figures over the store, logged as a run of its own",
                                  description="Summarise the FINISHED per-seed runs of the baseline and the "
                                  "students (mean and sample std of the logged models' validation accuracy, in "
                                  "percent) per dataset x method; teachers apart with --teachers. The tables and "
                                  "figures (accuracy, loss curves, decision boundaries, annealing schedules, paired "
                                  "differences) are logged in a run of its own (kdtrack.task compare) in the "
                                  "experiment it compares.")
    compare.add_argument("--experiment-name", default=None, help="one experiment (default: all)")
    compare.add_argument("--format", choices=("markdown", "csv"), default="markdown", help="default markdown")
    compare.add_argument("--teachers", type=_boolean, nargs="?", const=True, default=False,
                         help="summarise teachers per dataset x domain instead")
    compare.add_argument("--paired", metavar="METHOD", default=None,
                         help="instead, each method's per-seed difference from METHOD (points), its mean, std "
                         "and paired t-test p-value")
    compare.add_argument("--metric", choices=ACCURACY_METRICS, default=ACCURACY_METRICS[0],
                         help="which validation accuracy: the logged model's, the best checkpoint's or the last "
                         "epoch's (default model_val_acc)")
    compare.add_argument("--out", default=None, help="also write the tables and figures into this folder")
    compare.set_defaults(run=_compare)

    register = commands.add_parser("register", help="register a run's model under a name and alias",
                                   description="Register the logged model of one per-seed run as a new version of "
                                   "--name in MLflow's model registry, move --alias to it, and tag the version with "
                                   "its dataset, method, seed, selection, config and data hashes and validation "
                                   "accuracy. Prints the models:/NAME@ALIAS URI and the version.")
    register.add_argument("--run-id", default=None, help="the per-seed run whose model to register")
    register.add_argument("--best", type=_boolean, nargs="?", const=True, default=False,
                          help="instead, the FINISHED per-seed run of --method (and --dataset) in --experiment-name (default: any) "
                          "whose model has the highest model_val_acc (ties: lower best_val_loss, then earlier)")
    register.add_argument("--experiment-name", default=None, help="with --best: the experiment to choose from (default: every experiment, as compare)")
    register.add_argument("--method", default=None, help="with --best: the method (kdtrack.method tag)")
    register.add_argument("--dataset", default=None, help="with --best: only this dataset (file stem)")
    register.add_argument("--name", required=True, help="registered model name")
    register.add_argument("--alias", default="champion", help="alias moved to the new version (default champion)")
    register.set_defaults(run=_register)

    teacher = commands.add_parser("train-teacher", help="image path: a ResNet per seed on the labels",
                                  description="Train a CIFAR ResNet per seed on the labels (method ce), to teach "
                                  "image-kd and simkd students: a parent run with a child run per seed. Runs "
                                  "unchanged under torchrun (DistributedDataParallel; only the first process "
                                  "writes to MLflow).")
    _add_image_options(teacher, default_arch="resnet32x4")
    teacher.set_defaults(run=_train_teacher)

    image_kd = commands.add_parser("image-kd", help="image path: Hinton KD from a logged teacher",
                                   description="Train a ResNet student per seed with Hinton KD, (1 - alpha) CE + "
                                   "alpha T^2 KL, from the teacher logged at --teacher.")
    _add_image_options(image_kd, default_arch="resnet8x4", teacher=True)
    kd_defaults = ImageKDOptions()
    image_kd.add_argument("--alpha", type=float, default=kd_defaults.alpha,
                          help=f"weight of the teacher term (default {kd_defaults.alpha})")
    image_kd.add_argument("--temperature", type=float, default=kd_defaults.temperature,
                          help=f"softmax temperature T (default {kd_defaults.temperature:g})")
    image_kd.set_defaults(run=_image_kd)

    simkd = commands.add_parser("simkd", help="image path: SimKD, the reused teacher classifier",
                                description="Train a ResNet student per seed with SimKD (Chen et al., CVPR 2022): "
                                "a projector maps the student's penultimate map into the teacher's and the teacher's "
                                "frozen classifier predicts. The logged model is student backbone + projector + "
                                "teacher classifier.")
    _add_image_options(simkd, default_arch="resnet8x4", teacher=True)
    simkd_defaults = SimKDOptions()
    simkd.add_argument("--factor", type=int, default=simkd_defaults.factor,
                       help=f"the projector's bottleneck: teacher channels / factor (default {simkd_defaults.factor})")
    simkd.add_argument("--loss", choices=SIMKD_LOSSES, default=simkd_defaults.loss,
                       help="l2: mean squared error of the maps (the paper's); kl: T^2 KL between the class "
                       "distributions the reused classifier gives the projected maps and the teacher's (default l2)")
    simkd.add_argument("--projector", choices=SIMKD_PROJECTORS, default=simkd_defaults.projector,
                       help="single: the penultimate maps; multi: and a second projector on the previous stage; "
                       "all-layer: a projector per stage pair (default single)")
    simkd.add_argument("--multi-weight", type=float, default=simkd_defaults.multi_weight,
                       help="with --projector multi: the penultimate pair's weight, the previous stage's is the rest "
                       "(default 2/3)")
    simkd.add_argument("--use-labels", type=_boolean, nargs="?", const=True, default=simkd_defaults.use_labels,
                       help="samples the teacher misclassifies add no loss; the mean is over the rest (default false)")
    simkd.add_argument("--temperature", type=float, default=simkd_defaults.temperature,
                       help=f"with --loss kl: the softmax temperature (default {simkd_defaults.temperature:g})")
    simkd.set_defaults(run=_simkd)
    return parser


def _add_image_options(parser: argparse.ArgumentParser, default_arch: str, teacher: bool = False) -> None:
    """The options every image command shares. Left out, a training option is the dataset's recipe's."""
    job = parser.add_argument_group("data and runs")
    job.add_argument("--dataset", choices=IMAGE_DATASETS, default="digits",
                     help="digits (scikit-learn's, 8x8, runs on a CPU in minutes) or cifar100 (needs --data; "
                     "default digits)")
    job.add_argument("--data", default=None, help="cifar100: the folder its python tarball unpacks to (train, test, meta)")
    job.add_argument("--seeds", default=DEFAULT_SEEDS, help=f"comma-separated seeds (default {DEFAULT_SEEDS})")
    job.add_argument("--experiment-name", default=None, help="MLflow experiment (default: MLflow's active one)")
    job.add_argument("--device", choices=DEVICES, default="auto", help="cpu, cuda or auto (default auto)")
    job.add_argument("--log-every", type=int, default=0, help="log per-epoch metrics every N epochs (default 0: auto)")
    if teacher:
        job.add_argument("--teacher", required=True,
                         help="the teacher's model: runs:/RUN_ID/model or models:/NAME@ALIAS of a train-teacher run")
    train = parser.add_argument_group("training (left out: the dataset's recipe)")
    train.add_argument("--arch", choices=ARCHS, default=default_arch, help=f"default {default_arch}")
    train.add_argument("--epochs", type=_optional_whole_number, default=None, help="epochs (cifar100 240, digits 10)")
    train.add_argument("--lr", type=_floats, default=None,
                       help="SGD learning rate (cifar100 0.05, digits 0.01); several, comma-separated, sweep them: a "
                       "cell per rate nested under one sweep run")
    train.add_argument("--milestones", type=lambda text: _whole_numbers(text) or None, default=None,
                       help="epochs after which the rate drops x0.1 (default: 150,180,210 of 240, scaled to --epochs)")
    train.add_argument("--batch-size", type=_whole_number, default=None, help="over all processes (default 64)")
    train.add_argument("--weight-decay", type=float, default=None, help="default 5e-4")
    train.add_argument("--select-on", choices=SELECT_ON, default=None,
                       help="what selects the checkpoint on the holdout (default accuracy, ties by cross-entropy; "
                       "accuracy-1se: the latest epoch within one standard error of the best)")
    train.add_argument("--selection-fraction", type=float, default=None, help="share of train held out (default 0.1)")
    train.add_argument("--selection-seed", type=int, default=None, help="seed of the holdout draw (default 0)")


def _add_job_options(parser: argparse.ArgumentParser, student: bool = False) -> None:
    defaults = TrainOptions()
    select_on = STUDENT_SELECT_ON if student else defaults.select_on
    job = parser.add_argument_group("data and runs")
    job.add_argument("--data", default=DEFAULT_DATA, help=f"dataset file, .pkl or .npz (default {DEFAULT_DATA})")
    job.add_argument("--seeds", default=DEFAULT_SEEDS, help=f"comma-separated seeds (default {DEFAULT_SEEDS})")
    job.add_argument("--experiment-name", default=None,
                     help="MLflow experiment (default: MLflow's active one, e.g. MLFLOW_EXPERIMENT_NAME)")
    job.add_argument("--device", choices=DEVICES, default="auto",
                     help="where the PyTorch step trains: cpu, cuda, or auto (cuda when there is one); the native "
                     "step trains MLP stacks on the CPU (default auto)")
    job.add_argument("--log-every", type=int, default=0,
                     help="log per-epoch metrics every N epochs and the last (default 0: auto, about 50 points "
                     "per metric); history.parquet always holds every epoch")

    train = parser.add_argument_group("training")
    train.add_argument("--epochs", type=_whole_number, default=defaults.epochs,
                       help=f"full-batch epochs (default {defaults.epochs}, the assignment's)")
    train.add_argument("--hidden", type=_hidden, default=defaults.hidden,
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
                       help="log the checkpoint that --select-on prefers as the model, else the last epoch's "
                       "(default true)")
    train.add_argument("--select-on", choices=SELECT_ON, default=select_on,
                       help="what selects the checkpoint on the selection split: the training objective, the "
                       "cross-entropy against the labels, the accuracy (ties by cross-entropy), or accuracy-1se, "
                       f"the latest epoch within one standard error of the best accuracy (default {select_on})")
    train.add_argument("--selection", choices=SELECTIONS, default=defaults.selection,
                       help="the split that selects checkpoints: holdout, carved from train and stratified by "
                       "domain and class, or validation, as the report did (default holdout)")
    train.add_argument("--selection-fraction", type=float, default=defaults.selection_fraction,
                       help=f"share of train held out for selection (default {defaults.selection_fraction})")
    train.add_argument("--selection-seed", type=int, default=defaults.selection_seed,
                       help="seed of the holdout draw (default 0)")


def _add_distill_options(parser: argparse.ArgumentParser, grid: bool = False) -> None:
    defaults = DistillOptions()
    group = parser.add_argument_group("distillation")
    group.add_argument("--teachers", default=None,
                       help="run id of a `teachers` run to learn from (default: reuse or train teachers)")
    group.add_argument("--step-order", choices=STEP_ORDERS, default=defaults.step_order,
                       help="joint: one step per epoch on all data; per-domain: one step per domain per epoch, "
                       "as the report did (default joint)")
    if grid:
        group.add_argument("--method", choices=tuple(DEFAULT_GRIDS), default=defaults.method,
                           help="the method whose options are tuned (default kd)")
        group.add_argument("--alphas", type=_floats, default=None,
                           help="alpha grid (default: the method's, "
                           f"{','.join(f'{a:g}' for a in DEFAULT_GRIDS['kd']['alpha'])} for kd)")
        group.add_argument("--temperatures", type=_floats, default=None,
                           help="temperature grid, tau_max for anneal-jafari (default: the method's, "
                           f"{','.join(f'{t:g}' for t in DEFAULT_GRIDS['kd']['temperature'])} for kd, "
                           f"{','.join(f'{t:g}' for t in DEFAULT_GRIDS['anneal-jafari']['temperature'])} for anneal-jafari)")
        return
    group.add_argument("--method", choices=DISTILL_METHODS, default=defaults.method,
                       help="kd: Hinton KD; kd-mixture: Hinton KD from every domain's teacher weighted by "
                       "p(domain | x); anneal-cosine: annealing KD as the report ran it; anneal-jafari: as "
                       "Jafari et al. define it (default kd)")
    group.add_argument("--alpha", type=float, default=defaults.alpha,
                       help=f"weight of the teacher term (default {defaults.alpha})")
    group.add_argument("--temperature", type=float, default=defaults.temperature,
                       help=f"softmax temperature T, or T_max / tau_max for annealing (default {defaults.temperature:g})")


def _train_options(args: argparse.Namespace) -> TrainOptions:
    return TrainOptions(
        epochs=args.epochs, hidden=args.hidden, batch_norm=args.batch_norm, lr=args.lr, optimizer=args.optimizer,
        weight_decay=args.weight_decay, amsgrad=args.amsgrad, schedule=args.schedule,
        early_stopping=args.early_stopping, select_on=args.select_on, selection=args.selection,
        selection_fraction=args.selection_fraction, selection_seed=args.selection_seed,
    )


def _job(args: argparse.Namespace):
    from .multidomain.tasks import Job

    return Job(args.data, parse_seeds(args.seeds), _train_options(args), args.experiment_name, args.log_every,
               args.device)


def _make_data(args: argparse.Namespace) -> None:
    from .multidomain import make_multidomain, save_multidomain

    save_multidomain(make_multidomain(args.separation, args.seed, n_valid=args.n_valid, name=Path(args.out).stem), args.out)
    print(args.out)


def _baseline(args: argparse.Namespace) -> None:
    from .multidomain.tasks import run_baseline

    print(run_baseline(_job(args)))


def _teachers(args: argparse.Namespace) -> None:
    from .multidomain.tasks import run_teachers

    print(run_teachers(_job(args)))


def _distill(args: argparse.Namespace) -> None:
    from .multidomain.tasks import run_distill

    distill = DistillOptions(args.method, args.alpha, args.temperature, args.step_order)
    print(run_distill(_job(args), distill, teachers=args.teachers or None, tuned=args.tuned or None))


def _tune(args: argparse.Namespace) -> None:
    from .multidomain.cells.tune import TuneGrid
    from .multidomain.tasks import run_tune

    grid = TuneGrid(args.method, args.alphas or None, args.temperatures or None)  # empty (an MLproject default): the method's
    print(run_tune(_job(args), grid, args.step_order, teachers=args.teachers or None))


def _study(args: argparse.Namespace) -> None:
    from .multidomain.study import run_study

    paths = [path.strip() for path in args.data.split(",") if path.strip()]
    print(run_study(args.config, paths, parse_seeds(args.seeds), args.epochs, args.experiment_name, args.device,
                    args.workers))


def _compare(args: argparse.Namespace) -> None:
    from .compare.report import build_report, log_compare_run, print_notes
    from .compare.tables import render
    from .tracking import finished_seed_runs, study_order

    experiment = args.experiment_name or None
    report = build_report(finished_seed_runs(experiment), args.teachers, args.paired or None, args.metric,
                          order=study_order(experiment))
    print_notes(report, "kdtrack compare")
    print(render(report.tables[f"paired_{args.paired}" if args.paired else "table"], args.format))
    if args.out:
        report.write(args.out)
    params = {"experiment": args.experiment_name or "", "teachers": str(args.teachers).lower(),
              "paired": args.paired or "", "metric": args.metric}
    run_id = log_compare_run(report, args.experiment_name or None, params)
    print(f"kdtrack compare: tables and figures logged in run {run_id}", file=sys.stderr)


def _register(args: argparse.Namespace) -> None:
    from .tracking import best_run, register, use_experiment

    if bool(args.run_id) == bool(args.best):
        raise InputError("register needs --run-id ID or --best (with --method), one of them")
    if args.best and not args.method:
        raise InputError("register --best needs --method")
    run_id = args.run_id or best_run(args.experiment_name or None, args.method, args.dataset or None)
    use_experiment(args.experiment_name or None)
    registered = register(run_id, args.name, args.alias)
    print(f"{registered.uri} version {registered.version}")


def _image_job(args: argparse.Namespace):
    from .images.options import recipe
    from .images.tasks import ImageJob

    lrs = args.lr or ()
    train = recipe(args.dataset, arch=args.arch, epochs=args.epochs, lr=lrs[0] if lrs else None,
                   milestones=args.milestones, batch_size=args.batch_size, weight_decay=args.weight_decay,
                   select_on=args.select_on, selection_fraction=args.selection_fraction,
                   selection_seed=args.selection_seed)
    return ImageJob(args.dataset, args.data or None, parse_seeds(args.seeds), train, lrs if len(lrs) > 1 else (),
                    args.experiment_name or None, args.log_every, args.device)


def _train_teacher(args: argparse.Namespace) -> None:
    from .images.tasks import run_train_teacher

    _print_run(run_train_teacher(_image_job(args)))


def _image_kd(args: argparse.Namespace) -> None:
    from .images.tasks import run_image_kd

    _print_run(run_image_kd(_image_job(args), args.teacher, ImageKDOptions(args.alpha, args.temperature)))


def _simkd(args: argparse.Namespace) -> None:
    from .images.tasks import run_simkd

    options = SimKDOptions(args.factor, args.loss, args.projector, args.multi_weight, args.use_labels, args.temperature)
    _print_run(run_simkd(_image_job(args), args.teacher, options))


def _print_run(run_id: str | None) -> None:
    """The run id on stdout, from the one process that logged it."""
    if run_id:
        print(run_id)


def _hidden(text: str) -> tuple[int, ...]:
    try:
        return parse_hidden(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _whole_numbers(text: str) -> tuple[int, ...]:
    return tuple(_whole_number(part) for part in text.split(",") if part.strip())


def _whole_number(text: str) -> int:
    try:
        value = float(text)
        whole = int(value)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value != whole or whole < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return whole


def _workers(text: str) -> int:
    """0 (one per core) or a positive count."""
    return 0 if text.strip() == "0" else _whole_number(text)


def _optional_whole_number(text: str) -> int | None:
    return _whole_number(text) if text else None


def _boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
