"""Clips through the public entry points: the moving digits, training (train_imagenet.py)
of a small Oct-I3D against a frame-only C2D, and multi-clip scoring (score.py)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from helpers import run_script
from octconv.clips import DIRECTIONS, _windows, build_moving_digits

CONFIG = os.path.join(ROOT, "configs", "demo_moving_digits.yaml")


@pytest.fixture(scope="module")
def moving_digits(tmp_path_factory):
    return build_moving_digits(str(tmp_path_factory.mktemp("moving_digits")))


def test_the_moving_digits_move_one_pixel_a_frame(moving_digits):
    counts = {split: sum(len(os.listdir(os.path.join(moving_digits, split, d)))
                         for d in DIRECTIONS) for split in ("train", "val")}
    assert counts == {"train": 1438, "val": 359}
    for direction, step in DIRECTIONS.items():
        folder = os.path.join(moving_digits, "val", direction)
        video = np.load(os.path.join(folder, sorted(os.listdir(folder))[0])).astype(float)
        assert video.shape == (16, 16, 16)
        # the best shift between consecutive frames is the direction's step
        shifts = {(dy, dx): sum(np.abs(np.roll(video[t], (dy, dx), axis=(0, 1)) - video[t + 1])
                                .sum() for t in range(15))
                  for dy in (-1, 0, 1) for dx in (-1, 0, 1)}
        assert min(shifts, key=shifts.get) == step


def test_test_clips_are_spread_evenly():
    assert _windows(16, 8, 1) == [4]
    assert _windows(16, 8, 3) == [2, 4, 6]
    assert _windows(8, 8, 2) == [0, 0]


def train(name, out, data, *overrides):
    """train_imagenet.py in its own process (it sets MXNet's environment for clips)."""
    run = subprocess.run([sys.executable, os.path.join(ROOT, "train_imagenet.py"), "--config",
                          CONFIG, "MODEL.name", name, "DATA.train", data, "TRAIN.out_dir", out,
                          "DATA.frames", "4", "OPTIM.epochs", "2", "OPTIM.warmup_epochs", "0",
                          *overrides], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    return lines[-1]["val_top1"]


@pytest.fixture(scope="module")
def trained_i3d(moving_digits, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("i3d"))
    return out, train("i3d_resnet10_mini", out, moving_digits)


def test_oct_i3d_learns_the_direction_a_frame_only_model_cannot(trained_i3d, moving_digits,
                                                                tmp_path):
    """Two epochs of 4-frame clips (about 1.5 min on 2 cores for both): the Oct-I3D
    (alpha .25) far above chance (.25; it reached .99 here). The Oct-C2D pools its frames
    without their order: its max-pool over pairs of frames can show the axis of the
    motion, never its sign, so it cannot pass .5 (it reached .33)."""
    _, i3d = trained_i3d
    c2d = train("c2d_resnet10_mini", str(tmp_path / "c2d"), moving_digits)
    assert i3d > 0.85 and c2d < 0.55 and i3d > c2d + 0.3


def test_score_averages_several_clips_per_video(trained_i3d, moving_digits, tmp_path):
    run, _ = trained_i3d
    val = os.path.join(moving_digits, "val")
    results = {}
    for clips in (1, 3):
        out = run_script("score.py", run, "--data", val, "--clips", clips, "--json",
                         tmp_path / f"{clips}.json")
        assert out.returncode == 0, out.stderr
        results[clips] = json.load(open(tmp_path / f"{clips}.json"))["results"][0]
    assert results[1]["images"] == results[3]["images"] == 359
    assert results[1]["top1"] > 0.85 and results[3]["top1"] > 0.85


def test_several_clips_are_scored_by_their_mean_softmax(moving_digits):
    """evaluate() on K clips per video equals the mean of the K windows' softmax, each
    window cut by hand from the stored video."""
    import mxnet as mx
    from octconv.gluon import get_model
    from octconv.models import evaluate
    from octconv.scoring import center_crop_batches
    net = get_model("c2d_resnet10_mini", alpha=0.25, classes=4)
    net.initialize(mx.init.Xavier())
    data = dict(kind="clips", frames=4, test_clips=3, mean=[49.0] * 3, std=[58.0] * 3)
    val = os.path.join(moving_digits, "val")
    batches = center_crop_batches(val, "clips", 16, data_cfg=data, batch_size=400)
    top1, _, count = evaluate(net, batches, [mx.cpu()])
    videos = [(os.path.join(val, d, f), label) for label, d in enumerate(sorted(DIRECTIONS))
              for f in sorted(os.listdir(os.path.join(val, d)))]
    correct = 0
    for path, label in videos:
        video = (np.load(path).astype(np.float32) - 49.0) / 58.0
        clips = np.stack([np.repeat(video[None, s:s + 4], 3, axis=0) for s in (3, 6, 9)])
        probs = net(mx.nd.array(clips)).softmax().asnumpy().mean(axis=0)
        correct += int(probs.argmax() == label)
    assert count == len(videos) == 359
    assert top1 == pytest.approx(correct / len(videos))
