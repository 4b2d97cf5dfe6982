"""Every CUDA source compiles to PTX for the GPUs pygan targets (sm_80, sm_90), warning-free.

Runs wherever ``nvcc`` is on PATH (CI has it); skips, saying so, where it is not.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from pygan.backend.cupy import KERNEL_FILES, cuda_source_dir


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("source", KERNEL_FILES)
def test_nvcc_ptx(tmp_path, source, arch):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not on PATH: the CUDA sources cannot be compiled here")
    src = cuda_source_dir()
    out = tmp_path / f"{source}.{arch}.ptx"
    proc = subprocess.run(
        [nvcc, "-ptx", f"-arch={arch}", f"-I{src}", "-Werror", "all-warnings", str(src / source), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    ptx = out.read_text()
    kernels = {line.split()[-1].rstrip("(") for line in ptx.splitlines() if ".entry" in line}
    from pygan.backend.cupy import _KERNELS

    assert set(_KERNELS[source]) <= {k.strip() for k in kernels}, kernels
