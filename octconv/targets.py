"""Training targets: label smoothing and mixup (docs/ARCHITECTURES.md 4.1)."""
import numpy as np

__all__ = ["smooth_one_hot", "mixup"]


def smooth_one_hot(labels, classes, eta=0.0):
    """Dense targets: ``1 - eta + eta / classes`` on the label, ``eta / classes`` elsewhere."""
    labels = np.asarray(labels, dtype=np.int64)
    targets = np.full((labels.size, classes), eta / classes, dtype=np.float32)
    targets[np.arange(labels.size), labels] = 1 - eta + eta / classes
    return targets


def mixup(images, targets, lam):
    """Mix each example with the batch reversed: ``x * lam + x[::-1] * (1 - lam)``, the
    dense targets the same way. Works on NumPy arrays and MXNet NDArrays."""
    return (images * lam + images[::-1] * (1 - lam),
            targets * lam + targets[::-1] * (1 - lam))
