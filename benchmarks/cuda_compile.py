"""Build Jittor's CUDA side on a machine without a GPU, as far as nvcc goes without one.

    python benchmarks/cuda_compile.py                 # sm_90 (H100 / H200)
    python benchmarks/cuda_compile.py --arch 80 --log cuda_compile.log

Needs an nvcc and the CUDA libraries (a CUDA install, or pip's ``nvidia-*`` wheels;
README, "GPU"). What it builds, through ``core/jittor_setup.py`` and its patches:

1. Jittor's CUDA core and its externs (cuBLAS, cuDNN, cuRAND, cub, cuFFT, cuSPARSE), on
   import, as on a GPU machine (``VAANET_CUDA_COMPILE_ONLY=1``).
2. The CUDA kernels of the vendor ops this project calls on a GPU, compiled the way
   Jittor compiles an op the first time it runs (its JIT source, with the op's types),
   then loaded with every symbol resolved: cuDNN's NDHWC / NHWC convolutions and their
   gradients, cuBLAS' matrix products, cuRAND, cub's arg-max / sort / where / cumsum.
3. The device helpers every generated Jittor kernel includes (atomics, reductions) for
   float32 and float64.

Only running them needs a device. Exit status 0 when everything built.
"""
import argparse
import ctypes
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

F32 = {"Tx": "float32", "Ty": "float32", "Tw": "float32"}
# (extern, op, its JIT defines): the op's jit_prepare, with this project's types.
OPS = [
    ("cudnn", "cudnn_conv3d", F32),  # Conv3d: NDHWC clips
    ("cudnn", "cudnn_conv3d_backward_x", F32),
    ("cudnn", "cudnn_conv3d_backward_w", F32),
    ("cudnn", "cudnn_conv", dict(F32, XFORMAT="acdb", WFORMAT="oihw", YFORMAT="acdb")),  # Conv2d NHWC
    ("cudnn", "cudnn_conv_backward_x", dict(F32, XFORMAT="acdb", WFORMAT="oihw", YFORMAT="acdb")),
    ("cudnn", "cudnn_conv_backward_w", dict(F32, XFORMAT="acdb", WFORMAT="oihw", YFORMAT="acdb")),
    ("cudnn", "cudnn_conv", dict(F32, XFORMAT="abcd", WFORMAT="oihw", YFORMAT="abcd")),  # nn.conv2d
    ("cublas", "cublas_matmul", {"T": "float32", "Trans_a": "N", "Trans_b": "T", "op": "S"}),  # 1x1x1
    ("cublas", "cublas_matmul", {"T": "float32", "Trans_a": "N", "Trans_b": "N", "op": "S"}),
    ("cublas", "cublas_matmul", {"T": "float32", "Trans_a": "T", "Trans_b": "N", "op": "S"}),
    ("cublas", "cublas_batched_matmul", {"T": "float32", "Trans_a": "N", "Trans_b": "N", "op": "S"}),
    ("curand", "curand_random", {"T": "float32", "R": "normal"}),
    ("curand", "curand_random", {"T": "float32", "R": "uniform"}),
    ("cub", "cub_arg_reduce", {"Tx": "float32", "Toffsets": "int32", "FUNC": "ArgMax"}),
    ("cub", "cub_argsort", {"Tx": "float32", "Tindexes": "int32", "Toffsets": "int32",
                            "Ty": "int32", "FUNC": "SortPairsDescending"}),
    ("cub", "cub_where", {"Ti": "bool", "To": "int32", "NDIM": "1"}),
    ("cub", "cub_cumsum", {"Tx": "float32", "Ty": "float32", "reverse": "0"}),
]

# What Jittor's CUDA pass puts into generated kernels, for the types the model uses.
KERNEL_HELPERS = r"""
#include "misc/cuda_atomic.h"
#include "misc/cuda_limits.h"
#include "helper_cuda.h"
namespace jittor {
template <class T> __global__ void probe(T* p, T v) {
    atomicAdd(p, v);
    cuda_atomic_max(p + 1, ::numeric_min<T>());
    cuda_atomic_min(p + 2, ::numeric_max<T>());
    p[4] = shared_reduce<T, shared_reduce_add<T>>(v);
    p[5] = shared_reduce<T, shared_reduce_max<T>>(v);
}
template __global__ void probe<float>(float*, float);
template __global__ void probe<double>(double*, double);
template __global__ void probe<int>(int*, int);
}
"""


def jit_source(jt, extern, op, defines):
    """The source Jittor compiles the first time ``op`` runs on CUDA (OpCompiler::
    get_jit_src): JIT switches, the op's file preprocessed with its defines, which are
    also #defined after its last #include."""
    path = os.path.join(jt.flags.jittor_path, "extern", "cuda", extern, "ops", f"{op}_op.cc")
    defs = {"JIT": "1", "JIT_cuda": "1", "index_t": "int32", **defines}
    with open(path) as f:
        src = jt.core.op_compiler.precompile(defs, f.read())
    head = "".join(f"#define {k} {v}\n" for k, v in defs.items() if k.startswith("JIT"))
    rest = "".join(f"#define {k} {v}\n" for k, v in defs.items() if not k.startswith("JIT"))
    last = src.rfind("#include")
    cut = src.find("\n", last) + 1 if last >= 0 else 0
    return head + src[:cut] + rest + src[cut:]


