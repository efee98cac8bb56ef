#!/usr/bin/env bash
# The port on a GPU machine without network access (benchmarks/GPU.md): install from the
# copied folder, patch and compile Jittor for CUDA, run the layer, CUDA-branch, model and
# parity tests on CUDA, benchmark the full config against PyTorch on the same GPU, train
# one demo epoch.
#
#   benchmarks/gpu_wheels.sh             # here, once: fills .gpu/ (git-ignored)
#   benchmarks/gpu_check.sh --dry-run    # here: every step but the CUDA calls
#   benchmarks/gpu_check.sh              # there, from the repository root, .gpu/ beside it
#
# Logs go to $OUT (default benchmarks/out/gpu): gpu_check.log (the summary), machine.txt,
# compile.log, tests.log, bench_full.txt, bench_full.json, epoch.log. Each step has a
# time budget and the whole script a deadline (GPU_CHECK_SECONDS, default 450 s), so that
# it ends within 8 minutes whatever fails; a failed step is logged and the next one runs.
set -uo pipefail

DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
CARRY="${GPU_CARRY:-.gpu}"
OUT="${OUT:-$ROOT/benchmarks/out/gpu}"
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
: > "$LOG"
START=$(date +%s)
DEADLINE="${GPU_CHECK_SECONDS:-450}"
FAILED=0

log() { echo "== [$(( $(date +%s) - START )) s] $*" | tee -a "$LOG"; }

# step NAME BUDGET LOGFILE COMMAND...: run COMMAND with a timeout of BUDGET seconds, or what
# is left before the deadline, appending its output to LOGFILE.
step() {
    local name=$1 budget=$2 file=$3 rc left
    shift 3
    left=$(( DEADLINE - ($(date +%s) - START) ))
    [ "$budget" -gt "$left" ] && budget=$left
    if [ "$budget" -lt 15 ]; then
        log "$name: SKIPPED, the deadline is near"; FAILED=1; return 1
    fi
    log "$name (at most $budget s): $*"
    echo "== $name: $*" >> "$file"
    timeout "$budget" "$@" >> "$file" 2>&1
    rc=$?
    case $rc in
        0) log "$name: ok" ;;
        124) log "$name: TIMED OUT after $budget s (see $(basename "$file"))"; FAILED=1 ;;
        *) log "$name: FAILED, status $rc (see $(basename "$file")): $(grep -a -v '^\s*$' "$file" | tail -1 | cut -c1-200)"; FAILED=1 ;;
    esac
    return $rc
}

# -- what is copied to the GPU machine: the working tree (tracked and untracked files git
#    does not ignore) and the folder of wheels and demo data
if [ $DRY = 1 ] && git rev-parse --git-dir > /dev/null 2>&1; then
    tree_kb=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -ck 2>/dev/null | tail -1 | cut -f1)
    carry_kb=$(du -sk "$CARRY" 2>/dev/null | cut -f1)
    log "$(awk -v t="$tree_kb" -v c="${carry_kb:-0}" -v d="$CARRY" 'BEGIN { printf "to copy: working tree %.1f MiB + %s %.1f MiB", t/1024, d, c/1024 }')"
fi
if [ ! -d "$CARRY/wheels" ] || [ ! -f "$CARRY/demo/data/ve8_01.json" ]; then
    log "no $CARRY/wheels or $CARRY/demo: run benchmarks/gpu_wheels.sh first"; exit 1
fi

# -- Jittor's environment: no oneDNN (the CPU's convolutions, not used on CUDA), no MPI or
#    NCCL (one GPU), its info lines in the logs
export use_mkl=0 use_mpi=0 use_nccl=0 log_silent=0 PYTHONUNBUFFERED=1
# the demo config (Makefile), one epoch; results and MFCC cache outside what travels
DEMO=(--root_path "$CARRY/demo/data" --expr_name gpu_demo --resnet_depth 10
      --snippet_duration 8 --sample_size 64 --seq_len 4 --batch_size 8 --n_epochs 1
      --learning_rate 1e-3 --manual_seed 1)
