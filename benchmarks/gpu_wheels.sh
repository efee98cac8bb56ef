#!/usr/bin/env bash
# Prepare the folder that benchmarks/gpu_check.sh carries to the GPU machine (git-ignored).
#
#   benchmarks/gpu_wheels.sh [DIR]        # default DIR: .gpu (in the repository root)
#
# The GPU machine (benchmarks/GPU.md) has no network and takes at most 64 MiB per call,
# working tree included, so DIR holds only what its python3 (3.12) lacks:
#   DIR/wheels/  Jittor 1.3.11 (built here: pure Python, its C++ compiles there), numpy 1.26
#                (Jittor 1.3.11 misreads numpy 2's arrays), librosa and the small pieces it
#                and Jittor need that the machine does not have;
#   DIR/demo/    a prepared demo dataset (tools/make_demo_dataset.py, prepare_dataset.py:
#                frames and audio), since making one there would need ffmpeg.
# Needs pip and network here (PyPI) and the project's .venv (make venv) for the demo data.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${1:-$ROOT/.gpu}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
mkdir -p "$DIR/wheels"
cd "$ROOT"

# What the machine's python3 lacks (its package list: /work/.library/device/KINDS.md at the
# time of writing). Pinned to what the project's tests run with here.
PACKAGES=(
    numpy==1.26.4 astunparse==1.6.3
    librosa==0.11.0 audioread==3.1.0 soundfile==0.14.0 soxr==1.1.0 pooch==1.9.0
    platformdirs==4.14.8 decorator==5.3.1 cffi==2.1.1 pycparser==3.12
)
TARGET=(--only-binary=:all: --python-version 3.12 --implementation cp
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
        --platform manylinux1_x86_64 --platform any)
rm -f "$DIR"/wheels/*.whl
"$PY" -m pip download -q --no-deps "${TARGET[@]}" -d "$DIR/wheels" "${PACKAGES[@]}"
"$PY" -m pip wheel -q --no-deps -w "$DIR/wheels" jittor==1.3.11.0

# A demo dataset small enough to carry: 8 classes x (2 train + 1 test) videos of 2 s.
if [ ! -f "$DIR/demo/data/ve8_01.json" ]; then
    rm -rf "$DIR/demo"
    "$PY" tools/make_demo_dataset.py --dst "$DIR/demo/raw" --per_class_train 2 \
        --per_class_test 1 --seconds 2
    "$PY" tools/prepare_dataset.py --src "$DIR/demo/raw" --dst "$DIR/demo/data" \
        --dataset ve8 --split_dir "$DIR/demo/raw/splits"
    rm -rf "$DIR/demo/raw"
fi
ls -1 "$DIR/wheels"
du -sh "$DIR" "$DIR"/*
