"""Layers: Dense, activations, Dropout, Maxout, Sequential."""

from .layers import Activation, Dense, Dropout, LeakyReLU, Maxout, ReLU, Sigmoid, Tanh
from .module import Module, Parameter, Sequential

__all__ = [
    "Activation",
    "Dense",
    "Dropout",
    "LeakyReLU",
    "Maxout",
    "Module",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Tanh",
]
