#!/usr/bin/env bash
# Parity tests and the full-size benchmark on a lent NVIDIA GPU machine (no network there).
#
#   benchmarks/gpu_check.sh [WHEELS_DIR]        # default WHEELS_DIR: ./wheels
#
# NVCC_WHEEL (default nvidia-cuda-nvcc-cu12) names the nvcc wheel matching torch's CUDA.
# WHEELS_DIR holds every wheel the project needs, CUDA builds of torch and the nvidia-*
# libraries included (see benchmarks/GPU.md for the `pip download` line). The script:
#   1. makes a fresh venv (.venv-gpu) and installs the project's requirements from the wheels;
#   2. turns the nvidia-* wheels into a CUDA home Jittor can use (see cuda_home_from_wheels);
#   3. runs the model and parity tests on CUDA;
#   4. runs benchmarks/bench_model.py --compare --config full.
# Output goes to $OUT (or ./gpu_out): logs and bench_full.json.
# NOT YET RUN on a GPU (no GPU was lent to the task that wrote it); see benchmarks/GPU.md.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WHEELS="$(cd "${1:-$ROOT/wheels}" && pwd)"
OUT="${OUT:-$ROOT/gpu_out}"
VENV="$ROOT/.venv-gpu"
PY="$VENV/bin/python"
mkdir -p "$OUT"
cd "$ROOT"

log() { echo "== $*" | tee -a "$OUT/gpu_check.log"; }

nvidia-smi | tee "$OUT/nvidia-smi.txt" || { echo "no NVIDIA driver answers"; exit 1; }

# 1. venv from the carried wheels only.
if [ ! -x "$PY" ]; then
    python3 -m venv "$VENV"
fi
"$PY" -m pip install --no-index --find-links "$WHEELS" --upgrade pip >/dev/null || true
# torch is installed without the CPU pin of requirements-test.txt: the wheels folder holds
# its CUDA build (same version), which brings the nvidia-* libraries as dependencies.
grep -v '^torch' requirements-test.txt > "$OUT/requirements-gpu.txt"
"$PY" -m pip install --no-index --find-links "$WHEELS" \
    -r requirements.txt -r "$OUT/requirements-gpu.txt" torch "${NVCC_WHEEL:-nvidia-cuda-nvcc-cu12}" \
    2>&1 | tail -3 | tee -a "$OUT/gpu_check.log"

SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
NV="$SITE/nvidia"
JT="$SITE/jittor"

# 2. A CUDA home for Jittor out of the pip wheels.
# Jittor takes CUDA_HOME as the folder above the *resolved* nvcc (compiler.check_cuda:
# include/ and lib64/ next to bin/), so the nvcc wheel's folder becomes the CUDA home, and
# the other wheels' headers and libraries are linked into it. Jittor's setup_cuda_lib
# (compile_extern.py) looks for unversioned names (libcublas.so, libcudnn.so, ...) while
# the wheels ship libX.so.N: link those. For nvcc >= 11 it also dlopens cuDNN 8's
# sub-libraries (libcudnn_{ops,cnn}_{infer,train}.so); cuDNN 9 merged them into
# libcudnn_ops.so.9 and libcudnn_cnn.so.9, so the old names point at those.
cuda_home_from_wheels() {
    local nvcc home
    nvcc="$(find "$NV" -path '*/bin/nvcc' -type f | head -1)"
    [ -n "$nvcc" ] || { echo "no bin/nvcc under $NV (wheel \$NVCC_WHEEL)" >&2; exit 1; }
    home="$(dirname "$(dirname "$nvcc")")"
    mkdir -p "$home/include" "$home/lib64"
    local d f
    for d in "$NV"/*/; do
        [ "$d" = "$home/" ] && continue
        if [ -d "$d/include" ]; then
            for f in "$d"/include/*; do ln -sfn "$f" "$home/include/$(basename "$f")"; done
        fi
        if [ -d "$d/lib" ]; then
            for f in "$d"/lib/lib*.so*; do
                [ -e "$f" ] || continue
                ln -sfn "$f" "$home/lib64/$(basename "$f")"
                local base="${f##*/}"; base="${base%%.so*}.so"
                [ -e "$home/lib64/$base" ] || ln -sfn "$f" "$home/lib64/$base"
            done
        fi
    done
    local cudnn_ops cudnn_cnn
    cudnn_ops="$(ls "$home"/lib64/libcudnn_ops.so.9* | head -1)"
    cudnn_cnn="$(ls "$home"/lib64/libcudnn_cnn.so.9* | head -1)"
    ln -sfn "$cudnn_ops" "$home/lib64/libcudnn_ops_infer.so"
    ln -sfn "$cudnn_ops" "$home/lib64/libcudnn_ops_train.so"
    ln -sfn "$cudnn_cnn" "$home/lib64/libcudnn_cnn_infer.so"
    ln -sfn "$cudnn_cnn" "$home/lib64/libcudnn_cnn_train.so"
    echo "$home"
}
CUDA_HOME="$(cuda_home_from_wheels)"
log "CUDA home from wheels: $CUDA_HOME ($("$CUDA_HOME/bin/nvcc" --version | tail -1))"

