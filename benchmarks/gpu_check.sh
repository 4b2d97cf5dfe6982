#!/usr/bin/env bash
# The one prepared GPU check: on a fresh NVIDIA machine with CUDA and CuPy, build pygan from this
# working tree (offline, with the build tools installed there), run the GPU kernel tests and the cupy
# backend's suite, train one MLP GAN epoch and one DCGAN epoch on the GPU, and run the benchmark with
# its cupy column; everything (logs, JSON, pictures, a summary) goes to one folder.
#
#   bash benchmarks/gpu_check.sh [OUT]        # OUT: default gpu-check/; PYTHON: default python3
#   bash benchmarks/gpu_check.sh --cpu [OUT]  # the same steps on the cpu backend, no CuPy: checks this
#                                             # script where no GPU is (its figures mean nothing)
#
# Budget: a few minutes on an H100/H200-class GPU, start-up included (each step has a time limit), so
# that within about 15 minutes of GPU time it can run, be fixed and run again. A failing step is
# recorded and the next one still runs; the exit status is the number of failed steps.
set -uo pipefail
cpu=0
if [[ "${1:-}" == "--cpu" ]]; then cpu=1; shift; fi
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$(mkdir -p "${1:-gpu-check}" && cd "${1:-gpu-check}" && pwd)"
cd "$root"
summary="$out/summary.txt"
: > "$summary"
failed=0

step() {  # step NAME LIMIT_S COMMAND...: run it with a time limit, its output in OUT/NAME.log
    local name="$1" limit="$2"
    shift 2
    local start=$SECONDS
    timeout "$limit" "$@" > "$out/$name.log" 2>&1
    local rc=$?
    printf '%-10s rc %-3s %4ss  %s\n' "$name" "$rc" "$((SECONDS - start))" "$(tail -n 1 "$out/$name.log")" | tee -a "$summary"
    [[ $rc -eq 0 ]] || failed=$((failed + 1))
}

py="${PYTHON:-python3}"
backend=cupy
if [[ $cpu -eq 1 ]]; then
    backend=cpu
    echo "--cpu: the cpu backend stands in for the GPU" | tee -a "$summary"
else
    nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || { echo "no nvidia-smi: not a GPU machine" | tee -a "$summary"; exit 1; }
fi

# Offline: the GPU machines fetch nothing, and their image holds numpy, CuPy, pybind11, Cython,
# scikit-build-core, CMake and ninja. So pygan is built from this tree with what is installed, into a
# folder of its own put first on PYTHONPATH, and every command runs from OUT, where no source folder
# can shadow it. (Where a package is missing: pip install ".[gpu]" or ".[gpu-cuda13]" with a network.)
site="$out/site"
step install 600 "$py" -m pip install --quiet --no-build-isolation --no-deps --no-index --upgrade --target "$site" .
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
cd "$out"
step imports 120 "$py" -c "import numpy, tqdm, matplotlib, PIL, pygan; print('pygan from', pygan.__file__)"
if [[ $cpu -eq 0 ]]; then
    step cupy 120 "$py" -c "import cupy; d = cupy.cuda.Device(); print(cupy.__version__, cupy.cuda.runtime.getDeviceProperties(d.id)['name'].decode(), 'CUDA runtime', cupy.cuda.runtime.runtimeGetVersion())"
fi

# the GPU kernels against the reference, and the backend's own suite (its stand-in tests included)
step tests 300 "$py" -m pytest -q -p no:cacheprovider -rs --junitxml "$out/tests.xml" "$root/tests/test_cupy_gpu.py" \
    "$root/tests/test_cupy_backend.py" "$root/tests/test_cuda_sources.py"

# a folder of 1,000 generated digit-like images (rings), so that the DCGAN needs no data set there
step data 120 "$py" -c "
import sys
from pathlib import Path
import numpy as np
from PIL import Image
folder = Path(sys.argv[1])
folder.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
yy, xx = np.mgrid[:28, :28]
for i in range(1000):
    cx, cy, r = rng.uniform(9, 19), rng.uniform(9, 19), rng.uniform(4, 8)
    ring = np.abs(np.hypot(xx - cx, yy - cy) - r) < 1.5
    Image.fromarray((ring * 255).astype(np.uint8)).save(folder / f'{i:04d}.png')
print(f'1000 images in {folder}')
" "$out/images"

step mlp 300 "$py" -m pygan train --backend "$backend" --epochs 1 --train-size 25600 --eval-samples 2500 \
    --out "$out/mlp-run" --overwrite
step dcgan 300 "$py" -m pygan train --backend "$backend" --model dcgan --dataset "folder:$out/images" --epochs 1 \
    --batch-size 64 --eval-samples 2000 --out "$out/dcgan-run" --overwrite
step bench 600 "$py" -m pygan.bench --threads "$(nproc)" --min-time 0.2 --sweep --json "$out/bench.json"

echo "failed steps: $failed (logs, JSON and pictures in $out)" | tee -a "$summary"
exit "$failed"
