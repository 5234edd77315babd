"""tools/sweep.py end to end on a tiny setting, and what it hands on (ablated runs)."""
import csv
import os

import pytest

from conftest import ROOT
from helpers import run_script
from octconv.complexity import count_model

CONFIG = os.path.join(ROOT, "configs", "findings_digits.yaml")
TINY = ("--alphas", "0,0.5", "--seeds", "0", "--ablations", "no_l2h", "--sizes", "24,32",
        "OPTIM.epochs", "1", "OPTIM.warmup_epochs", "0", "DATA.kind", "digits")


@pytest.fixture(scope="module")
def sweep(digits, tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    args = ("--config", CONFIG, "--runs", root / "runs", "--out", root / "out") + TINY + (
        "DATA.train", digits)
    result = run_script("tools/sweep.py", *args)
    assert result.returncode == 0, result.stderr
    return root, args


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_sweep_writes_counted_runs_and_plots(sweep):
    root, _ = sweep
    runs = rows(root / "out" / "sweep.csv")
    assert [(r["variant"], float(r["alpha"])) for r in runs] == [
        ("full", 0.0), ("full", 0.5), ("no_l2h", 0.5)]
    for r in runs:
        exchange = {"full": ("h2l", "l2h"), "no_l2h": ("h2l",)}[r["variant"]]
        counts = count_model("resnet10_v2_mini", float(r["alpha"]), "symbol", 32, classes=10,
                             exchange=exchange)
        assert (int(r["params"]), int(r["macs"])) == (counts.params, counts.macs)
        assert 0.0 <= float(r["top1"]) <= float(r["top5"]) <= 1.0
    assert int(runs[2]["params"]) < int(runs[1]["params"]) == int(runs[0]["params"])
    sizes = rows(root / "out" / "resolution.csv")
    assert sorted({int(r["size"]) for r in sizes}) == [24, 32] and len(sizes) == 6
    same = [r for r in sizes if r["variant"] == "full" and float(r["alpha"]) == 0.0
            and r["size"] == "32"]
    assert same[0]["top1"] == runs[0]["top1"]
    for png in ("sweep.png", "resolution.png"):
        assert open(root / "out" / png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_a_second_sweep_reuses_finished_runs(sweep):
    root, args = sweep
    kept = root / "runs" / "full_a0.5_s0" / "sweep.json"
    stamp = os.stat(kept).st_mtime_ns
    before = open(root / "out" / "sweep.csv").read()
    result = run_script("tools/sweep.py", *args)
    assert result.returncode == 0, result.stderr
    assert os.stat(kept).st_mtime_ns == stamp
    assert open(root / "out" / "sweep.csv").read() == before


def test_an_ablated_run_exports_with_its_own_paths(sweep, tmp_path):
    root, _ = sweep
    result = run_script("tools/export_onnx.py", "--checkpoint", root / "runs" / "no_l2h_a0.5_s0",
                        "--size", "32", "--out", tmp_path / "m.onnx")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("args, message", [
    (("--alphas", "0,1.5"), "alpha must be in [0, 1), got 1.5"),
    (("--ablations", "no_h2h"), "unknown ablation 'no_h2h'"),
    (("--seeds", "a"), "'a' is not a list of whole numbers"),
    (("OPTIM.epochz", "1"), "unknown key OPTIM.epochz"),
])
def test_bad_sweep_arguments_are_named(args, message, tmp_path):
    result = run_script("tools/sweep.py", "--config", CONFIG, "--out", tmp_path, *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not os.listdir(tmp_path)