TESTS=(tests/test_cuda_branches.py tests/test_layers.py tests/test_model.py tests/test_parity.py)

if [ $DRY = 1 ]; then
    PY="${PYTHON:-$ROOT/.venv/bin/python}"
    SITE="$(mktemp -d)"
    trap 'rm -rf "$SITE"' EXIT
    log "dry run with $PY: the machine's steps are replaced by what can run here"
    # the same install, for the GPU machine's Python on x86-64 Linux
    step install 120 "$OUT/machine.txt" "$PY" -m pip install -q --no-index --no-deps \
        --no-compile --target "$SITE" --only-binary=:all: --python-version "${TARGET_PYTHON:-3.12}" \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
        "$CARRY"/wheels/*.whl
    # the patch set against the copied Jittor, for the CUDA found here (if any)
    step patches 60 "$OUT/compile.log" env PYTHONPATH="$SITE" "$PY" -m core.jittor_cuda --check
    step tests 120 "$OUT/tests.log" "$PY" -m pytest -q --collect-only -p no:cacheprovider "${TESTS[@]}"
    step bench 60 "$OUT/bench_full.txt" "$PY" benchmarks/bench_model.py --help
    step epoch 300 "$OUT/epoch.log" env use_mkl=1 "$PY" main.py "${DEMO[@]}" --no_cuda \
        --result_path "$SITE/results" --audio_cache "$SITE/mfcc_cache"
else
    PY=python3
    SITE=/tmp/vaanet_site
    export cache_name=gpu_check
    { nvidia-smi; "$PY" --version; command -v nvcc && nvcc --version | tail -2; nproc; free -g; } \
        > "$OUT/machine.txt" 2>&1
    step install 120 "$OUT/machine.txt" "$PY" -m pip install -q --no-index --no-deps \
        --no-compile --target "$SITE" "$CARRY"/wheels/*.whl || exit 1
    # the copied packages (numpy < 2, Jittor) ahead of the machine's own
    export PYTHONPATH="$SITE:$ROOT"
    "$PY" -c "import numpy, torch; print('numpy', numpy.__version__, 'torch', torch.__version__, torch.version.cuda)" \
        >> "$OUT/machine.txt" 2>&1
    # finds CUDA and cuDNN, patches Jittor, compiles its CUDA core, its externs and the
    # vendor ops' kernels (benchmarks/cuda_compile.py)
    step compile 180 "$OUT/compile.log" "$PY" benchmarks/cuda_compile.py
    step smoke 60 "$OUT/compile.log" "$PY" -c "
from core.jittor_setup import jt
from jittor import nn
from models.layers import Conv3d
assert jt.flags.use_cuda == 1, 'Jittor did not turn CUDA on'
assert jt.compile_extern.cudnn is not None, 'cuDNN not loaded'
conv = Conv3d(8, 4, 3, 1, 1)
x = jt.randn(2, 5, 12, 12, 8)
ref = nn.conv3d(x.transpose(0, 4, 1, 2, 3), conv.weight, padding=1).transpose(0, 2, 3, 4, 1)
err = float((conv(x) - ref).abs().max())
print('Conv3d (cuDNN NDHWC) vs nn.conv3d: max abs diff', err)
assert err < 1e-3"
    step tests 170 "$OUT/tests.log" "$PY" -m pytest -q -p no:cacheprovider -rf "${TESTS[@]}"
    step bench 170 "$OUT/bench_full.txt" "$PY" benchmarks/bench_model.py --compare \
        --config full --runs 3 --warmup 1 --json "$OUT/bench_full.json"
    step epoch 90 "$OUT/epoch.log" "$PY" main.py "${DEMO[@]}" --result_path /tmp/vaanet_results \
        --audio_cache /tmp/vaanet_mfcc_cache
fi
log "done in $(( $(date +%s) - START )) s: $( [ $FAILED = 0 ] && echo 'every step passed' || echo 'SOME STEPS FAILED')"
exit $FAILED
