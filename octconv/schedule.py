"""Learning-rate schedule, updated every iteration, in the release's closed form.

Warm-up: ``lr(T) = warmup_lr + (base - warmup_lr) * T / T_warm`` for ``T < T_warm``.
Cosine:  ``lr(T) = base * (1 + cos(pi * (T - T_warm) / (T_total - T_warm))) / 2``.
Step:    ``lr(T) = base * factor ** (number of step epochs passed)``.
``T`` counts iterations from 0; ``T_warm`` and ``T_total`` are epochs x iterations per
epoch. (GluonCV 0.11's LRScheduler divides by ``niters - 1`` instead, so it differs from
the release by one iteration; docs/ARCHITECTURES.md section 4.1.)
"""
import math

from mxnet.lr_scheduler import LRScheduler

__all__ = ["WarmupSchedule"]


class WarmupSchedule(LRScheduler):
    """An MXNet LR scheduler: ``schedule(num_update)`` gives the LR of that iteration."""

    def __init__(self, base_lr, iters_per_epoch, epochs, warmup_epochs=0, warmup_lr=0.0,
                 mode="cosine", step_epochs=(), step_factor=0.1):
        super().__init__(base_lr=base_lr)
        if iters_per_epoch < 1:
            raise ValueError(f"iters_per_epoch must be at least 1, got {iters_per_epoch}")
        if mode not in ("cosine", "step"):
            raise ValueError(f"mode must be 'cosine' or 'step', got {mode!r}")
        self.warmup_iters = warmup_epochs * iters_per_epoch
        self.total_iters = epochs * iters_per_epoch
        self.warmup_lr, self.mode = warmup_lr, mode
        self.step_iters = [e * iters_per_epoch for e in step_epochs]
        self.step_factor = step_factor

    def __call__(self, num_update):
        t = num_update
        if t < self.warmup_iters:
            return self.warmup_lr + (self.base_lr - self.warmup_lr) * t / self.warmup_iters
        if self.mode == "cosine":
            progress = (t - self.warmup_iters) / (self.total_iters - self.warmup_iters)
            return self.base_lr * (1 + math.cos(math.pi * min(progress, 1.0))) / 2
        return self.base_lr * self.step_factor ** sum(t >= s for s in self.step_iters)
