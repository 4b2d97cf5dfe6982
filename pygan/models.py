"""Model builders."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .nn import Dense, Sequential
from .nn.layers import Seed
from .nn.module import make_rng


def mlp_generator(
    latent_dim: int,
    hidden: Sequence[int],
    out_features: int,
    act: str = "leaky_relu",
    out_act: str = "identity",
    slope: float = 0.2,
    seed: Seed = None,
    dtype: type = np.float32,
) -> Sequential:
    """An MLP ``latent_dim -> hidden... -> out_features`` with fused activations."""
    rng = make_rng(seed)
    sizes = [latent_dim, *hidden]
    layers = [Dense(a, b, act=act, slope=slope, seed=rng, dtype=dtype) for a, b in zip(sizes[:-1], sizes[1:])]
    layers.append(Dense(sizes[-1], out_features, act=out_act, seed=rng, dtype=dtype))
    return Sequential(*layers)


def mlp_discriminator(
    in_features: int,
    hidden: Sequence[int],
    act: str = "leaky_relu",
    slope: float = 0.2,
    seed: Seed = None,
    dtype: type = np.float32,
) -> Sequential:
    """An MLP ``in_features -> hidden... -> 1`` that outputs logits."""
    rng = make_rng(seed)
    sizes = [in_features, *hidden]
    layers = [Dense(a, b, act=act, slope=slope, seed=rng, dtype=dtype) for a, b in zip(sizes[:-1], sizes[1:])]
    layers.append(Dense(sizes[-1], 1, seed=rng, dtype=dtype))
    return Sequential(*layers)
