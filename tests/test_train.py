"""train_imagenet.py end to end, through its command line, on real images."""
import glob
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from helpers import run_script
from octconv.config import load
from octconv.models import build_network

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "configs", "demo_digits.yaml")


def train_command(out_dir, digits, *overrides, resume=False):
    return ([sys.executable, os.path.join(ROOT, "train_imagenet.py"), "--config", DEMO]
            + (["--resume"] if resume else [])
            + ["TRAIN.out_dir", str(out_dir), "DATA.train", digits, *overrides])


def train(out_dir, digits, *overrides, resume=False):
    return subprocess.run(train_command(out_dir, digits, *overrides, resume=resume),
                          capture_output=True, text=True)


def digest(stdout):
    return re.findall(r"parameters digest (\w+)", stdout)


def metrics(out_dir):
    return [json.loads(line) for line in open(os.path.join(out_dir, "metrics.jsonl"))]


@pytest.mark.parametrize("api", ["gluon", "symbol"])
def test_a_small_oct_network_learns_real_digits(api, digits, tmp_path):
    run = train(tmp_path, digits, "MODEL.api", api, "OPTIM.epochs", "10")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "MKLDNN" not in run.stderr  # no ceil-mode pooling left for oneDNN to warn about
    records = metrics(tmp_path)
    assert len(records) == 10
    assert records[-1]["val_top1"] >= 0.9
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert open(tmp_path / "curves.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    saved = load(str(tmp_path / "config.yaml"))
    assert (saved.MODEL.api, saved.OPTIM.epochs, saved.MODEL.alpha) == (api, 10, 0.25)
    best = json.load(open(tmp_path / "best.json"))
    assert best["state"]["best_top1"] == max(r["val_top1"] for r in records)
    # the last line names the best epoch's manifest, which a folder alone does not score
    done = run.stdout.strip().splitlines()[-1]
    assert f"best val top-1 {best['state']['best_top1']:.4f} ({tmp_path / 'best.json'};" in done


def test_a_run_that_never_scores_still_has_a_best_checkpoint(digits, tmp_path, monkeypatch):
    """The first epoch's checkpoint is the best so far whatever it scores: a run whose
    validation top-1 stays 0 (a tiny validation set early on) still leaves best.json,
    which the run's last line names."""
    import octconv.train as train_module
    monkeypatch.setattr(train_module, "evaluate", lambda *args: (0.0, 0.0, 1))
    cfg = load(DEMO, ["TRAIN.out_dir", str(tmp_path), "DATA.train", digits,
                      "OPTIM.epochs", "2"])
    lines = []
    state = train_module.fit(cfg, log=lines.append)
    best = json.load(open(tmp_path / "best.json"))
    assert best["state"]["epoch"] == 1 and state["best_top1"] == 0.0
    assert f"best val top-1 0.0000 ({tmp_path / 'best.json'};" in lines[-1]


def run_until_checkpoint_then(out_dir, digits, sig, *overrides):
    """Start a run, wait for its first epoch checkpoint, send ``sig``; return the process."""
    proc = subprocess.Popen(train_command(out_dir, digits, *overrides),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not os.path.exists(os.path.join(out_dir, "last.json")):
        assert proc.poll() is None and time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.2)
    time.sleep(1.0)  # into the second epoch
    proc.send_signal(sig)
    proc.wait(timeout=300)
    return proc


def test_straight_and_resumed_runs_give_the_same_parameters(digits, tmp_path):
    """The demo config is deterministic (TRAIN.deterministic): two straight runs and an
    interrupted-then-resumed one end with the same parameters, mixup on, each run
    sharing the 2 cores with another one (where MXNet's threaded engine diverges)."""
    mixup = ("OPTIM.epochs", "3", "OPTIM.mixup_alpha", "0.2")
    straight = [subprocess.Popen(train_command(tmp_path / "straight-a", digits, *mixup),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    proc = run_until_checkpoint_then(tmp_path / "split", digits, signal.SIGINT, *mixup)
    assert proc.returncode == 130, proc.stderr.read()[-2000:]
    state = json.load(open(tmp_path / "split" / "last.json"))["state"]
    assert state["interrupted"] == "SIGINT" and state["epoch"] >= 1
    straight.append(subprocess.Popen(train_command(tmp_path / "straight-b", digits, *mixup),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    resumed = train(tmp_path / "split", digits, *mixup, resume=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stdout
    outs = [run.communicate(timeout=600)[0] for run in straight]
    assert [run.returncode for run in straight] == [0, 0]
    assert digest(outs[0]) == digest(outs[1]) == digest(resumed.stdout) != []
    assert len(metrics(tmp_path / "split")) == 3


def test_mixup_weights_come_from_their_own_generator():
    from octconv.train import mixup_weight
    np.random.seed(1)
    first = mixup_weight(0.2, 0, 2, 5)
    np.random.seed(2)
    assert mixup_weight(0.2, 0, 2, 5) == first != mixup_weight(0.2, 0, 2, 6)
    assert 0 <= first <= 1


def test_scoring_leaves_the_callers_random_state_alone(digits):
    from octconv.config import from_dict
    from octconv.data import val_batches
    from octconv.models import evaluate
    import mxnet as mx
    cfg = from_dict({"DATA": {"kind": "folder", "val": os.path.join(digits, "val"),
                              "size": 32, "batch_size": 100}})
    net = build_network(cfg)
    net.initialize()
    random.seed(7)
    np.random.seed(7)
    before = (random.getstate(), np.random.get_state()[1].copy())
    evaluate(net, val_batches(cfg), [mx.cpu()])
    assert random.getstate() == before[0]
    assert (np.random.get_state()[1] == before[1]).all()


def test_a_killed_run_leaves_checkpoints_that_load_and_resume(digits, tmp_path):
    proc = run_until_checkpoint_then(tmp_path, digits, signal.SIGKILL, "OPTIM.epochs", "3",
                                     "TRAIN.save_every", "1")
    assert proc.returncode == -signal.SIGKILL
    for manifest in glob.glob(str(tmp_path / "*.json")):
        data = json.load(open(manifest))  # every manifest is whole and names whole files
        assert os.path.getsize(tmp_path / data["params"]) > 0
    # what a kill during a write leaves: a temporary file named after the dead writer
    orphan = tmp_path / f".ckpt-e0001-i0000001.params.{proc.pid}-x1y2.tmp"
    orphan.write_bytes(b"half a parameter file")
    resumed = train(tmp_path, digits, "OPTIM.epochs", "3", "TRAIN.save_every", "1", resume=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert [r["epoch"] for r in metrics(tmp_path)][-1] == 3
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(digits, tmp_path):
    # epoch 1 at lr 0.1 saves a checkpoint; epoch 2 at lr 1e29 diverges
    run = train(tmp_path, digits, "OPTIM.epochs", "3", "OPTIM.warmup_epochs", "0",
                "OPTIM.lr_mode", "step", "OPTIM.step_epochs", "[1]", "OPTIM.step_factor", "1e30")
    assert run.returncode == 2
    assert re.search(r"error: loss is (nan|inf) at epoch 1", run.stderr), run.stderr[-2000:]
    assert "the last good checkpoint" in run.stderr and "Traceback" not in run.stderr
    manifest = json.load(open(tmp_path / "last.json"))
    assert manifest["state"]["epoch"] == 1 and os.path.isfile(tmp_path / manifest["params"])


def test_dist_sync_on_loopback_keeps_workers_identical_and_learns(digits, tmp_path):
    command = train_command(tmp_path, digits, "OPTIM.epochs", "3", "OPTIM.warmup_epochs", "0",
                            "TRAIN.kvstore", "dist_sync")
    run = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "launch.py"), "-n", "2",
                          "-s", "1", "--", *command], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:]
    digests = digest(run.stdout)
    assert len(digests) == 2 and digests[0] == digests[1]
    losses = [r["train_loss"] for r in metrics(tmp_path)]
    assert len(losses) == 3 and losses[-1] < losses[0]


def test_recordio_pipeline_trains(digits, tmp_path):
    for split in ("train", "val"):
        packed = run_script("tools/make_rec.py", os.path.join(digits, split),
                            tmp_path / f"{split}.rec")
        assert packed.returncode == 0, packed.stderr
    run = train(tmp_path / "run", str(tmp_path / "train.rec"), "DATA.kind", "rec",
                "DATA.val", str(tmp_path / "val.rec"), "OPTIM.epochs", "2")
    assert run.returncode == 0, run.stderr[-2000:]
    assert len(metrics(tmp_path / "run")) == 2


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "configs", "*.yaml"))),
                         ids=os.path.basename)
def test_every_config_parses_and_builds_its_network(path):
    cfg = load(path)
    names = build_network(cfg).collect_params().keys()
    assert "classifier_weight" in names and any(n.endswith("h2h_weight") for n in names)
