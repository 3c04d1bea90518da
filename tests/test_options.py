"""Every option of every command, and so every MLproject parameter, with generated bad values: one line
`kdtrack: error: ...` naming the option (or the file, run or method it names) and the problem, exit code 2,
and no run opened. Values come from hypothesis, by what each option takes; nothing trains (every case is
refused while its options are checked). The study config's keys and per-dataset mappings likewise."""
from __future__ import annotations

import dataclasses
import math
import string
from pathlib import Path

import mlflow
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kdtrack.cli import build_parser, main
from kdtrack.distillers import DISTILL_METHODS
from kdtrack.errors import InputError
from kdtrack.images.data import load_image_data
from kdtrack.images.options import DISTILL_OPTIONS, ImageTrainOptions
from kdtrack.multidomain import load_multidomain, make_multidomain, save_multidomain
from kdtrack.multidomain.cells.tune import DEFAULT_GRIDS
from kdtrack.multidomain.options import DistillOptions, MLPTrainOptions
from kdtrack.spine.study import check_config, read_config
from kdtrack.spine.tuning import TUNE_RULES
from kdtrack.studies import study_of
from servers import all_runs

REPO = Path(__file__).resolve().parents[1]
SETTINGS = settings(max_examples=10, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
RUN_ID = "0123456789abcdef0123456789abcdef"  # no run of the store has it


def parses_as_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


WORDS = st.text(alphabet=string.ascii_letters + "_!?", min_size=1, max_size=8)
NOT_A_NUMBER = WORDS.filter(lambda text: not parses_as_float(text))


EDGES = ("nan", "inf", "-inf", "0", "-0.0", "1", "-1e-300", "1e308")


EXAMPLES: dict[int, list[str]] = {}
"""Values every case of a strategy (by id) tries besides the generated ones: its edges (NaN, the
infinities, 0, 1, the extremes), which a few generated examples may miss."""


def numbers_outside(valid) -> st.SearchStrategy[str]:
    """Numbers for which `valid` is false, and text that is no number."""
    strategy = st.one_of(st.floats().filter(lambda x: not valid(x)).map(str), NOT_A_NUMBER)
    EXAMPLES[id(strategy)] = [edge for edge in EDGES if not valid(float(edge))]
    return strategy


def integers_outside(valid) -> st.SearchStrategy[str]:
    """Whole numbers for which `valid` is false, fractions, and text that is no number."""
    return st.one_of(st.integers(-2**70, 2**70).filter(lambda n: not valid(n)).map(str),
                     st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: x != int(x)).map(str),
                     NOT_A_NUMBER)


def not_one_of(choices) -> st.SearchStrategy[str]:
    return WORDS.filter(lambda word: word not in choices)


def lists_with(bad: st.SearchStrategy[str], good: str) -> st.SearchStrategy[str]:
    """Comma-separated values of which one is bad."""
    strategy = st.builds(lambda before, item, after: ",".join([good] * before + [item] + [good] * after),
                         st.integers(0, 2), bad, st.integers(0, 2))
    EXAMPLES[id(strategy)] = [f"{good},{edge}" for edge in EXAMPLES.get(id(bad), [])]
    return strategy


def either(*strategies: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    strategy = st.one_of(*strategies)
    EXAMPLES[id(strategy)] = [edge for each in strategies for edge in EXAMPLES.get(id(each), [])]
    return strategy


WHOLE = integers_outside(lambda n: n >= 1)
BOOLEAN = not_one_of({"true", "false", "1", "0", "yes", "no", "True", "False", "Yes", "No", "TRUE", "FALSE"})
SEEDS = st.one_of(st.sampled_from(["", ",", " "]), st.integers(0, 99).map(lambda seed: f"{seed},{seed}"),
                  lists_with(integers_outside(lambda n: 0 <= n < 2**32), "0"))
STUDY_SEEDS = st.one_of(st.sampled_from([",", " "]), st.integers(0, 99).map(lambda seed: f"{seed},{seed}"),
                        lists_with(integers_outside(lambda n: 0 <= n < 2**32), "0"))  # "": the config's seeds
CHOICES = None  # the option's own choices: any word that is none of them
IMAGE_LR = lists_with(numbers_outside(lambda x: 0 < x < math.inf), "0.01")  # "" is the recipe's rate
HEX = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)

