"""Data pipelines: RecordIO and class-folder sets with the ImageNet recipe, and the
embedded demo set (scikit-learn's 8x8 digits, upscaled), built on disk with no download.

Train augmentation (docs/ARCHITECTURES.md 4.1): random-resized crop with area
in [min_area, 1] and aspect in [3/4, 4/3], horizontal flip, brightness / contrast /
saturation jitter, PCA lighting, normalization by mean / std (RGB, 0-255 units).
Test: shorter side resized to ceil(size / crop_ratio) (bilinear or bicubic), center
crop (4.2, 4.3).
Batches come in a deterministic order for a given seed and epoch, so a resumed run
sees the same data; with several workers each reads its own shard.
"""
import math
import os
import random
import warnings

import mxnet as mx
import numpy as np
from mxnet.gluon.data import DataLoader
from mxnet.gluon.data.vision import ImageFolderDataset, transforms

from octconv.cli import UserError, mxnet_reason
from octconv.config import VIDEO_KINDS

__all__ = ["DataError", "build_digits", "split_digits", "data_path", "Batches", "train_batches",
           "val_batches", "test_resize"]


INTERP = {"bilinear": 1, "bicubic": 2}  # OpenCV codes, as MXNet takes them


class DataError(UserError, ValueError):
    """A data set that is missing, empty or unreadable."""


def test_resize(size, crop_ratio):
    """Shorter side before the center crop: ceil(size / crop_ratio) (256 for 224)."""
    return int(math.ceil(size / crop_ratio))


def build_digits(root, size=32, val_share=0.2, seed=0, clutter=False):
    """Write scikit-learn's digits (1,797 real 8x8 scans, 10 classes) as ``size`` px
    PNGs under ``root/train/<digit>/`` and ``root/val/<digit>/``; return ``root``.
    Existing complete sets are kept.

    ``clutter`` makes the harder set of the findings (``DATA.kind digits_clutter``): each
    digit at a random scale (40-75 % of the image), angle (+-20 degrees) and place, over
    noise and two fragments of other digits; three renderings of each training digit,
    one of each validation digit (no digit is in both splits)."""
    import cv2

    marker = os.path.join(root, "COMPLETE")
    if os.path.exists(marker):
        return root
    digits, order, rng = split_digits(val_share, seed)
    scans = (digits.images * (255 / 16)).astype(np.float32)
    for index, split in order:
        folder = os.path.join(root, split, str(digits.target[index]))
        os.makedirs(folder, exist_ok=True)
        if not clutter:
            image = cv2.resize(scans[index], (size, size), interpolation=cv2.INTER_LINEAR)
            cv2.imwrite(os.path.join(folder, f"{index:04d}.png"), image.astype(np.uint8))
            continue
        for copy in range(3 if split == "train" else 1):
            image = _cluttered(scans, index, size, rng, cv2)
            cv2.imwrite(os.path.join(folder, f"{index:04d}_{copy}.png"), image)
    open(marker, "w").close()
    return root


