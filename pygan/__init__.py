"""pygan: a small-GAN toolkit whose hot paths are fused C++ and Cython kernels.

Three backends run one op table: ``numpy`` (the reference), ``cpu`` (native kernels, the default)
and ``cupy`` (GPU, optional).
"""

from .backend import backend_info, get_backend, set_backend, use_backend
from .gan import GAN
from .models import mlp_discriminator, mlp_generator
from .optim import SGD, Adam

__version__ = "0.1.0"

__all__ = [
    "GAN",
    "SGD",
    "Adam",
    "backend_info",
    "get_backend",
    "mlp_discriminator",
    "mlp_generator",
    "set_backend",
    "use_backend",
]
