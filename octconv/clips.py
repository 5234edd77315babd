"""Video data: class folders of clips, and the embedded moving-digits set.

A video is a ``.npy`` file of ``L x H x W`` uint8 gray frames in the folder of its
class. Training takes a random window of ``DATA.frames`` frames of each video (the
order and the windows fixed for (seed, epoch), so a resumed run sees the same data);
testing takes ``DATA.test_clips`` windows spread evenly over the video (one: the
middle one), whose predictions the evaluation averages. Frames are normalized by
``DATA.mean`` / ``DATA.std`` and repeated to the networks' three channels.

The embedded set (``DATA.kind moving_digits``): scikit-learn's digits, each moving in a
straight line across a noisy background, labelled by the direction it moves (right,
left, down, up). A single frame, or the frames in any order, says nothing of the
direction: only a network that sees the frames' order can learn it.
"""
import os

import numpy as np

from octconv.data import Batches, DataError, split_digits

__all__ = ["DIRECTIONS", "build_moving_digits", "clip_batches"]

DIRECTIONS = {"right": (0, 1), "left": (0, -1), "down": (1, 0), "up": (-1, 0)}


def build_moving_digits(root, size=16, length=16, val_share=0.2, seed=0):
    """Write the moving digits (1,797 videos of ``length`` frames, ``size`` px) under
    ``root/train/<direction>/`` and ``root/val/<direction>/``; return ``root``. Each
    digit, scaled to half the frame, starts at a random place and moves one pixel a
    frame (wrapping around the frame's edges) over Gaussian noise. Existing complete
    sets are kept."""
    import cv2

    marker = os.path.join(root, "COMPLETE")
    if os.path.exists(marker):
        return root
    digits, order, rng = split_digits(val_share, seed)
    side = size // 2
    names = sorted(DIRECTIONS)
    for index, split in order:
        direction = names[rng.randint(len(names))]
        folder = os.path.join(root, split, direction)
        os.makedirs(folder, exist_ok=True)
        sprite = cv2.resize((digits.images[index] * (255 / 16)).astype(np.float32),
                            (side, side), interpolation=cv2.INTER_LINEAR)
        canvas = np.zeros((size, size), np.float32)
        canvas[:side, :side] = sprite
        start = rng.randint(0, size, size=2)
        step = np.array(DIRECTIONS[direction])
        frames = [np.roll(canvas, tuple(start + t * step), axis=(0, 1)) for t in range(length)]
        video = np.stack(frames) + rng.normal(30, 20, (length, size, size))
        np.save(os.path.join(folder, f"{index:04d}_{digits.target[index]}.npy"),
                np.clip(video, 0, 255).astype(np.uint8))
    open(marker, "w").close()
    return root


def _videos(path):
    """``(files, labels, classes)`` of a class-folder set of ``.npy`` videos."""
    if not os.path.isdir(path):
        raise DataError(f"video folder not found: {path}")
    classes = sorted(e.name for e in os.scandir(path) if e.is_dir())
    if not classes:
        raise DataError(f"no class sub-folders in {path} (expected one sub-folder of "
                        f".npy videos per class)")
    files, labels = [], []
    for label, name in enumerate(classes):
        for entry in sorted(os.listdir(os.path.join(path, name))):
            if entry.endswith(".npy"):
                files.append(os.path.join(path, name, entry))
                labels.append(label)
    if not files:
        raise DataError(f"no .npy videos in {path} (expected one sub-folder per class)")
    return files, labels, classes


def _load(path, frames):
    try:
        video = np.load(path)
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read the video {path}: {err}") from None
    if video.ndim != 3 or video.shape[0] < frames:
        raise DataError(f"{path}: expected L x H x W frames with L >= DATA.frames "
                        f"({frames}), got shape {video.shape}")
    return video


def _windows(length, frames, count):
    """Starts of ``count`` windows of ``frames`` spread evenly over ``length`` frames."""
    last = length - frames
    return [round(last * (k + 1) / (count + 1)) for k in range(count)]


def clip_batches(path, data_cfg, batch_size, train, part=0, parts=1):
    """Batches of clips (N, 3, T, H, W); at test time with ``DATA.test_clips`` K > 1,
    (N, K, 3, T, H, W), the K windows of each video (see
    :func:`octconv.models.evaluate`)."""
    import mxnet as mx

    files, labels, classes = _videos(path)
    indices = list(range(len(files)))[part::parts]
    per_epoch = len(indices) // batch_size if train else -(-len(indices) // batch_size)
    if per_epoch == 0:
        raise DataError(f"{path}: {len(indices)} videos, fewer than one batch of {batch_size}")
    frames, clips = data_cfg.frames, 1 if train else data_cfg.test_clips
    mean, std = data_cfg.mean[0], data_cfg.std[0]

    def clip(video, start):
        window = (video[start:start + frames].astype(np.float32) - mean) / std
        return np.repeat(window[None], 3, axis=0)

    def make_iter(epoch, seed):
        order = list(indices)
        if train:
            np.random.RandomState([seed, epoch]).shuffle(order)
        for b in range(per_epoch):
            batch = order[b * batch_size:(b + 1) * batch_size]
            data = []
            for i in batch:
                video = _load(files[i], frames)
                if train:
                    start = np.random.RandomState([seed, epoch, i]).randint(
                        video.shape[0] - frames + 1)
                    data.append(clip(video, start))
                else:
                    data.append(np.stack([clip(video, s) for s in
                                          _windows(video.shape[0], frames, clips)]))
            data = np.stack(data)
            if not train and clips == 1:
                data = data[:, 0]
            yield mx.nd.array(data), mx.nd.array([labels[i] for i in batch])

    return Batches(make_iter, per_epoch, len(classes), False)
