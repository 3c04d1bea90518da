"""The MLproject entry points, run with `mlflow run` as a user would: each invocation's parent run is the
run `mlflow run` created, its parameters are logged, and kdtrack's own runs nest under it."""
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from kdtrack.cli import build_parser
from kdtrack.multidomain import make_multidomain, save_multidomain

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SEEDS = "0,10"
EPOCHS = "20"
TASKS = {"baseline": "baseline", "teachers": "teachers", "distill": "distill", "distill_reusing": "distill"}
RUN_NAMES = {"baseline": "baseline · small", "teachers": "teachers · small", "distill": "kd · small",
             "distill_reusing": "kd · small"}
CHILDREN = {"baseline": ("baseline", 2), "teachers": ("teacher", 6), "distill": ("student", 2),
            "distill_reusing": ("student", 2)}


def mlflow_run(folder: Path, uri: str, entry_point: str, **params: str) -> dict:
    """`mlflow run` of this repository's entry point; the run id kdtrack printed, the one `mlflow run`
    reported, and the -P parameters given."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env.update(MLFLOW_TRACKING_URI=uri, PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    command = [str(BIN / "mlflow"), "run", str(REPO), "-e", entry_point, "--env-manager", "local"]
    for key, value in params.items():
        command += ["-P", f"{key}={value}"]
    result = subprocess.run(command, env=env, cwd=folder, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    reported = re.findall(r"=== Run \(ID '(\w+)'\) succeeded ===", result.stderr)
    return {"printed": result.stdout.split()[-1], "reported": reported, "entry_point": entry_point, "params": params}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """baseline, teachers, distill from those teachers and distill reusing them, each an `mlflow run`."""
    folder = tmp_path_factory.mktemp("project")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    data = folder / "small.pkl"
    save_multidomain(make_multidomain(1.0, 0, n_train=300, n_valid=60), data)
    common = {"data": str(data), "seeds": SEEDS, "epochs": EPOCHS}
    runs = {name: mlflow_run(folder, uri, name, **common) for name in ("baseline", "teachers")}
    runs["distill"] = mlflow_run(folder, uri, "distill", **common, teachers=runs["teachers"]["printed"], alpha="0.7")
    runs["distill_reusing"] = mlflow_run(folder, uri, "distill", **common)
    runs["register"] = mlflow_run(folder, uri, "register", name="small-kd", best="true", experiment_name="Default",
                                  method="kd")
    return {"uri": uri, "client": MlflowClient(uri), "runs": runs}


def all_runs(project) -> list:
    client = project["client"]
    experiments = [experiment.experiment_id for experiment in client.search_experiments(view_type=ViewType.ALL)]
    return client.search_runs(experiments, run_view_type=ViewType.ALL, max_results=10000)


def children(project, parent_id: str) -> list:
    return [run for run in all_runs(project) if run.data.tags.get("mlflow.parentRunId") == parent_id]


def same_value(a: str, b: str) -> bool:
    """Equal as text, or as numbers ("0" and "0.0")."""
    try:
        return a == b or float(a) == float(b)
    except ValueError:
        return False


def test_store_holds_every_model_once_all_finished(project):
    runs = all_runs(project)
    assert {run.info.status for run in runs} == {"FINISHED"}
    counts = {}
    for run in runs:
        counts[run.data.tags["kdtrack.task"]] = counts.get(run.data.tags["kdtrack.task"], 0) + 1
    # four parents; the reusing distill trained no teachers of its own; register records what it registered
    assert counts == {"baseline": 1 + 2, "teachers": 1, "teacher": 6, "distill": 2, "student": 2 + 2, "register": 1}


@pytest.mark.parametrize("name", TASKS)
def test_parent_run_is_the_run_mlflow_run_created(project, name):
    invocation = project["runs"][name]
    assert invocation["reported"] == [invocation["printed"]]
    parent = project["client"].get_run(invocation["printed"])
    tags = parent.data.tags
    assert tags["mlflow.project.entryPoint"] == invocation["entry_point"]
    assert tags["mlflow.source.type"] == "PROJECT"
    assert "mlflow.parentRunId" not in tags
    assert tags["kdtrack.task"] == TASKS[name] and tags["kdtrack.dataset"] == "small"
    assert parent.info.run_name == RUN_NAMES[name], "named for what it ran, not at random"
    assert {"val_acc_mean", "val_acc_std"} <= set(parent.data.metrics)
    task, count = CHILDREN[name]
    kids = children(project, parent.info.run_id)
    assert [kid.data.tags["kdtrack.task"] for kid in kids] == [task] * count
    assert sorted({kid.data.tags["kdtrack.seed"] for kid in kids}) == sorted(SEEDS.split(","))


def test_distill_learns_from_the_given_teachers_or_reuses_them(project):
    teachers = {run.info.run_id for run in children(project, project["runs"]["teachers"]["printed"])}
    for name in ("distill", "distill_reusing"):
        for student in children(project, project["runs"][name]["printed"]):
            assert set(student.data.tags["kdtrack.teacher_run_ids"].split(",")) <= teachers


@pytest.mark.parametrize("name", TASKS)
def test_mlflow_run_parameters_are_logged_and_agree_with_kdtrack(project, name):
    invocation = project["runs"][name]
    entry_point = yaml.safe_load((REPO / "MLproject").read_text())["entry_points"][invocation["entry_point"]]
    given = {key: str(spec["default"]) for key, spec in entry_point["parameters"].items()}
    given.update(invocation["params"])
    params = project["client"].get_run(invocation["printed"]).data.params
    # `mlflow run` logs each value as it substitutes it into the command: shell-quoted
    assert {key: params.get(key) for key in given} == {key: shlex.quote(value) for key, value in given.items()}
    for kid in children(project, invocation["printed"]):
        shared = set(kid.data.params) & set(params)
        assert {"data", "epochs", "lr", "hidden"} <= shared
        logged = {key: (shlex.split(params[key]) or [""])[0] for key in shared}  # as `mlflow run` quoted it
        disagree = {key: (logged[key], kid.data.params[key]) for key in shared
                    if not same_value(logged[key], kid.data.params[key])}
        assert disagree == {}


def _subcommands() -> dict:
    return build_parser()._subparsers._group_actions[0].choices


@pytest.mark.parametrize("entry_point", yaml.safe_load((REPO / "MLproject").read_text())["entry_points"])
def test_entry_point_parameters_are_the_command_options(entry_point):
    spec = yaml.safe_load((REPO / "MLproject").read_text())["entry_points"][entry_point]
    command = {"main": "study", "image_study": "study"}.get(entry_point, entry_point.replace("_", "-"))
    subparser = _subcommands()[command]
    options = {option for action in subparser._actions for option in action.option_strings}
    assert spec["command"].startswith(f"python -m kdtrack {command} ")
    for name in spec["parameters"]:
        option = "--" + name.replace("_", "-")
        assert option in options
        assert f"{option} {{{name}}}" in spec["command"]


def test_registered_by_the_entry_point_loads_back(project):
    run = project["client"].get_run(project["runs"]["register"]["reported"][0])
    assert run.data.tags["kdtrack.task"] == "register" and run.info.run_name == "register models:/small-kd@champion"
    version = project["client"].get_model_version_by_alias("small-kd", "champion")
    assert run.data.params["source_run_id"] == version.run_id
    assert project["client"].get_run(version.run_id).data.tags["kdtrack.method"] == "kd"


def test_conda_environment_pins_what_constraints_pin():
    """`mlflow run` without --env-manager local builds conda.yaml: every dependency at its tested pin."""
    pins = dict(line.lower().split("==") for line in (REPO / "constraints.txt").read_text().splitlines() if "==" in line)
    conda = yaml.safe_load((REPO / "conda.yaml").read_text())["dependencies"][-1]["pip"]
    listed = dict(entry.lower().split("==") for entry in conda if "==" in entry)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~ ]", requirement)[0].lower() for requirement in project}
    assert set(listed) == names
    assert {name: version for name, version in listed.items() if name != "torch"} == \
        {name: pins[name] for name in listed if name != "torch"}


def test_the_image_entry_points_run_under_mlflow_run(tmp_path):
    """train_teacher, then simkd from its model: each printed run is the one `mlflow run` created, with a
    child per seed holding a model."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    small = {"arch": "resnet8x4", "epochs": "1", "seeds": "0"}
    teacher = mlflow_run(tmp_path, uri, "train_teacher", **small)
    client = MlflowClient(uri)
    child = client.search_runs([client.get_run(teacher["printed"]).info.experiment_id],
                               f"tags.mlflow.parentRunId = '{teacher['printed']}'")[0]
    student = mlflow_run(tmp_path, uri, "simkd", **small, teacher=f"runs:/{child.info.run_id}/model", loss="kl")
    for invocation, method in ((teacher, "ce"), (student, "simkd-kl")):  # a variant's method names it
        assert invocation["reported"] == [invocation["printed"]]
        parent = client.get_run(invocation["printed"])
        assert parent.data.tags["kdtrack.method"] == method and parent.info.status == "FINISHED"
        kids = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
        assert [kid.data.tags["kdtrack.seed"] for kid in kids] == ["0"]
        assert kids[0].outputs.model_outputs  # the logged model
    assert client.get_run(student["printed"]).data.params["loss"] == "kl"
