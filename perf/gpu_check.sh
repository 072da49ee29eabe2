#!/usr/bin/env bash
# The fused recall kernel's checks on a machine with one CUDA GPU (meant to finish in under 5 minutes):
#   1. tests/benchmark/test_triton_recall.py compiled for the GPU (FDRD_RECALL_TEST_DEVICE=cuda): the
#      kernel and the torch path against the brute-force reference, copies across tile edges, and the
#      timing and memory guard that skips on CPU;
#   2. perf/recall_gpu.py at N = 10k, 50k, 230k (D = 512, bf16), with two other tile configurations.
# It runs from this checkout without installing it; it needs torch with CUDA, triton, pytest and
# pytest-timeout (a CUDA image's python3 has them). Everything it prints also goes to OUT_DIR:
# versions.txt, tests.txt, tests.xml, recall_gpu.txt, recall_gpu.json. Exit status 1 if either step failed.
#
#   perf/gpu_check.sh OUT_DIR        (PYTHON=... to use another interpreter)
set -uo pipefail
if [ $# -ne 1 ]; then
    echo "usage: perf/gpu_check.sh OUT_DIR" >&2
    exit 2
fi
mkdir -p "$1"
out="$(cd "$1" && pwd)"
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
unset TRITON_INTERPRET

{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
    "$python" -c 'import sys, torch, triton; print(sys.version.split()[0], "torch", torch.__version__,
"triton", triton.__version__, "cuda", torch.version.cuda,
torch.cuda.get_device_name() if torch.cuda.is_available() else "(no CUDA device)")'
} 2>&1 | tee "$out/versions.txt"

status=0
FDRD_RECALL_TEST_DEVICE=cuda timeout 200 "$python" -m pytest -p no:cacheprovider -q -rs \
    tests/benchmark/test_triton_recall.py --junitxml "$out/tests.xml" 2>&1 | tee "$out/tests.txt" || status=1
timeout 200 "$python" perf/recall_gpu.py --sizes 10000 50000 230000 --repeats 3 \
    --configs 128x256x64/8/3 64x128x64/4/4 --json "$out/recall_gpu.json" 2>&1 | tee "$out/recall_gpu.txt" \
    || status=1
exit $status