# option -> (bad values, what the error line names: False the option, True the value given, or a function
# of the value)
BAD = {
    "--epochs": (WHOLE, False), "--batch-size": (WHOLE, False),
    "--milestones": (lists_with(integers_outside(lambda n: False), "1"), False),  # none fits 1 epoch
    "--workers": (WHOLE.filter(lambda text: text.strip() != "0"), False),
    "--seeds": (SEEDS, False), "--seed": (integers_outside(lambda n: n >= 0), False),
    "--selection-seed": (integers_outside(lambda n: 0 <= n < 2**32), False),
    "--log-every": (integers_outside(lambda n: n >= 0), False), "--factor": (integers_outside(lambda n: n >= 1), False),
    "--lr": (numbers_outside(lambda x: 0 < x < math.inf), False),
    "--temperature": (numbers_outside(lambda x: 0 < x < math.inf), False),
    "--alpha": (numbers_outside(lambda x: 0 <= x <= 1), False),
    "--weight-decay": (numbers_outside(lambda x: 0 <= x < math.inf), False),
    "--selection-fraction": (numbers_outside(lambda x: 0 < x < 1), False),
    "--multi-weight": (numbers_outside(lambda x: 0 < x < 1), False),
    "--separation": (numbers_outside(lambda x: 0 <= x < math.inf), False),
    "--alphas": (lists_with(numbers_outside(lambda x: 0 <= x <= 1), "0.5"), False),  # "": the method's grid
    "--temperatures": (lists_with(numbers_outside(lambda x: 0 < x < math.inf), "4"), False),
    "--n-valid": (integers_outside(lambda n: n >= 3 and n % 3 == 0), False),
    "--hidden": (either(st.just(""), lists_with(integers_outside(lambda n: n >= 1), "8")), False),
    "--batch-norm": (BOOLEAN, False), "--amsgrad": (BOOLEAN, False), "--early-stopping": (BOOLEAN, False),
    "--use-labels": (BOOLEAN, False), "--best": (BOOLEAN, False), "--teachers": (BOOLEAN, False),
    "--compile": (BOOLEAN, False),
    "--data": (WORDS.map(lambda word: f"missing-{word}.pkl"), True),
    "--config": (WORDS.map(lambda word: f"missing-{word}.yaml"), True),
    "--tuned": (HEX, True), "--run-id": (HEX, True),
    "--teacher": (HEX.map(lambda run: f"runs:/{run}/model"), lambda uri: uri.split("/")[1]),  # names the run
    "--paired": (WORDS, True), "--method": (WORDS, True), "--dataset": (WORDS, True),
    "--primary": (WORDS, False),  # without --paired, which it needs
    "--tune-rule": CHOICES,
    "--ce-weight": (numbers_outside(lambda x: 0 <= x < math.inf), False),
    "--kd-weight": (numbers_outside(lambda x: 0 <= x < math.inf), False),
    "--teacher-seed": (WORDS, False),  # a seed is a whole number
}
PER_COMMAND = {
    ("distill", "--teachers"): (HEX, True), ("tune", "--teachers"): (HEX, True), ("distill", "--method"): CHOICES,
    ("study", "--seeds"): (STUDY_SEEDS, False),
    ("study", "--address"): (WORDS, False),  # a Ray cluster's address without --executor ray
    ("make-data", "--out"): (WORDS.map(lambda word: f"missing/{word}.pkl"), True),
    ("compare", "--out"): (WORDS.map(lambda word: f"small.pkl/{word}"), True),  # under a file
    **{(image, "--dataset"): CHOICES for image in ("train-teacher", "image-kd", "simkd")},
    **{(image, "--lr"): (IMAGE_LR, False) for image in ("train-teacher", "image-kd", "simkd")},
    **{(image, "--data"): (WORDS, False) for image in ("train-teacher", "image-kd", "simkd")},  # digits takes none
}
FREE = {  # options that any text is a good value of
    "--experiment-name": "any name names an experiment (a deleted one is refused: test_errors)",
    "--name": "MLflow's own rules for model names, which need a run to register (test_registry)",
    "--alias": "MLflow's own rules for aliases, which need a run to register (test_registry)",
}
BASE = {  # what makes each command otherwise good, so that the bad option is what it refuses
    "make-data": ["--separation=1", "--out=made.pkl"],
    "study": ["--config=study.yaml", "--data=small.pkl", "--seeds=0", "--epochs=1", "--workers=1"],
    "compare": [],
    "register": ["--name=m", "--best", "--method=kd"],
    "train-teacher": ["--seeds=0", "--epochs=1"],
    "image-kd": ["--seeds=0", "--epochs=1", f"--teacher=runs:/{RUN_ID}/model"],
    "simkd": ["--seeds=0", "--epochs=1", f"--teacher=runs:/{RUN_ID}/model"],
}
JOB = ["--data=small.pkl", "--seeds=0", "--epochs=1"]


