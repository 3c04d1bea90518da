"""Claims: of processes claiming one cell at once exactly one wins, against SQLite and through `mlflow server`;
a claim whose holder is gone is taken over, its RUNNING runs ended KILLED; a claimed cell leaves no claim
behind. (Two studies at once training each cell once: test_reliability, and test_ray across engines.)"""
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from kdtrack.multidomain import load_multidomain, make_multidomain, save_multidomain
from kdtrack.multidomain.study import MULTIDOMAIN
from kdtrack.spine.claiming import claim_name, run_claimed
from kdtrack.spine.study import StudyConfig
from kdtrack.tracking import claims
from kdtrack.tracking.connection import this_host
from servers import all_runs, finish, start_study

RACERS, ROUNDS = 4, 3
RACE = """
import sys
from kdtrack.tracking import claims, connection
connection.open_store()
print("ready", flush=True)
for line in sys.stdin:  # one name per round, given to every racer at once
    print(claims.claim(line.strip(), {"pid": "0"}), flush=True)
"""


@pytest.mark.parametrize("store", ["sqlite", "server"])
def test_of_processes_claiming_one_cell_at_once_exactly_one_wins(store, tmp_path, request):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}" if store == "sqlite" else request.getfixturevalue("sqlite_server")
    MlflowClient(uri).search_experiments()  # the store exists before the race
    racers = [subprocess.Popen([sys.executable, "-c", RACE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True, env={"MLFLOW_TRACKING_URI": uri, "PATH": ""}) for _ in range(RACERS)]
    try:
        assert [racer.stdout.readline().strip() for racer in racers] == ["ready"] * RACERS
        for round_ in range(ROUNDS):
            name = f"{claims.PREFIX}race-{store}-{round_}"
            for racer in racers:
                racer.stdin.write(name + "\n")
                racer.stdin.flush()
            won = [racer.stdout.readline().strip() for racer in racers]
            assert sorted(won) == ["False"] * (RACERS - 1) + ["True"], f"round {round_}: {won}"
    finally:
        for racer in racers:
            racer.kill()
            racer.wait()


@pytest.fixture()
def baseline(tracking_uri, tmp_path):
    path = tmp_path / "tiny.pkl"
    save_multidomain(make_multidomain(0.75, 4, n_train=240, n_valid=60, name="tiny"), path)
    config = StudyConfig("study.yaml", {"epochs": 30, "train": {"selection": "holdout"},
                                        "methods": {"baseline": {"task": "baseline"}}})
    cell = MULTIDOMAIN.cells(config, load_multidomain(path), (0, 10), None, "cpu")[0]
    return cell.pending()


def test_a_claim_whose_holder_is_gone_is_taken_over_and_its_runs_end_killed(baseline):
    """A process of this host that has ended (kill -9, a lost Ray worker) left its claim and a RUNNING run:
    the next process to run the cell ends that run KILLED, trains the cell, and deletes the claim."""
    ended = subprocess.Popen(["true"])
    ended.wait()
    dead = str(ended.pid)
    store = MlflowClient()
    experiment = store.create_experiment("left")
    left = store.create_run(experiment, tags={"kdtrack.host": this_host(), "kdtrack.pid": dead}).info.run_id
    assert claims.claim(claim_name(baseline), {"host": this_host(), "pid": dead, "nonce": "old", "cell": baseline.name})

    parent = run_claimed(baseline)

    assert store.get_run(left).info.status == "KILLED"
    assert store.get_run(parent).info.status == "FINISHED"
    assert claims.read(claim_name(baseline)) is None and claims.claims() == []
    assert baseline.pending() is None


def test_a_study_waits_for_the_live_holder_of_a_cell_and_trains_nothing_it_logged(baseline, tracking_uri, tmp_path):
    """While a live process holds a cell's claim, a study that needs the cell waits instead of training it;
    once the holder has logged the cell's runs and released the claim, the study finds them and goes on."""
    holder = subprocess.Popen(["sleep", "600"])
    try:
        owner = {"host": this_host(), "pid": str(holder.pid), "nonce": "live", "cell": baseline.name}
        assert claims.claim(claim_name(baseline), owner)
        assert not claims.claim(claim_name(baseline), {**owner, "nonce": "second"}), "one holder at a time"
        config = tmp_path / "study.yaml"
        config.write_text("epochs: 30\ntrain: {selection: holdout}\nmethods:\n  baseline: {task: baseline}\n")
        study = start_study(config, str(tmp_path / "tiny.pkl"), {"MLFLOW_TRACKING_URI": tracking_uri}, tmp_path,
                            "--workers", "1", "--device", "cpu")
        said = [study.stderr.readline()]
        while "waiting for its runs" not in said[-1]:
            assert said[-1], f"the study ended without waiting: {''.join(said)[-3000:]}"
            said.append(study.stderr.readline())
        line = said[-1]
        assert f"trained by pid {holder.pid}" in line
        parent = baseline.run()  # what the holder does: train and log the cell
    finally:
        holder.kill()
        holder.wait()
    claims.release(claim_name(baseline), "live")
    code, err = finish(study)
    assert code == 0, err
    assert "(100%)" not in err, "the study trained nothing"
    cells = [run for run in all_runs(tracking_uri) if run.data.tags.get("kdtrack.task") == "baseline"
             and "kdtrack.seed" not in run.data.tags]
    assert [run.info.run_id for run in cells] == [parent]
    assert claims.claims() == []