def split_digits(val_share=0.2, seed=0):
    """scikit-learn's digits in an order drawn from ``seed``: ``(digits, [(index,
    split)], rng)``, the first ``val_share`` of the order in 'val', the rest in 'train';
    ``rng`` continues the draws (the embedded sets' renderings)."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    rng = np.random.RandomState(seed)
    order = rng.permutation(len(digits.images))
    n_val = int(len(order) * val_share)
    return digits, [(i, "val" if rank < n_val else "train") for rank, i in enumerate(order)], rng


def _cluttered(scans, index, size, rng, cv2):
    """One rendering of ``scans[index]`` for :func:`build_digits` with ``clutter``."""
    canvas = rng.normal(40, 25, (size, size)).astype(np.float32)
    for _ in range(2):  # half of another digit, dimmer
        other = cv2.resize(scans[rng.randint(len(scans))], (size // 2, size // 2))
        half = other[:, :size // 4] if rng.rand() < 0.5 else other[:size // 4, :]
        y, x = rng.randint(0, size - half.shape[0] + 1), rng.randint(0, size - half.shape[1] + 1)
        window = canvas[y:y + half.shape[0], x:x + half.shape[1]]
        np.maximum(window, 0.7 * half, out=window)
    side = int(round(size * rng.uniform(0.4, 0.75)))
    digit = cv2.resize(scans[index], (side, side), interpolation=cv2.INTER_LINEAR)
    turn = cv2.getRotationMatrix2D(((side - 1) / 2, (side - 1) / 2), rng.uniform(-20, 20), 1.0)
    digit = cv2.warpAffine(digit, turn, (side, side))
    y, x = rng.randint(0, size - side + 1, size=2)
    window = canvas[y:y + side, x:x + side]
    np.maximum(window, digit, out=window)
    return np.clip(canvas, 0, 255).astype(np.uint8)


def _normalize(data_cfg):
    return transforms.Normalize([m / 255 for m in data_cfg.mean], [s / 255 for s in data_cfg.std])


def _folder_transform(data_cfg, train):
    size = data_cfg.size
    if train:
        steps = [transforms.RandomResizedCrop(size, scale=(data_cfg.min_area, 1.0),
                                              ratio=(3 / 4, 4 / 3)),
                 transforms.RandomFlipLeftRight()]
        if data_cfg.jitter:
            steps.append(transforms.RandomColorJitter(data_cfg.jitter, data_cfg.jitter,
                                                      data_cfg.jitter))
        if data_cfg.lighting:
            steps.append(transforms.RandomLighting(data_cfg.lighting))
    else:
        steps = [transforms.Resize(test_resize(size, data_cfg.crop_ratio), keep_ratio=True,
                                   interpolation=INTERP[data_cfg.interp]),
                 transforms.CenterCrop(size)]
    return transforms.Compose(steps + [transforms.ToTensor(), _normalize(data_cfg)])


class _ImageFolder(ImageFolderDataset):
    """Gluon's class-folder set, naming the file it cannot decode."""

    def __getitem__(self, idx):
        try:
            return super().__getitem__(idx)
        except mx.base.MXNetError as err:
            raise DataError(f"cannot decode the image {self.items[idx][0]}: "
                            f"{mxnet_reason(err)}") from None