def commands() -> dict:
    return build_parser()._subparsers._group_actions[0].choices


def options_of(command: str) -> list:
    return [action for action in commands()[command]._actions if action.option_strings and action.dest != "help"]


def bad_values(command: str, action) -> tuple[st.SearchStrategy[str], object] | None:
    """An option's bad values, and what its error line names (as in BAD)."""
    option = action.option_strings[0]
    chosen = PER_COMMAND[(command, option)] if (command, option) in PER_COMMAND else BAD.get(option)
    if chosen is CHOICES and action.choices:
        return not_one_of(action.choices), False
    return chosen


CASES = [(command, action.option_strings[0]) for command in commands() for action in options_of(command)
         if action.option_strings[0] not in FREE]


def test_every_option_and_mlproject_parameter_has_bad_values():
    """An option added without bad values to try fails here, and so does an MLproject parameter that is
    no option's."""
    for command in commands():
        for action in options_of(command):
            option = action.option_strings[0]
            assert option in FREE or bad_values(command, action) is not None, f"{command} {option}"
    entry_points = yaml.safe_load((REPO / "MLproject").read_text())["entry_points"]
    for name, spec in entry_points.items():
        command = {"main": "study", "image_study": "study"}.get(name, name.replace("_", "-"))
        for parameter in spec["parameters"]:
            assert (command, "--" + parameter.replace("_", "-")) in CASES or "--" + parameter.replace("_", "-") in FREE


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A small dataset, a small study config, and an empty store (so that a run opened would show)."""
    folder = tmp_path_factory.mktemp("options")
    save_multidomain(make_multidomain(1.0, 0, n_train=60, n_valid=30, name="small"), folder / "small.pkl")
    (folder / "study.yaml").write_text(STUDY)
    all_runs(f"sqlite:///{folder / 'mlflow.db'}")
    return folder


@pytest.fixture()
def in_folder(folder, monkeypatch):
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(folder)
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)
    assert all_runs(uri) == [], "a bad value opened a run"


def refused(argv: list[str], capsys) -> str:
    """Run a command that must be refused: its one error line."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exited:  # argparse
        code = exited.code
    err = capsys.readouterr().err
    assert code == 2, (argv, err)
    assert err.count("\n") == 1 and err.startswith("kdtrack: error: ") and "Traceback" not in err, (argv, err)
    return err


@pytest.mark.parametrize(("command", "option"), CASES)
def test_a_bad_value_of_any_option_is_one_line_naming_it(in_folder, capsys, command, option):
    action = next(action for action in options_of(command) if action.option_strings[0] == option)
    values, names_value = bad_values(command, action)
    base = ["--name=m"] if option == "--run-id" else BASE.get(command, JOB)

    @SETTINGS
    @given(values)
    def check(value: str) -> None:
        err = refused([command, *base, f"{option}={value}"], capsys)
        named = names_value(value) if callable(names_value) else value if names_value else option.removeprefix("--")
        assert named in err, (value, err)

    for edge in EXAMPLES.get(id(values), []):
        check = example(edge)(check)
    check()


