"""pygan's CUDA kernels compiled as C++ and run on the CPU: the sources themselves, not a rewrite.

A small header stands in for the CUDA runtime: ``threadIdx``/``blockIdx``/``blockDim``/``gridDim``,
``__shared__`` arrays (one block runs at a time, so a function-local static is the block's shared
memory), and ``__syncthreads``. Kernels that synchronise run their block's threads as coroutines in
one OS thread (``ucontext``): each runs until its next barrier, and the block resumes once all have
reached it, which is CUDA's rule for a barrier every thread of the block calls; the others run thread
after thread. The grid's blocks run one after another. This checks what the kernels compute (indexing,
grid-stride loops, reductions, epilogues) on any machine with g++; what only a GPU shows (timing,
memory-model races between blocks, launch limits, NVRTC itself) it does not.
"""

from __future__ import annotations

import ctypes
import hashlib
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from pygan.backend.cupy import KERNEL_FILES, cuda_source_dir

SHIM = r"""
#pragma once
#include <math.h>
#include <ucontext.h>
#include <cstdlib>
#include <vector>

struct pg_dim3 { unsigned x = 1, y = 1, z = 1; };
inline pg_dim3 threadIdx, blockIdx, blockDim, gridDim;
#define __global__ static
#define __device__
#define __forceinline__ inline
#define __shared__ static

namespace pg {
inline ucontext_t scheduler;
inline std::vector<ucontext_t> threads;
inline std::vector<std::vector<char>> stacks;
inline std::vector<char> finished;
inline int running = -1;
inline void (*body)(void*) = nullptr;
inline void* body_arg = nullptr;
inline void entry(int t) { body(body_arg); finished[t] = 1; }  // returns to the scheduler (uc_link)
}  // namespace pg

inline void __syncthreads() { swapcontext(&pg::threads[pg::running], &pg::scheduler); }

// Runs f(arg) as every thread of every block; cooperative kernels (those with barriers) as coroutines.
inline void pg_launch(int grid, int block, bool cooperative, void (*f)(void*), void* arg) {
    gridDim.x = grid;
    blockDim.x = block;
    for (int b = 0; b < grid; ++b) {
        blockIdx.x = b;
        if (!cooperative) {
            for (int t = 0; t < block; ++t) threadIdx.x = t, f(arg);
            continue;
        }
        pg::body = f, pg::body_arg = arg;
        pg::threads.assign(block, ucontext_t{});
        pg::stacks.resize(block);
        pg::finished.assign(block, 0);
        for (int t = 0; t < block; ++t) {
            pg::stacks[t].resize(1 << 16);
            getcontext(&pg::threads[t]);
            pg::threads[t].uc_stack.ss_sp = pg::stacks[t].data();
            pg::threads[t].uc_stack.ss_size = pg::stacks[t].size();
            pg::threads[t].uc_link = &pg::scheduler;
            makecontext(&pg::threads[t], (void (*)())pg::entry, 1, t);
        }
        for (bool left = true; left;) {  // one round: every thread up to its next barrier
            left = false;
            for (int t = 0; t < block; ++t) {
                if (pg::finished[t]) continue;
                pg::running = t, threadIdx.x = t;
                swapcontext(&pg::scheduler, &pg::threads[t]);
                left = left || !pg::finished[t];
            }
        }
    }
}
"""

CTYPES = {"f32*": (ctypes.c_void_p, "float*"), "f64*": (ctypes.c_void_p, "double*"), "i64": (ctypes.c_longlong, "long long"),
          "i32": (ctypes.c_int, "int"), "f32": (ctypes.c_float, "float")}


def _kernel_bodies(src: str) -> dict[str, str]:
    """Kernel name -> its source text (signature and body, by brace matching)."""
    out = {}
    for m in re.finditer(r"__global__\s+void\s+(\w+)\s*\(", src):
        i = src.index("{", m.end())
        depth, j = 0, i
        while True:
            depth += {"{": 1, "}": -1}.get(src[j], 0)
            j += 1
            if depth == 0:
                break
        out[m.group(1)] = src[m.start():j]
    return out