# Jittor 1.3.11 compiles all of extern/cuda/cudnn; its RNN ops use the legacy RNN API that
# cuDNN 9 removed (cudnnSetRNNDescriptor_v6, cudnnRNNForwardTraining, ...), and any
# compile failure there is fatal. VAANet has no RNN: drop those sources from this venv's copy.
rm -f "$JT"/extern/cuda/cudnn/ops/cudnn_rnn_* "$JT"/extern/cuda/cudnn/src/cudnn_rnn_descriptor.cc \
      "$JT"/extern/cuda/cudnn/inc/cudnn_rnn_descriptor.h

export nvcc_path="$CUDA_HOME/bin/nvcc"
export use_cutlass=0          # Jittor would download cutlass
export LD_LIBRARY_PATH="$CUDA_HOME/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
unset VAANET_NO_CUDA

log "Jittor on CUDA"
"$PY" - <<'EOF' 2>&1 | tee -a "$OUT/gpu_check.log"
from core.jittor_setup import jt
from jittor import nn
assert jt.flags.use_cuda == 1, "Jittor did not turn CUDA on"
assert jt.compile_extern.cudnn is not None, "cuDNN not loaded"
x, w = jt.randn(2, 8, 16, 16), jt.randn(4, 8, 3, 3)
ref = nn.conv2d(x, w, padding=1).numpy()
out = jt.cudnn.ops.cudnn_conv(x.transpose(0, 2, 3, 1), w, 1, 1, 1, 1, 1, 1, 1,
                              "acdb", "oihw", "acdb").numpy().transpose(0, 3, 1, 2)
print("cudnn NHWC conv vs nn.conv2d, max abs diff", abs(out - ref).max())
assert abs(out - ref).max() < 1e-3
# models.layers.Conv3d on CUDA: one cuDNN 3D convolution on NDHWC clips
x3, w3 = jt.randn(2, 8, 5, 12, 12), jt.randn(4, 8, 3, 3, 3)
ref3 = nn.conv3d(x3, w3, padding=1).numpy()
out3 = jt.cudnn.ops.cudnn_conv3d(x3.transpose(0, 2, 3, 4, 1), w3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                                 "ndhwc").numpy().transpose(0, 4, 1, 2, 3)
print("cudnn NDHWC conv3d vs nn.conv3d, max abs diff", abs(out3 - ref3).max())
assert abs(out3 - ref3).max() < 1e-3
print("jittor", jt.__version__, "cuda ok")
EOF

log "model and parity tests on CUDA"
"$PY" -m pytest -q -s tests/test_layers.py tests/test_model.py tests/test_parity.py 2>&1 | tee "$OUT/tests.log" | tail -20 \
    || log "TESTS FAILED (see $OUT/tests.log); benchmarking anyway"

log "benchmark, config full"
"$PY" benchmarks/bench_model.py --compare --config full --runs 5 --warmup 2 \
    --json "$OUT/bench_full.json" 2>&1 | tee "$OUT/bench_full.txt"