STUDY = """
epochs: 5
train: {selection: holdout}
teachers:
  es: {early_stopping: true}
tune: {kd: {alpha: [0.3, 0.7]}, epochs: 3}
methods:
  baseline: {task: baseline}
  kd: {teachers: es, distill: {distiller: kd, alpha: 0.5, temperature: 9}}
  kd-es: {teachers: es, train: {early_stopping: true}, distill: {alpha: tuned, temperature: {default: 9, small: 4}}}
"""
TRAIN_KEYS = {field.name for field in dataclasses.fields(MLPTrainOptions)}
SECTIONS = {  # where a key can go, and the keys it takes
    (): {"epochs", "seeds", "train", "teachers", "tune", "methods"}, ("train",): TRAIN_KEYS, ("teachers", "es"): TRAIN_KEYS,
    ("tune",): {"epochs", "rule", *DEFAULT_GRIDS}, ("tune", "kd"): {"alpha", "temperature"},
    ("methods", "kd"): {"task", "train", "teachers", "distill"},
    ("methods", "kd", "distill"): {field.name for field in dataclasses.fields(DistillOptions)},
    ("methods", "kd-es", "train"): TRAIN_KEYS,
}


def as_yaml(text: str):
    """A generated bad value as a YAML file would hold it: a number where it reads as one."""
    return float(text) if parses_as_float(text) else text


BAD_CONFIG_VALUES = {  # (where, key): bad values
    (("methods", "kd", "distill"), "alpha"): numbers_outside(lambda x: 0 <= x <= 1).map(as_yaml),
    (("methods", "kd", "distill"), "temperature"): numbers_outside(lambda x: 0 < x < math.inf).map(as_yaml),
    (("methods", "kd", "distill"), "distiller"): not_one_of(DISTILL_METHODS),
    (("train",), "epochs"): integers_outside(lambda n: n >= 1).map(as_yaml),
    (("train",), "lr"): numbers_outside(lambda x: 0 < x < math.inf).map(as_yaml),
    (("train",), "selection_fraction"): numbers_outside(lambda x: 0 < x < 1).map(as_yaml),
    (("tune",), "rule"): not_one_of(TUNE_RULES),
    ((), "seeds"): st.one_of(WORDS, st.just([]), st.lists(st.integers(max_value=-1), min_size=1),
                             st.lists(st.integers(min_value=2**32), min_size=1), st.just([1, 1]), st.just([0.5])),
}
PER_DATASET = {  # a value that may be a per-dataset mapping, and a good value for it
    ("methods", "kd", "distill", "temperature"): 9, ("train", "lr"): 0.001, ("methods", "kd-es", "train", "epochs"): 5,
    ("teachers", "es", "early_stopping"): True,
}


def nested(raw: dict, where: tuple[str, ...]) -> dict:
    for key in where:
        raw = raw.setdefault(key, {})
    return raw


def refused_study(folder: Path, raw: dict, capsys) -> str:
    """`study` under the config `raw`, which it must refuse: its one error line, naming the file."""
    path = folder / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    err = refused(["study", "--config", str(path), "--data", "small.pkl", "--seeds", "0"], capsys)
    assert err.startswith(f"kdtrack: error: {path}: "), err
    return err


@SETTINGS
@given(where=st.sampled_from(sorted(SECTIONS)), key=st.from_regex(r"\A[a-z][a-z_]{1,12}\Z"))
def test_an_unknown_config_key_is_one_line_naming_it(in_folder, folder, capsys, where, key):
    if key in SECTIONS[where]:
        return
    raw = yaml.safe_load(STUDY)
    nested(raw, where)[key] = 1
    err = refused_study(folder, raw, capsys)
    assert f"unknown key {key!r}" in err and ".".join(where) in err


@SETTINGS
@given(typo=st.from_regex(r"\A[a-z_.0-9]{1,10}\Z").filter(lambda stem: stem not in ("small", "default")),
       part=st.sampled_from(sorted(PER_DATASET)))
def test_a_per_dataset_mapping_naming_no_dataset_of_the_study_is_one_line(in_folder, folder, capsys, typo, part):
    """A misspelled file stem would otherwise fall back to `default` unseen."""
    raw = yaml.safe_load(STUDY)
    nested(raw, part[:-1])[part[-1]] = {"default": PER_DATASET[part], typo: PER_DATASET[part]}
    err = refused_study(folder, raw, capsys)
    assert f"{'.'.join(part)}: {typo!r} names no dataset of this study (small)" in err


@pytest.mark.parametrize("place", sorted(BAD_CONFIG_VALUES))
def test_a_bad_config_value_is_one_line_naming_it(in_folder, folder, capsys, place):
    where, key = place

    @SETTINGS
    @given(BAD_CONFIG_VALUES[place])
    def check(value) -> None:
        raw = yaml.safe_load(STUDY)
        nested(raw, where)[key] = value
        assert key.replace("_", "-") in refused_study(folder, raw, capsys)

    check()


