"""Session fixtures: the digits set on disk and one short training run on it."""
import fcntl
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "configs", "demo_digits.yaml")


@pytest.fixture(scope="session")
def digits(tmp_path_factory):
    from octconv.data import build_digits
    return build_digits(str(tmp_path_factory.mktemp("digits")))


@pytest.fixture(scope="session")
def trained_run(digits, tmp_path_factory, worker_id):
    """A run folder of train_imagenet.py: the demo network after 8 epochs on digits,
    trained once per test session. Under pytest-xdist the first worker to ask trains it
    in the session's shared temporary folder while the others wait on a file lock."""
    if worker_id == "master":  # one process
        return _train(tmp_path_factory.mktemp("trained"), digits)
    shared = tmp_path_factory.getbasetemp().parent
    out = shared / "trained"
    with open(shared / "trained.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / "trained.done").exists():
            _train(out, digits)
            (shared / "trained.done").touch()
    return str(out)


def _train(out, digits):
    subprocess.run([sys.executable, os.path.join(ROOT, "train_imagenet.py"), "--config", DEMO,
                    "TRAIN.out_dir", str(out), "DATA.train", digits, "OPTIM.epochs", "8"],
                   check=True, capture_output=True)
    return str(out)
