"""LR schedule, label smoothing and mixup against closed forms computed by hand."""
import math

import numpy as np
import pytest

from octconv.schedule import WarmupSchedule
from octconv.targets import mixup, smooth_one_hot


def test_warmup_then_cosine_at_chosen_iterations():
    # 10 iterations per epoch, 5 warm-up epochs of 50, 100 epochs: T_warm 50, T_total 1000.
    lr = WarmupSchedule(0.4, iters_per_epoch=10, epochs=100, warmup_epochs=5)
    assert lr(0) == 0.0                                   # warm-up starts at 0
    assert lr(25) == pytest.approx(0.2)                   # halfway up
    assert lr(50) == pytest.approx(0.4)                   # end of warm-up: base
    assert lr(525) == pytest.approx(0.2)                  # halfway down the cosine
    assert lr(287.5) == pytest.approx(0.4 * (1 + math.cos(math.pi / 4)) / 2)
    assert lr(999) == pytest.approx(0.4 * (1 + math.cos(math.pi * 949 / 950)) / 2)
    assert lr(999) > 0 and lr(1000) == pytest.approx(0.0)


def test_warmup_from_a_start_lr_and_step_mode():
    lr = WarmupSchedule(0.1, 4, 10, warmup_epochs=1, warmup_lr=0.02)
    assert lr(2) == pytest.approx(0.06)
    lr = WarmupSchedule(0.1, 4, 90, mode="step", step_epochs=(30, 60), step_factor=0.1)
    assert [lr(t) for t in (0, 119, 120, 239, 240)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])
    with pytest.raises(ValueError, match="mode must be 'cosine' or 'step'"):
        WarmupSchedule(0.1, 4, 10, mode="poly")


def test_label_smoothing_targets():
    targets = smooth_one_hot([2, 0], classes=4, eta=0.1)
    want = np.array([[0.025, 0.025, 0.925, 0.025], [0.925, 0.025, 0.025, 0.025]])
    np.testing.assert_allclose(targets, want, rtol=1e-6)
    np.testing.assert_allclose(smooth_one_hot([1], 3), [[0, 1, 0]])


def test_mixup_mixes_with_the_reversed_batch():
    images = np.array([[1.0], [2.0], [4.0]])
    targets = smooth_one_hot([0, 1, 2], 3)
    mixed, mixed_targets = mixup(images, targets, 0.7)
    np.testing.assert_allclose(mixed, [[0.7 + 1.2], [2.0], [2.8 + 0.3]])
    np.testing.assert_allclose(mixed_targets, [[0.7, 0, 0.3], [0, 1, 0], [0.3, 0, 0.7]])


def test_config_overrides_files_and_errors(tmp_path):
    from octconv.config import ConfigError, load
    path = tmp_path / "c.yaml"
    path.write_text("OPTIM:\n  lr: 1e-3\n  epochs: 7\nMODEL:\n  name: resnet26_v2\n")
    cfg = load(str(path), ["OPTIM.wd", "5e-5", "MODEL.alpha", "0.5"])
    assert (cfg.OPTIM.lr, cfg.OPTIM.wd, cfg.OPTIM.epochs) == (1e-3, 5e-5, 7)
    assert (cfg.MODEL.name, cfg.MODEL.alpha, cfg.MODEL.classes) == ("resnet26_v2", 0.5, 1000)
    with pytest.raises(AttributeError, match="frozen"):
        cfg.OPTIM.lr = 1.0
    with pytest.raises(ConfigError, match="unknown key OPTIM.learning_rate"):
        load(None, ["OPTIM.learning_rate", "0.1"])
    with pytest.raises(ConfigError, match="config file not found"):
        load(str(tmp_path / "missing.yaml"))
    path.write_text("OPTIM: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(str(path))
