#!/usr/bin/env bash
# Make the folder to copy, together with the repository, to a GPU machine that has no
# network access, where benchmarks/gpu_check.sh checks the port on CUDA (benchmarks/GPU.md).
#
#   benchmarks/gpu_wheels.sh [DIR]                  # default DIR: .gpu (git-ignored)
#   TARGET_PYTHON=3.11 benchmarks/gpu_wheels.sh     # the GPU machine's Python version
#   SKIP="torch scipy" benchmarks/gpu_wheels.sh     # packages the GPU machine already has
#
# DIR/wheels/  Jittor (a wheel built here: pure Python, its C++ is compiled on the GPU
#              machine) and every other package of requirements.txt and
#              requirements-test.txt with their dependencies, as wheels for the GPU
#              machine's Python (TARGET_PYTHON, default 3.12) on x86-64 Linux
#              (TARGET_PLATFORMS), except the packages named in SKIP (default: torch, whose
#              CUDA build the GPU machine needs for the comparison and should install itself);
# DIR/demo/    a prepared demo dataset (tools/make_demo_dataset.py, prepare_dataset.py),
#              for the demo epoch there.
# Needs pip with access to PyPI here, and the project's .venv (make venv) for the demo data.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${1:-$ROOT/.gpu}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
TARGET_PYTHON="${TARGET_PYTHON:-3.12}"
TARGET_PLATFORMS="${TARGET_PLATFORMS:-manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64 any}"
SKIP="${SKIP:-torch}"
mkdir -p "$DIR/wheels"
cd "$ROOT"

TARGET=(--only-binary=:all: --python-version "$TARGET_PYTHON" --implementation cp)
for p in $TARGET_PLATFORMS; do TARGET+=(--platform "$p"); done
rm -f "$DIR"/wheels/*.whl
"$PY" -m pip wheel -q --no-deps -w "$DIR/wheels" "$(grep -h '^jittor==' requirements.txt)"
# the requirements without Jittor (its wheel above stands for it, dependencies included)
# and without what SKIP names
REQS="$(mktemp)"
trap 'rm -f "$REQS"' EXIT
grep -hv -e '^\s*#' -e '^\s*$' -e '^jittor==' requirements.txt requirements-test.txt > "$REQS"
for name in $SKIP; do
    grep -iv -E "^${name}([<>=!~ ;[]|$)" "$REQS" > "$REQS.kept" || true
    mv "$REQS.kept" "$REQS"
done
"$PY" -m pip download -q "${TARGET[@]}" -d "$DIR/wheels" -r "$REQS" "$DIR"/wheels/jittor-*.whl

if [ ! -f "$DIR/demo/data/ve8_01.json" ]; then  # 8 classes x (2 train + 1 test) videos of 2 s
    rm -rf "$DIR/demo"
    "$PY" tools/make_demo_dataset.py --dst "$DIR/demo/raw" --per_class_train 2 \
        --per_class_test 1 --seconds 2
    "$PY" tools/prepare_dataset.py --src "$DIR/demo/raw" --dst "$DIR/demo/data" \
        --dataset ve8 --split_dir "$DIR/demo/raw/splits"
    rm -rf "$DIR/demo/raw"
fi
ls -1 "$DIR/wheels"
du -sh "$DIR" "$DIR"/*