class CpuKernels:
    """Every kernel of the CUDA sources built for the CPU; ``run(name, grid, block, args)``."""

    def __init__(self, signatures: dict[str, list[str]], lib: ctypes.CDLL, cooperative: set[str]) -> None:
        self.signatures, self.lib, self._cooperative = signatures, lib, cooperative
        for name, kinds in signatures.items():
            fn = getattr(lib, f"pg_run_{name}")
            fn.argtypes = [ctypes.c_int, ctypes.c_int] + [CTYPES[k][0] for k in kinds]
            fn.restype = None

    def cooperative(self, name: str) -> bool:
        """Whether the kernel synchronises its block (and so runs as coroutines)."""
        return name in self._cooperative

    def run(self, name: str, grid: int, block: int, args: list) -> None:
        conv = []
        for kind, a in zip(self.signatures[name], args):
            if kind.endswith("*"):
                arr = np.asarray(a).view(np.ndarray)
                assert arr.flags.c_contiguous
                conv.append(arr.ctypes.data)
            else:
                conv.append(a.item() if hasattr(a, "item") else a)
        getattr(self.lib, f"pg_run_{name}")(int(grid), int(block), *conv)


_BUILT: dict[str, CpuKernels | None] = {}


def build(signatures: dict[str, list[str]]) -> CpuKernels | None:
    """Compile the CUDA sources for the CPU (once per process); None where g++ is missing."""
    src_dir = cuda_source_dir()
    text = "".join((src_dir / f).read_text() for f in KERNEL_FILES)
    key = hashlib.sha256((SHIM + text).encode()).hexdigest()[:16]
    if key in _BUILT:
        return _BUILT[key]
    gxx = shutil.which("g++")
    if gxx is None:
        _BUILT[key] = None
        return None
    work = Path(tempfile.mkdtemp(prefix="pygan-cuda-on-cpu-"))
    (work / "cuda_shim.h").write_text(SHIM)
    wrappers = ['#include "cuda_shim.h"']
    cooperative = set()
    for f in KERNEL_FILES:
        source = (src_dir / f).read_text()
        wrappers.append(f'#include "{src_dir / f}"')
        for name, body in _kernel_bodies(source).items():
            kinds = signatures[name]
            params = ", ".join(f"{CTYPES[k][1]} a{i}" for i, k in enumerate(kinds))
            call = ", ".join(f"a{i}" for i in range(len(kinds)))
            coop = "true" if ("__syncthreads" in body or "pg_block_sum" in body) else "false"
            if coop == "true":
                cooperative.add(name)
            fields = "; ".join(f"{CTYPES[k][1]} a{i}" for i, k in enumerate(kinds))
            wrappers.append(
                f'extern "C" void pg_run_{name}(int grid, int block, {params}) {{\n'
                f"    struct Args {{ {fields}; }} args{{{call}}};\n"
                f"    pg_launch(grid, block, {coop}, [](void* p) {{ auto& a = *static_cast<Args*>(p); "
                f"{name}({', '.join(f'a.a{i}' for i in range(len(kinds)))}); }}, &args);\n}}")
    (work / "kernels.cpp").write_text("\n".join(wrappers) + "\n")
    lib_path = work / "kernels.so"
    proc = subprocess.run([gxx, "-std=c++17", "-O1", "-shared", "-fPIC", "-w", f"-I{src_dir}", f"-I{work}",
                           str(work / "kernels.cpp"), "-o", str(lib_path)], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"the CUDA sources did not compile as C++:\n{proc.stderr}")
    _BUILT[key] = CpuKernels(signatures, ctypes.CDLL(str(lib_path)), cooperative)
    return _BUILT[key]