def _open_folder(path):
    if not os.path.isdir(path):
        raise DataError(f"image folder not found: {path}")
    if not any(entry.is_dir() for entry in os.scandir(path)):
        raise DataError(f"no class sub-folders in {path} (expected one sub-folder of "
                        f"images per class)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Gluon warns once per file that is not an image
        dataset = _ImageFolder(path)
    if len(dataset) == 0:
        raise DataError(f"no images in {path} (expected one sub-folder per class)")
    return dataset


class Batches:
    """One epoch of ``(data, label)`` NDArray batches, in a fixed order for
    (seed, epoch); ``skip`` batches are read and dropped (random draws stay in step).

    Training augmentation draws from the global Python, NumPy and MXNet generators
    (Gluon's transforms do), which each training epoch seeds; validation batches draw
    nothing and leave every generator as it was."""

    def __init__(self, make_iter, length, classes, augmented):
        self._make_iter, self.length, self.classes = make_iter, length, classes
        self.augmented = augmented

    def __len__(self):
        return self.length

    def epoch(self, epoch, seed, skip=0):
        if self.augmented:
            random.seed(seed + epoch)
            np.random.seed(seed + epoch)
            mx.random.seed(seed + epoch)
        for i, batch in enumerate(self._make_iter(epoch, seed)):
            if i >= skip:
                yield batch


def _folder_batches(path, data_cfg, batch_size, train, part, parts):
    """Class folders, decoded in this process (random draws stay reproducible; RecordIO
    is the fast path for large sets)."""
    images = _open_folder(path)
    dataset = images.transform_first(_folder_transform(data_cfg, train))
    indices = list(range(len(dataset)))[part::parts]
    per_epoch = len(indices) // batch_size if train else math.ceil(len(indices) / batch_size)
    if per_epoch == 0:
        raise DataError(f"{path}: {len(indices)} images, fewer than one batch of {batch_size}")

    def make_iter(epoch, seed):
        order = list(indices)
        if train:
            random.Random(seed * 1000 + epoch).shuffle(order)
        sampler = [order[i * batch_size:(i + 1) * batch_size] for i in range(per_epoch)]
        loader = DataLoader(dataset, batch_sampler=sampler, num_workers=0)
        for data, label in loader:
            yield data, label.astype("float32")

    return Batches(make_iter, per_epoch, len(images.synsets), train)


def _rec_batches(path, data_cfg, batch_size, train, part, parts):
    if not os.path.isfile(path):
        raise DataError(f"RecordIO file not found: {path}")
    idx = os.path.splitext(path)[0] + ".idx"
    if not os.path.isfile(idx):
        raise DataError(f"index file not found beside {path}: {idx}")
    with open(idx) as f:
        count = sum(1 for line in f if line.strip())
    count = len(range(part, count, parts))
    size = data_cfg.size
    common = dict(path_imgrec=path, path_imgidx=idx, data_shape=(3, size, size),
                  batch_size=batch_size, preprocess_threads=data_cfg.workers,
                  num_parts=parts, part_index=part,
                  mean_r=data_cfg.mean[0], mean_g=data_cfg.mean[1], mean_b=data_cfg.mean[2],
                  std_r=data_cfg.std[0], std_g=data_cfg.std[1], std_b=data_cfg.std[2])
    if train:
        common.update(shuffle=True, rand_mirror=True, random_resized_crop=True,
                      min_random_area=data_cfg.min_area, max_random_area=1.0,
                      min_aspect_ratio=3 / 4, max_aspect_ratio=4 / 3,
                      brightness=data_cfg.jitter, contrast=data_cfg.jitter,
                      saturation=data_cfg.jitter, pca_noise=data_cfg.lighting,
                      round_batch=False)
        per_epoch = count // batch_size
    else:
        common.update(shuffle=False, resize=test_resize(size, data_cfg.crop_ratio),
                      inter_method=INTERP[data_cfg.interp], rand_crop=False, round_batch=False)
        per_epoch = math.ceil(count / batch_size)
    if per_epoch == 0:
        raise DataError(f"{path}: {count} records, fewer than one batch of {batch_size}")

    def make_iter(epoch, seed):
        produced = 0
        try:
            records = mx.io.ImageRecordIter(seed=seed * 1000 + epoch, **common)
            for i, batch in enumerate(records):
                if i >= per_epoch:
                    break
                n = batch_size - batch.pad
                produced += 1
                yield batch.data[0][:n], batch.label[0][:n]
        except (mx.base.MXNetError, StopIteration) as err:
            reason = mxnet_reason(err) if str(err) else "no decodable record"
            raise DataError(f"cannot read {path}: {reason}") from None
        if not produced:
            raise DataError(f"cannot read {path}: no decodable record")

    return Batches(make_iter, per_epoch, None, train)


def data_path(cfg, train):
    """The training or validation set of ``cfg``: DATA.train / DATA.val, or the split
    folder of an embedded set, built at DATA.train (else under TRAIN.out_dir) first."""
    data_cfg = cfg.DATA
    if data_cfg.kind in ("digits", "digits_clutter", "moving_digits"):
        root = data_cfg.train or os.path.join(cfg.TRAIN.out_dir, data_cfg.kind)
        if data_cfg.kind == "moving_digits":
            from octconv.clips import build_moving_digits
            build_moving_digits(root, size=data_cfg.size)
        else:
            build_digits(root, size=data_cfg.size, clutter=data_cfg.kind == "digits_clutter")
        return os.path.join(root, "train" if train else "val")
    path = data_cfg.train if train else data_cfg.val
    if not path:
        raise DataError(f"DATA.{'train' if train else 'val'} is empty: give a "
                        f"{'.rec file' if data_cfg.kind == 'rec' else 'folder'}")
    return path


def _batches(cfg, train, batch_size, part, parts):
    data_cfg = cfg.DATA
    path = data_path(cfg, train)
    if data_cfg.kind in VIDEO_KINDS:
        from octconv.clips import clip_batches
        return clip_batches(path, data_cfg, batch_size, train, part, parts)
    make = _rec_batches if data_cfg.kind == "rec" else _folder_batches
    return make(path, data_cfg, batch_size, train, part, parts)


def train_batches(cfg, devices=1, part=0, parts=1):
    """Training batches of shard ``part`` of ``parts``; a batch holds DATA.batch_size
    images per device."""
    return _batches(cfg, True, cfg.DATA.batch_size * devices, part, parts)


def val_batches(cfg, devices=1):
    """Validation batches over the whole set, center crop."""
    return _batches(cfg, False, cfg.DATA.batch_size * devices, 0, 1)
