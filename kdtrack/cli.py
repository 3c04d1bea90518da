"""The `kdtrack` command: parses options and calls the library, nothing more.

A command's options are built only when that command runs (or its help is asked for), each with the imports
its choices and defaults need: `kdtrack --help` imports neither torch nor MLflow."""
from __future__ import annotations

import argparse
import atexit
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from .errors import ClusterError, InputError, StoreError, TrainingDiverged, one_line
from .images import SEED_WORKER_IMPORTS

DEFAULT_CONFIG = "configs/default.yaml"


def run() -> NoReturn:
    """The `kdtrack` command: main, then the exit handlers (MLflow's, multiprocessing's, kdtrack's), and the
    process ends without unloading its modules: with torch, MLflow and pandas loaded that takes ~3 s and serves
    no one (every run has ended and every file is closed by then)."""
    code = main()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    name = next((word for word in argv if word in COMMANDS), "")
    args = build_parser(name).parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if name and COMMANDS[name].seed_worker_imports:
            _start_seed_workers(args, COMMANDS[name].seed_worker_imports)
        from .lifetime import end_with_mlflow_run
        from .tracking import store_errors

        end_with_mlflow_run()
        with store_errors():
            args.run(args)
    except InputError as error:
        print(f"kdtrack: error: {one_line(str(error))}", file=sys.stderr)
        return 2
    except (StoreError, ClusterError, TrainingDiverged) as error:
        print(f"kdtrack: error: {one_line(str(error))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("kdtrack: interrupted; any run it had open is marked FAILED", file=sys.stderr)
        return 130
    return 0


def _start_seed_workers(args: argparse.Namespace, imports: tuple[str, ...]) -> None:
    """The processes that train the seeds start importing now, beside this process's imports."""
    from .engine import resolve_device
    from .spine.options import parse_seeds
    from .spine.workers import start_seed_workers

    start_seed_workers(len(parse_seeds(args.seeds)), resolve_device(args.device), imports)


def _interrupt(signum, frame) -> None:
    """SIGTERM (a killed job, a scheduler's time limit) ends the open runs as Ctrl-C does."""
    raise KeyboardInterrupt


class _Parser(argparse.ArgumentParser):
    """A bad option is one line on stderr, as every other bad input is (argparse puts its usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"kdtrack: error: {message} (see {self.prog} --help)\n")


@dataclass(frozen=True)
class Command:
    help: str
    description: str
    options: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], None]
    seed_worker_imports: tuple[str, ...] = ()
    """What a process that trains the command's seeds imports, where seeds may train in several processes
    (kdtrack.spine.workers)."""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Every command's parser; with `only`, that command's options alone are built (the others are named,
    with their help): "" builds none."""
    parser = _Parser(
        prog="kdtrack",
        description="Knowledge-distillation experiments in PyTorch, every run tracked in MLflow "
        "(MLFLOW_TRACKING_URI, default ./mlflow.db with artifacts in ./mlruns).",
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        subparser = commands.add_parser(name, help=command.help, description=command.description)
        if only is None or only == name:
            command.options(subparser)
        subparser.set_defaults(run=command.run)
    return parser


# ---- each command's options ----------------------------------------------------------------------------


def _make_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--separation", type=float, required=True, help="S: domain centres at radius 4*S")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--n-valid", type=_whole_number, default=300,
                        help="validation points, a multiple of 3 (default 300, as the real files; more measure "
                        "accuracy more precisely)")
    parser.add_argument("--out", required=True, help="output path, .pkl (the assignment's schema) or .npz")


def _mlp_options(select_on: str) -> Callable[[argparse.ArgumentParser], None]:
    """A multi-domain training command's options: the shared ones, then the MLP's; `select_on` is what the
    command's role selects on when left out (said in the help: the role owns it)."""
    def add(parser: argparse.ArgumentParser) -> None:
        from .engine.optim import OPTIMIZERS, SCHEDULES
        from .multidomain.options import MLPTrainOptions
        from .multidomain.data import DEFAULT_DATASETS

        defaults = MLPTrainOptions()
        _add_run_options(parser, f"dataset file, .pkl or .npz (default {DEFAULT_DATASETS[0]})", DEFAULT_DATASETS[0])
        train = _add_training_options(parser, {"epochs": f"full-batch epochs (default {defaults.epochs}, the assignment's)",
                                               "lr": f"learning rate (default {defaults.lr})",
                                               "weight_decay": "weight decay: L2 for adam, decoupled for adamw (default 0)",
                                               "select_on": select_on}, lr=float)
        train.add_argument("--hidden", type=_hidden, default=None, help="hidden layer sizes, comma-separated (default 20,10)")
        train.add_argument("--batch-norm", type=_boolean, nargs="?", const=True, default=None,
                           help="batch norm before each ReLU (default false)")
        train.add_argument("--optimizer", choices=OPTIMIZERS, default=None, help="default adam")
        train.add_argument("--amsgrad", type=_boolean, nargs="?", const=True, default=None,
                           help="use the AMSGrad variant (default false)")
        train.add_argument("--schedule", choices=SCHEDULES, default=None,
                           help="learning-rate schedule; onecycle peaks at --lr (default constant)")
        train.add_argument("--early-stopping", type=_boolean, nargs="?", const=True, default=None,
                           help="log the checkpoint that --select-on prefers as the model, else the last epoch's "
                           "(default true)")
    return add


def _distill_options(parser: argparse.ArgumentParser) -> None:
    from .distillers import DISTILL_METHODS
    from .multidomain.options import DistillOptions

    _mlp_options("accuracy-1se")(parser)
    defaults = DistillOptions()
    group = _add_teaching_options(parser)
    group.add_argument("--method", choices=DISTILL_METHODS, default=defaults.distiller,
                       help="the distiller, and the name its runs carry: kd, Hinton KD; kd-mixture, Hinton KD from "
                       "every domain's teacher weighted by p(domain | x); anneal-cosine, annealing KD as the report "
                       "ran it; anneal-jafari, as Jafari et al. define it (default kd)")
    group.add_argument("--alpha", type=float, default=defaults.alpha,
                       help=f"weight of the teacher term (default {defaults.alpha})")
    group.add_argument("--temperature", type=float, default=defaults.temperature,
                       help=f"softmax temperature T, or T_max / tau_max for annealing (default {defaults.temperature:g})")
    parser.add_argument("--tuned", default=None,
                        help="run id of a finished `tune` run of the same --method whose chosen values (alpha, "
                        "temperature) replace --alpha and --temperature")


def _tune_options(parser: argparse.ArgumentParser) -> None:
    from .multidomain.cells.tune import DEFAULT_GRIDS
    from .spine.tuning import DEFAULT_TUNE_RULE, TUNE_RULES

    _mlp_options("accuracy-1se")(parser)
    group = _add_teaching_options(parser)
    group.add_argument("--method", choices=tuple(DEFAULT_GRIDS), default="kd",
                       help="the distiller whose options are tuned (default kd)")
    group.add_argument("--tune-rule", choices=TUNE_RULES, default=DEFAULT_TUNE_RULE,
                       help="which trial to keep: best, the best selection accuracy; simplest-1se, the simplest (alpha 0 "
                       "first, then the lowest alpha, then the lowest temperature) within one standard error of it; "
                       "simplest-paired-1se, within one standard error of its gap to the best, paired sample by sample "
                       f"(default {DEFAULT_TUNE_RULE})")
    group.add_argument("--alphas", type=_floats, default=None,
                       help="alpha grid (default: the method's, "
                       f"{','.join(f'{a:g}' for a in DEFAULT_GRIDS['kd']['alpha'])} for kd)")
    group.add_argument("--temperatures", type=_floats, default=None,
                       help="temperature grid, tau_max for anneal-jafari (default: the method's, "
                       f"{','.join(f'{t:g}' for t in DEFAULT_GRIDS['kd']['temperature'])} for kd, "
                       f"{','.join(f'{t:g}' for t in DEFAULT_GRIDS['anneal-jafari']['temperature'])} for anneal-jafari)")


def _add_teaching_options(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    from .multidomain.options import STEP_ORDERS

    group = parser.add_argument_group("distillation")
    group.add_argument("--teachers", default=None,
                       help="run id of a `teachers` run to learn from (default: reuse or train teachers)")
    group.add_argument("--step-order", choices=STEP_ORDERS, default="joint",
                       help="joint: one step per epoch on all data; per-domain: one step per domain per epoch, "
                       "as the report did (default joint)")
    return group


def _study_options(parser: argparse.ArgumentParser) -> None:
    from .engine import DEVICES
    from .spine.options import DEFAULT_SEEDS

    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"study config, YAML (default {DEFAULT_CONFIG})")
    parser.add_argument("--data", default=None,
                        help="multi-domain: comma-separated dataset files (default: the four embedded ones in data/); "
                        "images: cifar100's folder")
    parser.add_argument("--seeds", default=None,
                        help=f"comma-separated seeds (default: the config's `seeds`, else {DEFAULT_SEEDS})")
    parser.add_argument("--epochs", type=_optional_whole_number, default=None,
                        help="override the config's epochs (empty: the config's)")
    parser.add_argument("--experiment-name", default=None, help="MLflow experiment (default: MLflow's active one)")
    parser.add_argument("--device", choices=DEVICES, default="auto", help="cpu, cuda or auto (default auto)")
    parser.add_argument("--workers", type=_workers, default=0,
                        help="cells trained at once, each in a process of its own with one torch thread "
                        "(default 0: one per core)")
    parser.add_argument("--executor", choices=("local", "ray"), default="local",
                        help="local: the cells train in this machine's worker processes (--workers); ray: as tasks of "
                        "the Ray cluster at --address, each on a node with the CPU or GPU it needs (kdtrack[ray], "
                        "docs/cluster.md) (default local)")
    parser.add_argument("--address", default=None,
                        help="HOST:PORT of the Ray cluster's head, as `ray start --head` prints it (default: RAY_ADDRESS)")


def _compare_options(parser: argparse.ArgumentParser) -> None:
    from .metrics import ACCURACY_METRICS

    parser.add_argument("--experiment-name", default=None, help="one experiment (default: all)")
    parser.add_argument("--format", choices=("markdown", "csv"), default="markdown", help="default markdown")
    parser.add_argument("--teachers", type=_boolean, nargs="?", const=True, default=False,
                        help="summarise teachers per dataset x domain (or architecture) instead")
    parser.add_argument("--paired", metavar="METHOD", default=None,
                        help="instead, each method's per-seed difference from METHOD (points), its mean, std, "
                        "95%% t-interval and paired t-test p-value, raw and Holm-corrected")
    parser.add_argument("--primary", metavar="METHOD", default=None,
                        help="with --paired: METHOD's rows are the pre-declared primary comparison, one test per "
                        "dataset, Holm-corrected over those alone, with the minimum detectable effect per row; every "
                        "other row is secondary, corrected apart")
    parser.add_argument("--metric", choices=ACCURACY_METRICS, default=ACCURACY_METRICS[0],
                        help="which validation accuracy: model_val_acc, the logged model's; best_val_acc, the "
                        "checkpoint's that --select-on selected (not the highest over epochs: the same as "
                        "model_val_acc under early stopping); final_val_acc, the last epoch's (default model_val_acc)")
    parser.add_argument("--out", default=None, help="also write the tables and figures into this folder")


def _register_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-id", default=None, help="the per-seed run whose model to register")
    parser.add_argument("--best", type=_boolean, nargs="?", const=True, default=False,
                        help="instead, the FINISHED per-seed run of --method (and --dataset) in --experiment-name "
                        "(default: any) whose model has the highest model_val_acc (ties: lower best_val_loss, then earlier)")
    parser.add_argument("--experiment-name", default=None,
                        help="with --best: the experiment to choose from (default: every experiment, as compare)")
    parser.add_argument("--method", default=None, help="with --best: the method (kdtrack.method tag)")
    parser.add_argument("--dataset", default=None, help="with --best: only this dataset (file stem)")
    parser.add_argument("--name", required=True, help="registered model name")
    parser.add_argument("--alias", default="champion", help="alias moved to the new version (default champion)")


def _image_kd_options(parser: argparse.ArgumentParser) -> None:
    from .images.options import ImageKDOptions

    _add_image_options(parser, default_arch="resnet8x4", teacher=True)
    defaults = ImageKDOptions()
    parser.add_argument("--ce-weight", type=float, default=defaults.ce_weight,
                        help=f"weight of the cross-entropy on the labels (default {defaults.ce_weight:g})")
    parser.add_argument("--kd-weight", type=float, default=defaults.kd_weight,
                        help=f"weight of the T^2 KL to the teacher (default {defaults.kd_weight:g})")
    parser.add_argument("--temperature", type=float, default=defaults.temperature,
                        help=f"softmax temperature T (default {defaults.temperature:g})")


def _simkd_options(parser: argparse.ArgumentParser) -> None:
    from .distillers.simkd import LOSSES, PROJECTORS
    from .images.options import SimKDOptions

    _add_image_options(parser, default_arch="resnet8x4", teacher=True)
    defaults = SimKDOptions()
    parser.add_argument("--factor", type=int, default=defaults.factor,
                        help=f"the projector's bottleneck: teacher channels / factor (default {defaults.factor})")
    parser.add_argument("--loss", choices=LOSSES, default=defaults.loss,
                        help="l2: mean squared error of the maps (the paper's); kl: T^2 KL between the class "
                        "distributions the reused classifier gives the projected maps and the teacher's (default l2)")
    parser.add_argument("--projector", choices=PROJECTORS, default=defaults.projector,
                        help="single: the penultimate maps; multi: and a second projector on the previous stage; "
                        "all-layer: a projector per stage pair (default single)")
    parser.add_argument("--multi-weight", type=float, default=defaults.multi_weight,
                        help="with --projector multi: the penultimate pair's weight, the previous stage's is the rest "
                        "(default 2/3)")
    parser.add_argument("--use-labels", type=_boolean, nargs="?", const=True, default=defaults.use_labels,
                        help="samples the teacher misclassifies add no loss; the mean is over the rest (default false)")
    parser.add_argument("--temperature", type=float, default=defaults.temperature,
                        help=f"with --loss kl: the softmax temperature (default {defaults.temperature:g})")


def _add_image_options(parser: argparse.ArgumentParser, default_arch: str, teacher: bool = False) -> None:
    """An image command's options: the shared ones, then the network's. Left out, a training option is the
    dataset's recipe's."""
    from .engine import PRECISIONS
    from .images.data import DATASETS
    from .models.zoo import ARCHS

    runs = _add_run_options(parser, "cifar100: the folder its python tarball unpacks to (train, test, meta)", None)
    runs.add_argument("--dataset", choices=DATASETS, default="digits",
                      help="digits (scikit-learn's, 8x8, runs on a CPU in minutes) or cifar100 (needs --data; "
                      "default digits)")
    if teacher:
        runs.add_argument("--teacher", required=True,
                          help="the teachers: the run id train-teacher printed (each student seed learns from the "
                          "teacher of its own seed, or of --teacher-seed), or one teacher as runs:/SEED_RUN_ID/model "
                          "or models:/NAME@ALIAS")
        runs.add_argument("--teacher-seed", type=lambda text: int(text) if text else None, default=None,
                          help="with a train-teacher run id: every student learns from this seed's teacher")
    train = _add_training_options(parser, {"epochs": "epochs (cifar100 240, digits 10)",
                                           "lr": "SGD learning rate (cifar100 0.05, digits 0.01); several, "
                                           "comma-separated, are tuned on the holdout first and the chosen one "
                                           "trains at every seed",
                                           "weight_decay": "default 5e-4", "select_on": "accuracy"}, lr=_floats)
    train.add_argument("--arch", choices=ARCHS, default=default_arch, help=f"default {default_arch}")
    train.add_argument("--milestones", type=lambda text: _whole_numbers(text) or None, default=None,
                       help="epochs after which the rate drops x0.1 (default: 150,180,210 of 240, scaled to --epochs)")
    train.add_argument("--batch-size", type=_whole_number, default=None, help="over all processes (default 64)")
    train.add_argument("--precision", choices=PRECISIONS, default=None,
                       help="bf16: train under bfloat16 autocast; the parameters, the loss, the selection and the logged "
                       "model stay float32 (default float32)")
    train.add_argument("--compile", type=_boolean, nargs="?", const=True, default=None,
                       help="torch.compile the training forward (same results within float tolerance; default false)")


# ---- what every training command shares ----------------------------------------------------------------


def _add_run_options(parser: argparse.ArgumentParser, data_help: str, data_default: str | None) -> argparse._ArgumentGroup:
    """Data and runs: where the data is, the seeds, where the runs go, where they train, how often they log."""
    from .engine import DEVICES
    from .spine.options import DEFAULT_SEEDS

    runs = parser.add_argument_group("data and runs")
    runs.add_argument("--data", default=data_default, help=data_help)
    runs.add_argument("--seeds", default=DEFAULT_SEEDS, help=f"comma-separated seeds (default {DEFAULT_SEEDS})")
    runs.add_argument("--experiment-name", default=None,
                      help="MLflow experiment (default: MLflow's active one, e.g. MLFLOW_EXPERIMENT_NAME)")
    runs.add_argument("--device", choices=DEVICES, default="auto",
                      help="where the PyTorch step trains: cpu, cuda, or auto (cuda when there is one); the native "
                      "step trains MLP stacks on the CPU (default auto)")
    runs.add_argument("--log-every", type=int, default=0,
                      help="log per-epoch metrics every N epochs and the last (default 0: auto, about 50 points "
                      "per metric); history.parquet always holds every epoch")
    return runs


def _add_training_options(parser: argparse.ArgumentParser, helps: dict[str, str], lr) -> argparse._ArgumentGroup:
    """The training options every study shares (kdtrack.spine.options.TrainOptions); left out, the study's or
    the role's default."""
    from .engine import SELECT_ON
    from .spine.options import SELECTIONS

    train = parser.add_argument_group("training (left out: the defaults named)")
    train.add_argument("--epochs", type=_optional_whole_number, default=None, help=helps["epochs"])
    train.add_argument("--lr", type=lr, default=None, help=helps["lr"])
    train.add_argument("--weight-decay", type=float, default=None, help=helps["weight_decay"])
    train.add_argument("--select-on", choices=SELECT_ON, default=None,
                       help="what selects the checkpoint on the selection split: the training objective, the "
                       "cross-entropy against the labels, the accuracy (ties by cross-entropy), or accuracy-1se, "
                       f"the latest epoch within one standard error of the best accuracy (default {helps['select_on']})")
    train.add_argument("--selection", choices=SELECTIONS, default=None,
                       help="the split that selects checkpoints: holdout, carved from train and stratified (by "
                       "domain and class, or class), or validation, as the assignment's report did (multi-domain "
                       "only; default holdout)")
    train.add_argument("--selection-fraction", type=float, default=None, help="share of train held out (default 0.1)")
    train.add_argument("--selection-seed", type=int, default=None, help="seed of the holdout draw (default 0)")
    return train


SHARED_TRAINING = ("epochs", "weight_decay", "select_on", "selection", "selection_fraction", "selection_seed")
MLP_TRAINING = ("lr", "hidden", "batch_norm", "optimizer", "amsgrad", "schedule", "early_stopping")
IMAGE_TRAINING = ("arch", "milestones", "batch_size", "precision", "compile")


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> dict:
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _job(args: argparse.Namespace, train):
    from .spine.jobs import Job
    from .spine.options import parse_seeds

    return Job(parse_seeds(args.seeds), train, args.experiment_name or None, args.log_every, args.device)


def _mlp_job(args: argparse.Namespace):
    from .multidomain.options import MLPTrainOptions

    return _job(args, MLPTrainOptions(**_given(args, SHARED_TRAINING + MLP_TRAINING)))


def _image_job(args: argparse.Namespace):
    from .images.options import check_rates, recipe

    lrs = args.lr or ()
    train = recipe(args.dataset, **_given(args, SHARED_TRAINING + IMAGE_TRAINING), lr=lrs[0] if lrs else None)
    check_rates(train, lrs)
    return _job(args, train), lrs


# ---- what each command calls -----------------------------------------------------------------------


def _make_data(args: argparse.Namespace) -> None:
    from .multidomain import make_multidomain, save_multidomain

    save_multidomain(make_multidomain(args.separation, args.seed, n_valid=args.n_valid, name=Path(args.out).stem), args.out)
    print(args.out)


def _baseline(args: argparse.Namespace) -> None:
    from .multidomain.tasks import run_baseline

    print(run_baseline(_mlp_job(args), args.data))


def _teachers(args: argparse.Namespace) -> None:
    from .multidomain.tasks import run_teachers

    print(run_teachers(_mlp_job(args), args.data))


def _distill(args: argparse.Namespace) -> None:
    from .multidomain.options import DistillOptions
    from .multidomain.tasks import run_distill

    distill = DistillOptions(args.method, args.alpha, args.temperature, args.step_order)
    print(run_distill(_mlp_job(args), args.data, distill, teachers=args.teachers or None, tuned=args.tuned or None))


def _tune(args: argparse.Namespace) -> None:
    from .multidomain.cells.tune import TuneGrid
    from .multidomain.tasks import run_tune

    grid = TuneGrid(args.method, args.alphas or None, args.temperatures or None)  # empty (an MLproject default): the method's
    print(run_tune(_mlp_job(args), args.data, grid, args.step_order, teachers=args.teachers or None, rule=args.tune_rule))


def _study(args: argparse.Namespace) -> None:
    from .spine.options import parse_seeds
    from .spine.study import read_config, run_study
    from .studies import study_of

    config = read_config(args.config)
    paths = [path.strip() for path in (args.data or "").split(",") if path.strip()] or None
    seeds = parse_seeds(args.seeds) if args.seeds else None  # none (or an MLproject's ""): the config's
    print(run_study(study_of(config), config, paths, seeds, args.epochs, args.experiment_name, args.device, args.workers,
                    args.executor, args.address))


def _compare(args: argparse.Namespace) -> None:
    from .compare.report import build_report, caption, log_compare_run, print_notes
    from .compare.tables import render
    from .studies import figures
    from .tracking import compared_runs, study_order

    experiment = args.experiment_name or None
    if args.primary and not args.paired:
        raise InputError("compare --primary needs --paired (the method it is compared against)")
    runs, tunes, where = compared_runs(experiment)
    if where:
        print(f"kdtrack compare: {where}", file=sys.stderr)
    report = build_report(runs, args.teachers, args.paired or None, args.metric, order=study_order(experiment),
                          tunes=tunes, extras=figures, primary=args.primary or None)
    print_notes(report, "kdtrack compare")
    table = report.tables[f"paired_{args.paired}" if args.paired else "table"]
    print(render(table, args.format))
    if args.format == "markdown":
        print(caption(table, args.metric, args.paired or None))
    if args.out:
        report.write(args.out)
    params = {"experiment": args.experiment_name or "", "teachers": str(args.teachers).lower(),
              "paired": args.paired or "", "primary": args.primary or "", "metric": args.metric}
    run_id = log_compare_run(report, args.experiment_name or None, params)
    files = ", ".join([f"{name}.csv/.md" for name in report.tables] + [f"{name}.png" for name in report.figures])
    where = f"written to {args.out} and logged" if args.out else "logged (--out DIR writes them to a folder too)"
    print(f"kdtrack compare: tables and figures ({files}) {where} in run {run_id}", file=sys.stderr)


def _register(args: argparse.Namespace) -> None:
    from .tracking import best_run, register, use_experiment

    if bool(args.run_id) == bool(args.best):
        raise InputError("register needs --run-id ID or --best (with --method), one of them")
    if args.best and not args.method:
        raise InputError("register --best needs --method")
    run_id = args.run_id or best_run(args.experiment_name or None, args.method, args.dataset or None)
    use_experiment(args.experiment_name or None)
    registered = register(run_id, args.name, args.alias)
    print(f"kdtrack register: {registered.uri} is {registered.source()}", file=sys.stderr)
    print(f"{registered.uri} version {registered.version}")


def _train_teacher(args: argparse.Namespace) -> None:
    from .images.tasks import run_train_teacher

    job, lrs = _image_job(args)
    _print_run(run_train_teacher(job, args.dataset, args.data or None, lrs))


def _image_kd(args: argparse.Namespace) -> None:
    from .images.options import ImageKDOptions

    _image_student(args, ImageKDOptions(args.ce_weight, args.kd_weight, args.temperature))


def _simkd(args: argparse.Namespace) -> None:
    from .images.options import SimKDOptions

    _image_student(args, SimKDOptions(args.factor, args.loss, args.projector, args.multi_weight, args.use_labels,
                                      args.temperature))


def _image_student(args: argparse.Namespace, distill) -> None:
    from .images.tasks import run_student

    job, lrs = _image_job(args)
    _print_run(run_student(job, args.dataset, args.data or None, args.teacher, distill, args.teacher_seed, lrs))


def _print_run(run_id: str | None) -> None:
    """The run id on stdout, from the one process that logged it."""
    if run_id:
        print(run_id)


COMMANDS = {
    "make-data": Command("write a multi-domain dataset in the assignment's pickle schema",
                         "Write a multi-domain dataset: three domains 120 degrees apart at radius 4*S, class 0 a disk "
                         "and class 1 a ring in each; 2400 train / 300 valid.", _make_data_options, _make_data),
    "baseline": Command("one MLP on all domains per seed (the mixed-domain baseline)",
                        "Train one MLP on the mixed domains per seed: a parent run with a child run per seed.",
                        _mlp_options("objective"), _baseline),
    "teachers": Command("one expert MLP per domain and seed",
                        "Train one expert MLP per domain and seed on that domain's data alone: a parent run with a "
                        "child run per seed and domain.", _mlp_options("objective"), _teachers),
    "distill": Command("a student per seed from each sample's in-domain teacher",
                       "Distil a student per seed from each sample's in-domain teacher of the same seed. Teachers come "
                       "from --teachers, or finished teachers of the same configuration are reused, or they are "
                       "trained first.", _distill_options, _distill),
    "tune": Command("search a distiller's alpha and temperature on the selection split",
                    "Train a student of --method for every combination of a grid (alpha and T for kd and kd-mixture, "
                    "tau_max for anneal-jafari) and seed, as one stack, and score each on the selection split (the "
                    "holdout, or validation under --selection validation). One nested run per trial; the parent run "
                    "logs best_alpha and/or best_temperature (the trial --tune-rule keeps), which `distill --tuned "
                    "RUN_ID` uses.", _tune_options, _tune),
    "study": Command("a study config's methods x datasets x seeds, resumable",
                     "Run every method of a study config (multi-domain, or images with `study: images`) on every "
                     "dataset and seed, nested under one study run. Cells whose configuration already has a FINISHED "
                     "run are skipped, so a study resumes where it stopped; the runs of cells a stopped study finished "
                     "stay under its study run. It ends by printing its table and where its figures are.",
                     _study_options, _study),
    "compare": Command("tables and figures over the store, logged as a run of its own",
                       "Summarise the FINISHED per-seed runs of the baselines and the students (mean and sample std of "
                       "the logged models' validation accuracy, in percent) per dataset x method (the name a study "
                       "gives it); teachers apart with --teachers. The tables and figures (accuracy, loss curves, "
                       "tuning sweeps, decision boundaries, annealing schedules, accuracy against size, paired "
                       "differences) are logged in a run of its own (kdtrack.task compare) in the experiment it "
                       "compares.", _compare_options, _compare),
    "register": Command("register a run's model under a name and alias",
                        "Register the logged model of one per-seed run as a new version of --name in MLflow's model "
                        "registry, move --alias to it, and tag the version with its dataset, method, seed, selection, "
                        "config and data hashes and validation accuracy. Prints the models:/NAME@ALIAS URI and the "
                        "version, and on stderr the run it registered.", _register_options, _register),
    "train-teacher": Command("image path: a network per seed on the labels",
                             "Train a CIFAR network per seed on the labels (method ce), to teach image-kd and simkd "
                             "students: a parent run with a child run per seed. Runs unchanged under torchrun "
                             "(DistributedDataParallel; only the first process writes to MLflow).",
                             lambda parser: _add_image_options(parser, default_arch="resnet32x4"), _train_teacher,
                             SEED_WORKER_IMPORTS),
    "image-kd": Command("image path: Hinton KD from a logged teacher",
                        "Train a student network per seed with Hinton KD, ce-weight CE + kd-weight T^2 KL (1 and 1 at "
                        "T = 4 by default, as the SimKD repository's KD baseline), from the teachers --teacher names.",
                        _image_kd_options, _image_kd, SEED_WORKER_IMPORTS),
    "simkd": Command("image path: SimKD, the reused teacher classifier",
                     "Train a student network per seed with SimKD (Chen et al., CVPR 2022): a projector maps the "
                     "student's penultimate map into the teacher's and the teacher's frozen classifier predicts. The "
                     "logged model is student backbone + projector + teacher classifier. Its runs are named for the "
                     "variant (simkd, simkd-kl, simkd-multi, ...).", _simkd_options, _simkd, SEED_WORKER_IMPORTS),
}


# ---- argument types ------------------------------------------------------------------------------------


def _hidden(text: str) -> tuple[int, ...]:
    from .models.mlp import parse_hidden

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
