#!/usr/bin/env bash
# The one prepared GPU check: on a fresh NVIDIA machine with CUDA, install pygan from this working
# tree with CuPy (the CUDA 12 or 13 wheel, by the driver's CUDA version), run the GPU kernel tests and
# the cupy backend's suite, train one MLP GAN epoch and one DCGAN epoch on the GPU, and run the
# benchmark with its cupy column; everything (logs, JSON, pictures, a summary) goes to one folder.
#
#   bash benchmarks/gpu_check.sh [OUT]        # OUT: default gpu-check/
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

backend=cupy
extra="test,bench"
if [[ $cpu -eq 1 ]]; then
    backend=cpu
    echo "--cpu: the cpu backend stands in for the GPU; no CuPy is installed" | tee -a "$summary"
else
    nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || { echo "no nvidia-smi: not a GPU machine" | tee -a "$summary"; exit 1; }
    cuda_major="$(sed -n 's/.*CUDA Version: \([0-9]*\).*/\1/p' "$out/nvidia-smi.txt" | head -n 1)"
    if [[ "${cuda_major:-12}" -ge 13 ]]; then extra="$extra,gpu-cuda13"; else extra="$extra,gpu"; fi
    echo "driver CUDA ${cuda_major:-?}: extras [$extra]" | tee -a "$summary"
fi

venv="$out/venv"
step install 600 bash -c "python3 -m venv '$venv' && '$venv/bin/pip' install --quiet --upgrade pip && '$venv/bin/pip' install --quiet '.[$extra]'"
py="$venv/bin/python"
if [[ $cpu -eq 0 ]]; then
    step cupy 120 "$py" -c "import cupy; d = cupy.cuda.Device(); print(cupy.__version__, cupy.cuda.runtime.getDeviceProperties(d.id)['name'].decode(), 'CUDA', cupy.cuda.runtime.runtimeGetVersion())"
fi

# the GPU kernels against the reference, and the backend's own suite (its stand-in tests included)
# (pytest itself, not python -m pytest: the checkout's source folder must not shadow the installed package)
step tests 300 "$venv/bin/pytest" -q -p no:cacheprovider tests/test_cupy_gpu.py tests/test_cupy_backend.py \
    tests/test_cuda_sources.py -rs --junitxml "$out/tests.xml"

# a folder of 1,000 generated digit-like images, so that the DCGAN needs no data set on the machine
step data 120 "$py" - "$out/images" <<'EOF'
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
    Image.fromarray((ring * 255).astype(np.uint8)).save(folder / f"{i:04d}.png")
print(f"1000 images in {folder}")
EOF

step mlp 300 "$venv/bin/pygan" train --backend "$backend" --epochs 1 --train-size 25600 --eval-samples 2500 \
    --out "$out/mlp-run" --overwrite
step dcgan 300 "$venv/bin/pygan" train --backend "$backend" --model dcgan --dataset "folder:$out/images" --epochs 1 \
    --batch-size 64 --eval-samples 2000 --out "$out/dcgan-run" --overwrite
step bench 600 bash -c "cd '$out' && '$py' -m pygan.bench --threads $(nproc) --min-time 0.2 --json bench.json"

echo "failed steps: $failed (logs, JSON and pictures in $out)" | tee -a "$summary"
exit "$failed"
