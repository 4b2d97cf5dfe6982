"""Layers: Dense, Conv2d, ConvTranspose2d, BatchNorm, VirtualBatchNorm, activations, Dropout, Maxout,
Reshape, Flatten, Sequential."""

from .layers import (
    Activation,
    BatchNorm,
    Conv2d,
    ConvTranspose2d,
    Dense,
    Dropout,
    Flatten,
    LeakyReLU,
    Maxout,
    ReLU,
    Reshape,
    Sigmoid,
    Tanh,
    VirtualBatchNorm,
)
from . import functional
from .module import Module, Parameter, Sequential

__all__ = [
    "Activation",
    "BatchNorm",
    "Conv2d",
    "ConvTranspose2d",
    "Dense",
    "Dropout",
    "Flatten",
    "functional",
    "LeakyReLU",
    "Maxout",
    "Module",
    "Parameter",
    "ReLU",
    "Reshape",
    "Sequential",
    "Sigmoid",
    "Tanh",
    "VirtualBatchNorm",
]
