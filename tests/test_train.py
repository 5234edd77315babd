"""train_imagenet.py end to end, through its command line, on real images."""
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

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
    records = metrics(tmp_path)
    assert len(records) == 10
    assert records[-1]["val_top1"] >= 0.9
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert open(tmp_path / "curves.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    saved = load(str(tmp_path / "config.yaml"))
    assert (saved.MODEL.api, saved.OPTIM.epochs, saved.MODEL.alpha) == (api, 10, 0.25)
    best = json.load(open(tmp_path / "best.json"))
    assert best["state"]["best_top1"] == max(r["val_top1"] for r in records)


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


def test_interrupt_and_resume_give_the_same_parameters(digits, tmp_path):
    straight = train(tmp_path / "straight", digits, "OPTIM.epochs", "3")
    assert straight.returncode == 0, straight.stderr[-2000:]

    proc = run_until_checkpoint_then(tmp_path / "split", digits, signal.SIGINT, "OPTIM.epochs", "3")
    assert proc.returncode == 130, proc.stderr[-2000:]
    state = json.load(open(tmp_path / "split" / "last.json"))["state"]
    assert state["interrupted"] == "SIGINT" and state["epoch"] >= 1
    resumed = train(tmp_path / "split", digits, "OPTIM.epochs", "3", resume=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stdout
    assert digest(resumed.stdout) == digest(straight.stdout)
    assert len(metrics(tmp_path / "split")) == 3


def test_a_killed_run_leaves_checkpoints_that_load_and_resume(digits, tmp_path):
    proc = run_until_checkpoint_then(tmp_path, digits, signal.SIGKILL, "OPTIM.epochs", "3",
                                     "TRAIN.save_every", "1")
    assert proc.returncode == -signal.SIGKILL
    for manifest in glob.glob(str(tmp_path / "*.json")):
        data = json.load(open(manifest))  # every manifest is whole and names whole files
        assert os.path.getsize(tmp_path / data["params"]) > 0
    resumed = train(tmp_path, digits, "OPTIM.epochs", "3", "TRAIN.save_every", "1", resume=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert [r["epoch"] for r in metrics(tmp_path)][-1] == 3


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
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_rec.py"),
                        os.path.join(digits, split), str(tmp_path / f"{split}.rec")], check=True,
                       capture_output=True)
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


@pytest.mark.parametrize("overrides, message", [
    (["OPTIM.lrr", "0.1"], "unknown key OPTIM.lrr; valid keys here:"),
    (["MODEL.alpha", "1.0"], "MODEL.alpha must be in [0, 1), got 1.0"),
    (["MODEL.name", "resnet51"], "MODEL.name: unknown network 'resnet51'"),
    (["OPTIM.epochs", "ten"], "OPTIM.epochs: expected int, got 'ten'"),
    (["TRAIN.kvstore", "nccl"], "TRAIN.kvstore: 'nccl' is not one of"),
    (["MODEL.last_gamma", "true"], "MODEL.last_gamma: resnet10_v2_mini has no BatchNorm ending"),
    (["TRAIN.devices", "gpu0"], "TRAIN.devices must be 'cpu' or GPU ids like '0,1', got 'gpu0'"),
    (["DATA.kind", "rec", "DATA.train", "/nonexistent/train.rec"],
     "RecordIO file not found: /nonexistent/train.rec"),
    (["DATA.kind", "folder", "DATA.train", "/nonexistent/dir"], "image folder not found"),
])
def test_bad_input_gives_one_clear_message(overrides, message, digits, tmp_path):
    cmd = train_command(tmp_path, digits, *overrides)
    if "DATA.train" in overrides:  # the override replaces the digits folder
        cmd = cmd[:cmd.index("DATA.train")] + cmd[cmd.index("DATA.train") + 2:]
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode == 2
    assert message in run.stderr and "Traceback" not in run.stderr


def test_corrupt_recordio_gives_one_clear_message(digits, tmp_path):
    (tmp_path / "bad.rec").write_bytes(os.urandom(4096))
    (tmp_path / "bad.idx").write_text("0\t0\n1\t2048\n")
    run = train(tmp_path / "run", str(tmp_path / "bad.rec"), "DATA.kind", "rec",
                "DATA.val", str(tmp_path / "bad.rec"), "DATA.batch_size", "1")
    assert run.returncode == 2, run.stderr[-2000:]
    assert "cannot read" in run.stderr and "bad.rec" in run.stderr
    assert "Traceback" not in run.stderr
