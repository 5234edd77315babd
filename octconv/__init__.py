"""OctConv: Octave Convolution (Chen et al., "Drop an Octave", ICCV 2019) for MXNet.

``octconv.symbol`` and ``octconv.gluon`` are the two APIs; both translate the same
plans (:mod:`octconv.unit`) with the same pair operations (:mod:`octconv.ops`).
:func:`register` adds a network of your own to the zoo of both.
"""
from .specs import register  # noqa: F401
from .unit import check_alpha, plan_octconv, split_channels  # noqa: F401

__version__ = "0.1.0"