def link_flags(jt, extern):
    """The flags compile_extern gives the ops of ``extern`` (compile_custom_ops)."""
    jittor = jt.flags.jittor_path
    mod = getattr(jt.compile_extern, extern if extern != "cub" else "cub_ops")
    mod_file = sys.modules[mod.__name__.split(".")[0]].__file__  # the gen_ops_* library
    flags = [f"-I{jittor}/extern/cuda/inc", f"-I{jittor}/extern/cuda/{extern}/inc",
             f"-I{jittor}/extern/cuda/{extern}/ops",
             f"-L{os.path.join(jt.flags.cache_path, 'cuda')}", "-l:libcuda_extern.so"]
    if extern != "cub":
        lib_dir = os.path.join(os.path.dirname(os.path.dirname(jt.flags.nvcc_path)), "lib64")
        flags += [f"-l{extern}", f"-L{lib_dir}"]
    return flags + [f"-L{os.path.dirname(mod_file)}", f"-l:{os.path.basename(mod_file)}"]


def nvcc_command(jt, src_path, out_path, extra):
    """Jittor's nvcc command for a JIT op (jit_compiler::compile and fix_cl_flags)."""
    cmd = [jt.flags.nvcc_path, src_path]
    for flag in re.findall(r'(?:[^\s"]|"[^"]*")+', jt.flags.nvcc_flags) + extra:
        flag = flag.replace('"', "")
        if flag.startswith("-l") and not flag.startswith("-l:") and \
                ("cpython" in flag or "lib" in flag):
            flag = "-l:" + flag[2:] + ".so"
        cmd.append(flag)
        if flag.startswith("-L"):
            cmd += ["-Xlinker", "-rpath=" + flag[2:]]
    return cmd + ["-o", out_path]


def build(jt, name, source, extra, out_dir, log):
    base = os.path.join(out_dir, re.sub(r"[^\w.-]", "_", name))
    with open(base + ".cc", "w") as f:
        f.write(source)
    cmd = nvcc_command(jt, base + ".cc", base + ".so", extra)
    t0 = time.time()
    run = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.time() - t0
    if run.returncode != 0:
        errors = [l for l in (run.stdout + run.stderr).splitlines() if "error" in l][:6]
        log(f"FAIL  {name}  ({seconds:.0f} s)\n      " + "\n      ".join(errors or
            (run.stdout + run.stderr).splitlines()[-6:]))
        return False
    try:  # every symbol resolved now (cuDNN, cuBLAS, Jittor), as Jittor will load it
        ctypes.CDLL(base + ".so", mode=os.RTLD_NOW | os.RTLD_LOCAL)
    except OSError as e:
        log(f"FAIL  {name}  built but does not load: {e}")
        return False
    log(f"ok    {name}  ({seconds:.0f} s, loaded)")
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="90", help="without a GPU: the compute capability to "
                    "build for (90: H100/H200); with one, Jittor builds for it")
    ap.add_argument("--log", help="also write the report to this file")
    args = ap.parse_args()
    from core import jittor_cuda
    os.environ["VAANET_CUDA_COMPILE_ONLY"] = "1"
    if jittor_cuda.cuda_device_count() == 0:
        os.environ.setdefault("nvcc_flags", f"-arch=sm_{args.arch}")
    lines = []

    def log(line):
        print(line, flush=True)
        lines.append(line)

    t0 = time.time()
    tk = jittor_cuda.find_toolkit()
    if tk is None:
        sys.exit("no nvcc found: install a CUDA toolkit or pip's nvidia-cuda-nvcc wheel")
    log("== Jittor's CUDA core and externs (import jittor)")
    from core.jittor_setup import jt
    log(jittor_cuda.describe(jittor_cuda.find_toolkit()))
    ok = bool(jt.compiler.is_cuda)
    for name in ("cublas", "cudnn", "curand", "cufft", "cusparse", "cub_ops"):
        mod = getattr(jt.compile_extern, name, None)
        log(f"{'ok  ' if mod is not None else 'NONE'}  {name}")
        ok &= mod is not None or (name in ("cudnn", "cufft", "cusparse") and tk.cudnn_problem)
    log(f"nvcc {jt.flags.nvcc_path}\nnvcc flags: {' '.join(jt.flags.nvcc_flags.split())}")
    log(f"import: {time.time() - t0:.0f} s")

    out_dir = os.path.join(jt.flags.cache_path, "vaanet_cuda_check")
    os.makedirs(out_dir, exist_ok=True)
    log(f"== JIT kernels of the vendor ops (sources and libraries in {out_dir})")
    for extern, op, defines in OPS:
        if getattr(jt.compile_extern, extern if extern != "cub" else "cub_ops", None) is None:
            log(f"skip  {op}: {extern} not loaded")
            continue
        name = op + "[" + ",".join(f"{k}={v}" for k, v in defines.items()) + "]"
        ok &= build(jt, name, jit_source(jt, extern, op, defines), link_flags(jt, extern),
                    out_dir, log)
    log("== device helpers of Jittor's generated kernels")
    ok &= build(jt, "kernel_helpers", KERNEL_HELPERS, [], out_dir, log)
    log(f"{'ALL BUILT' if ok else 'SOME FAILED'} in {time.time() - t0:.0f} s")
    if args.log:
        with open(args.log, "w") as f:
            f.write("\n".join(lines) + "\n")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
