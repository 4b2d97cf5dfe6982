"""pygan: a small-GAN toolkit whose hot paths are fused C++ and Cython kernels.

Three backends run one op table: ``numpy`` (the reference), ``cpu`` (native kernels, the default)
and ``cupy`` (GPU, optional).
"""

from .backend import backend_info, from_dlpack, from_numpy, get_backend, load_backend, set_backend, to_numpy, use_backend
from .backend import cpu_backend
from .autograd import Parameter, Tensor, enable_grad, grad, is_grad_enabled, no_grad, tensor
from .gan import GAN, GAN2014, Player
from .models import mlp_discriminator, mlp_generator
from .recipes import load_generator
from .optim import SGD, Adam

__version__ = "0.1.0"


def set_num_threads(n: int) -> None:
    """Threads for pygan's native kernels (GEMM core and Cython loops); also ``PYGAN_NUM_THREADS``."""
    load_backend("cpu")
    cpu_backend.set_num_threads(n)


def get_num_threads() -> int:
    """Threads pygan's native kernels use."""
    load_backend("cpu")
    return cpu_backend.get_num_threads()

__all__ = [
    "GAN",
    "GAN2014",
    "Parameter",
    "Player",
    "Tensor",
    "enable_grad",
    "grad",
    "is_grad_enabled",
    "no_grad",
    "tensor",
    "SGD",
    "Adam",
    "backend_info",
    "from_dlpack",
    "from_numpy",
    "get_backend",
    "get_num_threads",
    "load_generator",
    "mlp_discriminator",
    "mlp_generator",
    "set_backend",
    "set_num_threads",
    "to_numpy",
    "use_backend",
]
