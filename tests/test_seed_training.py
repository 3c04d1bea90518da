"""A seed worker's task (kdtrack.images.training): a seed's training crosses to a fresh process as bytes, trains
there without importing MLflow or the compare package, and comes back with the numbers it gives in this
process."""
import pickle
import subprocess
import sys

import numpy as np
import torch

from kdtrack.images.data import load_digits
from kdtrack.images.options import recipe
from kdtrack.images.training import SeedTraining

WORKER = """
import pickle, sys
import torch
torch.set_num_threads(1)
from kdtrack.images.training import train_in_worker
result, model, stopwatch = pickle.loads(train_in_worker(sys.stdin.buffer.read()))
loaded = sorted(name for name in ("mlflow", "kdtrack.compare", "kdtrack.tracking") if name in sys.modules)
sys.stdout.buffer.write(pickle.dumps((result.history, result.best_epoch, model.state_dict(), loaded)))
"""


def test_a_seed_trains_in_a_fresh_process_without_the_store_to_the_numbers_it_gets_here():
    training = SeedTraining(seed=3, label="seed 3", data=load_digits(), device="cpu",
                            options=recipe("digits", arch="resnet8x4", epochs=1))
    worker = subprocess.run([sys.executable, "-c", WORKER], input=pickle.dumps(training), capture_output=True,
                            check=True)
    history, best_epoch, state, loaded = pickle.loads(worker.stdout)
    assert loaded == []

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        here, model = training.run()
    finally:
        torch.set_num_threads(threads)
    assert set(history) == set(here.history)
    for name in here.history:
        np.testing.assert_array_equal(history[name], here.history[name], err_msg=name)
    np.testing.assert_array_equal(best_epoch, here.best_epoch)
    for name, tensor in model.state_dict().items():
        assert torch.equal(state[name], tensor), name