YAML_VALUES = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=4)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.text(max_size=3), inner, max_size=2)),
                           max_leaves=4)
"""Anything a YAML file can hold: numbers of any size, NaN and the infinities, text, lists, mappings."""
VALUE_PLACES = sorted({(where, key) for where, keys in SECTIONS.items() for key in keys
                       if where != () or key == "epochs"} | {(("tune", "kd"), "alpha"), (("tune",), "epochs"),
                                                             ((), "teacher_seed")})
IMAGE_STUDY = """
study: images
dataset: digits
epochs: 2
train: {arch: resnet8x4, lr: tuned}
teachers: {t: {arch: resnet8x4, lr: 0.05}}
tune: {lr: [0.02, 0.1], seeds: 1}
methods:
  student: {task: baseline}
  simkd: {teachers: t, distill: {distiller: simkd, loss: kl}}
"""
IMAGE_TRAIN_KEYS = {field.name for field in dataclasses.fields(ImageTrainOptions)}
IMAGE_PLACES = sorted({(("train",), key) for key in IMAGE_TRAIN_KEYS} | {(("teachers", "t"), key) for key in IMAGE_TRAIN_KEYS}
                      | {(("methods", "simkd", "distill"), field.name) for field in dataclasses.fields(DISTILL_OPTIONS["simkd"])}
                      | {(("methods", "simkd", "distill"), "distiller"), (("tune",), "lr"), (("tune",), "seeds"),
                         (("tune",), "epochs"), ((), "dataset"), ((), "epochs"), ((), "teacher_seed")})


def cells_or_one_line(path: Path, raw: dict, data) -> None:
    """The config `raw` (written to `path`) either makes cells on `data` or is one InputError line naming the
    file, without a run (nothing here opens one)."""
    path.write_text(yaml.safe_dump(raw))
    try:
        config = read_config(str(path))
        study = study_of(config)
        check_config(config, study)
        config.check_datasets([data.name])
        study.cells(config, data, (0,), None, "cpu")
    except InputError as error:
        message = str(error)
        assert message.startswith(f"{path}: ") and "\n" not in message and len(message) < 1000, message


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(place=st.sampled_from(VALUE_PLACES), value=YAML_VALUES)
@example(place=(("train",), "epochs"), value=math.inf)
@example(place=(("train",), "selection_seed"), value=math.inf)
@example(place=(("train",), "hidden"), value=5)
@example(place=(("train",), "hidden"), value=[5, math.inf])
@example(place=(("train",), "batch_norm"), value="maybe")
@example(place=(("tune",), "epochs"), value=True)
@example(place=(("tune", "kd"), "alpha"), value=[10**400])
@example(place=(("methods", "kd", "distill"), "distiller"), value=["kd"])
@example(place=(("methods", "kd"), "teachers"), value=["es"])
def test_any_yaml_value_of_any_config_key_is_taken_or_one_line(folder, place, value):
    """(issue 29) .inf, `hidden: 5` and others raised OverflowError or TypeError."""
    where, key = place
    raw = yaml.safe_load(STUDY)
    nested(raw, where)[key] = value
    cells_or_one_line(folder / "values.yaml", raw, load_multidomain(folder / "small.pkl"))


@pytest.fixture(scope="module")
def digits():
    return load_image_data("digits", None)


@settings(max_examples=100, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(place=st.sampled_from(IMAGE_PLACES), value=YAML_VALUES)
@example(place=(("tune",), "lr"), value=[0.1, 10**400])
@example(place=(("train",), "milestones"), value=[1, math.inf])
@example(place=(("train",), "flip"), value="maybe")
@example(place=(("methods", "simkd", "distill"), "distiller"), value=["kd"])
@example(place=((), "dataset"), value=["digits"])
@example(place=((), "teacher_seed"), value=math.inf)
def test_any_yaml_value_of_any_image_config_key_is_taken_or_one_line(folder, digits, place, value):
    where, key = place
    raw = yaml.safe_load(IMAGE_STUDY)
    nested(raw, where)[key] = value
    cells_or_one_line(folder / "image-values.yaml", raw, digits)
