"""The README as a newcomer reads it: short, every kdtrack command it shows accepted as written, the main
job's entry point pointing at files that exist, and the commands that follow the main job run as written on
a study of the same config (small: one embedded dataset, two seeds, 30 epochs)."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from kdtrack.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _code_lines(text: str) -> list[str]:
    """Every command line of the README's bash blocks, comments stripped."""
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    return [line.split("  #")[0].strip() for block in blocks for line in block.splitlines() if line.strip()]


def _kdtrack_commands() -> list[list[str]]:
    """The arguments of every `kdtrack ...` (or `... -m kdtrack ...`) line."""
    commands = []
    for line in _code_lines(README):
        words = shlex.split(line)
        starts = [i for i, word in enumerate(words) if word == "kdtrack" and (i == 0 or words[i - 1] == "-m")]
        commands += [words[i + 1:] for i in starts]
    return commands


def test_the_readme_is_read_in_five_minutes():
    assert len(README.splitlines()) <= 250


def test_the_first_screen_sets_up_runs_the_main_job_and_the_tests():
    first = _code_lines(README)[:2]
    assert first[0] == "bash bootstrap.sh && . .venv/bin/activate && mlflow run . --env-manager local"
    assert first[1] == "bash bootstrap.sh && .venv/bin/python -m pytest -q"
    main = yaml.safe_load((REPO / "MLproject").read_text())["entry_points"]["main"]
    assert (REPO / main["parameters"]["config"]["default"]).is_file()
    assert all((REPO / path).is_file() for path in main["parameters"]["data"]["default"].split(","))
    assert main["command"].startswith("python -m kdtrack study ")


@pytest.mark.parametrize("argv", _kdtrack_commands(), ids=lambda argv: " ".join(argv)[:60])
def test_every_kdtrack_command_in_the_readme_parses_as_written(argv):
    build_parser(argv[0]).parse_args(argv)


def test_the_commands_after_the_main_job_run_as_written(tmp_path):
    """`kdtrack compare --paired baseline` and `kdtrack register --best --method kd-mixture ...`, verbatim from
    the README, after a small run of the main job's study."""
    after = [line for line in _code_lines(README) if line.startswith(("kdtrack compare", "kdtrack register"))][:2]
    assert [line.split()[1] for line in after] == ["compare", "register"]
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db", "PYTHONPATH": str(REPO)}
    outside = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    run = lambda argv: subprocess.run([sys.executable, "-m", "kdtrack", *argv], cwd=tmp_path, capture_output=True,
                                      text=True, env={**outside, **env})
    study = run(["study", "--config", str(REPO / "configs/default.yaml"), "--data", str(REPO / "data/sep0.50.pkl"),
                 "--seeds", "0,10", "--epochs", "30", "--workers", "1"])
    assert study.returncode == 0, study.stderr[-2000:]
    for line in after:
        done = run(shlex.split(line)[1:])
        assert done.returncode == 0, done.stderr[-2000:]
    assert "models:/md-kd-mixture@champion" in done.stdout
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    version = client.get_model_version_by_alias("md-kd-mixture", "champion")
    assert client.get_run(version.run_id).data.tags["kdtrack.method"] == "kd-mixture"

