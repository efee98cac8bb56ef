"""Jittor 1.3.11 on CUDA 12 / 13 with cuDNN 9: where CUDA lives, a few patches, a fallback.

``core/jittor_setup.py`` calls ``prepare()`` before ``import jittor`` whenever CUDA is to be
used. Stock Jittor 1.3.11 expects CUDA 11 with cuDNN 8, all in the folder above ``nvcc``;
``prepare`` brings it up on what GPU machines have today:

- **Where CUDA is.** Jittor takes the CUDA home to be the folder above the resolved
  ``nvcc`` (``include/``, ``lib64/libcudart.so``) and looks for each of cuBLAS, cuDNN,
  cuRAND, cuFFT, cuSPARSE as ``X.h`` and ``libX.so`` there or under ``/usr``. pip's CUDA
  wheels (``nvidia-cuda-nvcc``, ``nvidia-cudnn-cu13``, ...; PyTorch's dependencies) ship
  ``lib/`` with versioned names only and cuDNN in a folder of its own. Where Jittor would
  not find everything, ``prepare`` makes a CUDA home of links in Jittor's cache folder
  (``bin/nvcc`` running the real one, ``include/`` and ``lib64/`` linking what was found)
  and points ``nvcc_path`` at it. Where Jittor finds everything, nothing is added.
- **The patches** (``PATCHES``, each with its reason) edit the installed Jittor's files:
  only those that the CUDA and cuDNN found need, once (a patched file is recognised), and
  each keeps stock behaviour for CUDA 11 / cuDNN 8, so a Jittor shared with other
  projects keeps working. A user on CUDA 11 with cuDNN 8 gets no patch at all.
- **No usable cuDNN.** When cuDNN is missing or cannot be loaded, ``conv_opt=1`` makes
  Jittor skip it, the layers use Jittor's own CUDA convolutions, and a warning names the
  cause.

    python -m core.jittor_cuda           # what was found, which patches apply (changes nothing)
    python -m core.jittor_cuda --apply   # patch Jittor and make the CUDA home now, not at first use

Patching replaces each file whole, under a lock on Jittor's folder, so that several
processes starting at once (mpirun's ranks on a fresh environment) patch it once.
"""
import contextlib
import ctypes
import fcntl
import glob
import hashlib
import importlib.util
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass, field

from core.atomic_file import write_atomically

_TARGET = "sbsa-linux" if os.uname().machine == "aarch64" else "x86_64-linux"
_ARCH_LIB = "/usr/lib/aarch64-linux-gnu" if os.uname().machine == "aarch64" \
    else "/usr/lib/x86_64-linux-gnu"
# The libraries Jittor links (compile_extern.setup_cuda_extern), with the header it looks for.
EXTERNS = {"cublas": "cublas.h", "cudnn": "cudnn.h", "curand": "curand.h",
           "cufft": "cufft.h", "cusparse": "cusparse.h"}
# cuDNN 9 split libcudnn into these; Jittor (patched) loads the first three by name.
CUDNN9_PARTS = ("graph", "ops", "cnn", "adv", "heuristic", "engines_precompiled",
                "engines_runtime_compiled")
_HOME_LAYOUT = 3  # bump when the CUDA home's layout changes


@dataclass
class Toolkit:
    """What ``find_toolkit`` found: the real ``nvcc``, its CUDA version, the header folders
    and library files to use, and cuDNN's version (None, and why, if it is not usable)."""
    nvcc: str
    cuda: tuple
    includes: list = field(default_factory=list)  # the toolkit's first
    libs: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)   # library -> the folder of its header
    lib_dirs: list = field(default_factory=list)  # the toolkit's and the wheels' lib folders
    cudnn: tuple = None
    cudnn_problem: str = None
    stock: bool = False  # Jittor finds all of it by itself from nvcc_path
    devices: int = 0     # CUDA devices the driver reports
    npp: bool = False    # NPP's npp.h is among the headers
    home: str = None     # the CUDA home of links made for Jittor, where one was needed


# --------------------------------------------------------------------------- finding CUDA

def cuda_device_count():
    """Number of CUDA devices the driver reports; 0 when there is no usable driver."""
    for name in ("libcuda.so.1", "libcuda.so"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return count.value
    return 0


def _nvidia_dirs():
    """The ``nvidia`` folders of pip's CUDA wheels on sys.path."""
    found = []
    for entry in sys.path:
        d = os.path.join(entry or ".", "nvidia")
        if os.path.isdir(d) and os.path.realpath(d) not in map(os.path.realpath, found):
            found.append(d)
    return found


def _jittor_cache():
    home = os.environ.get("JITTOR_HOME") or os.path.expanduser("~")
    return os.path.join(home, ".cache", "jittor")


def find_nvcc():
    """The nvcc Jittor would use (``nvcc_path``, its own CUDA download, PATH, the usual
    folders), else the one of pip's ``nvidia-cuda-nvcc`` wheel; None if there is none."""
    if "nvcc_path" in os.environ:  # Jittor's own variable; empty: no CUDA
        return os.environ["nvcc_path"] or None
    candidates = sorted(glob.glob(os.path.join(_jittor_cache(), "jtcuda", "*", "bin", "nvcc")))
    candidates += [shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc", "/usr/bin/nvcc",
                   "/opt/cuda/bin/nvcc"]
    for d in _nvidia_dirs():
        candidates += sorted(glob.glob(os.path.join(d, "cu[0-9]*", "bin", "nvcc")), reverse=True)
        candidates.append(os.path.join(d, "cuda_nvcc", "bin", "nvcc"))
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


def nvcc_version(nvcc):
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"release (\d+)\.(\d+)", out)
    if not m:
        raise RuntimeError(f"could not read the CUDA version from `{nvcc} --version`: {out!r}")
    return int(m.group(1)), int(m.group(2))


def real_nvcc(nvcc):
    """``nvcc`` with links resolved, and through a wrapper script (``exec /x/bin/nvcc "$@"``,
    as some images install in /usr/local/bin and as ``make_cuda_home`` writes)."""
    real = os.path.realpath(nvcc)
    with open(real, "rb") as f:
        head = f.read(4096)
    m = re.search(rb'exec\s+"?([^"\s]+/nvcc)"?\s', head) if head.startswith(b"#!") else None
    return real_nvcc(m.group(1).decode()) if m else real


def _roots(nvcc, cuda_major):
    """(header folders, library folders) where CUDA's pieces may be, best first: the
    toolkit of nvcc, pip's wheels for this CUDA major, the system."""
    home = os.path.dirname(os.path.dirname(real_nvcc(nvcc)))
    roots = [([os.path.join(home, "include"), os.path.join(home, "targets", _TARGET, "include")],
              [os.path.join(home, "lib64"), os.path.join(home, "lib"),
               os.path.join(home, "targets", _TARGET, "lib")])]
    for d in _nvidia_dirs():
        names = [f"cu{cuda_major}"]
        if cuda_major == 12:  # CUDA 12 wheels: one folder per component
            names += ["cuda_runtime", "cublas", "curand", "cufft", "cusparse", "cuda_cccl",
                      "cuda_nvcc", "nvjitlink"]
        names.append("cudnn")
        for n in names:
            roots.append(([os.path.join(d, n, "include")], [os.path.join(d, n, "lib")]))
    roots.append((["/usr/include"], [_ARCH_LIB, "/usr/lib", "/usr/local/cuda/lib64"]))
    return [([i for i in inc if os.path.isdir(i)], [l for l in lib if os.path.isdir(l)])
            for inc, lib in roots]


def _pick_library(lib_dirs, name, major=None):
    """``lib{name}.so.{major}`` (or unversioned, or any version) in the first folder that
    has one."""
    for d in lib_dirs:
        exact = [os.path.join(d, f"lib{name}.so.{major}")] if major else []
        exact.append(os.path.join(d, f"lib{name}.so"))
        for p in exact:
            if os.path.isfile(p):
                return p
        if major is None:
            others = sorted(glob.glob(os.path.join(d, f"lib{name}.so.*")), key=len)
            if others:
                return others[0]
    return None


def _cudnn_header_version(include_dir):
    text = ""
    for name in ("cudnn_version.h", "cudnn.h"):
        p = os.path.join(include_dir, name)
        if os.path.isfile(p):
            with open(p, errors="replace") as f:
                text += f.read()
    parts = [re.search(rf"#define CUDNN_{k}\s+(\d+)", text)
             for k in ("MAJOR", "MINOR", "PATCHLEVEL")]
    return tuple(int(m.group(1)) for m in parts) if all(parts) else None


def find_toolkit(nvcc=None):
    """Locate CUDA and cuDNN for ``nvcc`` (default ``find_nvcc()``); None without nvcc."""
    nvcc = nvcc or find_nvcc()
    if not nvcc:
        return None
    tk = Toolkit(nvcc=nvcc, cuda=nvcc_version(nvcc))
    major = tk.cuda[0]
    roots = _roots(nvcc, major)
    tk.includes = list(dict.fromkeys(i for inc, _ in roots for i in inc))
    tk.lib_dirs = list(dict.fromkeys(d for _, libs in roots[:-1] for d in libs))  # not /usr
    tk.npp = any(os.path.isfile(os.path.join(i, "npp.h")) for i in tk.includes)
    wanted = {"cudart": ("cuda_runtime.h", major), "cublas": ("cublas.h", major),
              "cublasLt": ("cublasLt.h", major), "curand": ("curand.h", None),
              "cufft": ("cufft.h", None), "cusparse": ("cusparse.h", None),
              "cudnn": ("cudnn.h", None)}
    for name, (header, lib_major) in wanted.items():
        for inc, libs in roots:
            header_dir = next((i for i in inc if os.path.isfile(os.path.join(i, header))), None)
            path = _pick_library(libs, name, lib_major) if header_dir else None
            if path:
                tk.libs[name] = path
                tk.headers[name] = header_dir
                if name == "cudnn":
                    tk.cudnn = _cudnn_header_version(header_dir)
                break
    tk.cudnn_problem = _check_cudnn(tk)
    if tk.cudnn_problem is None and tk.cudnn[0] >= 9:
        d = os.path.dirname(tk.libs["cudnn"])
        for part in CUDNN9_PARTS:
            p = _pick_library([d], f"cudnn_{part}", tk.cudnn[0])
            if p:
                tk.libs[f"cudnn_{part}"] = p
    if not _jittor_finds_everything(nvcc, tk) and _jittor_finds_everything(real_nvcc(nvcc), tk):
        tk.nvcc = real_nvcc(nvcc)  # a wrapper script: Jittor would look beside it
    tk.stock = _jittor_finds_everything(tk.nvcc, tk)
    return tk


def _check_cudnn(tk):
    """Why cuDNN cannot be used, or None: it must be there, load, and be the version its
    header says (cuDNN 8 or 9)."""
    path = tk.libs.get("cudnn")
    if path is None:
        return (f"no cuDNN (cudnn.h with libcudnn.so) was found; "
                f"install nvidia-cudnn-cu{tk.cuda[0]}")
    if tk.cudnn is None or tk.cudnn[0] < 8:
        return f"unsupported cuDNN version {tk.cudnn} ({path})"
    try:
        if tk.cudnn[0] >= 9:  # its parts first: libcudnn.so.9 loads them on demand
            d = os.path.dirname(path)
            for part in ("graph", "ops", "cnn"):
                p = _pick_library([d], f"cudnn_{part}", tk.cudnn[0])
                if p is None:
                    return f"cuDNN {tk.cudnn[0]} without libcudnn_{part} next to {path}"
                ctypes.CDLL(p, mode=ctypes.RTLD_GLOBAL)
        lib = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    except OSError as e:
        return f"{path} cannot be loaded: {e}"
    lib.cudnnGetVersion.restype = ctypes.c_size_t
    loaded = lib.cudnnGetVersion()
    if (loaded // 10000 if loaded >= 10000 else loaded // 1000) != tk.cudnn[0]:
        return f"{path} is cuDNN version {loaded}, its header cudnn.h says {tk.cudnn}"
    return None


def _jittor_finds_everything(nvcc, tk):
    """Whether stock Jittor, given ``nvcc_path=nvcc``, finds every header and library
    itself (compiler.check_cuda, compile_extern.setup_cuda_lib / search_file)."""
    home = os.path.dirname(os.path.dirname(os.path.abspath(nvcc)))
    include = os.path.join(home, "include")
    lib = _ARCH_LIB if os.path.abspath(nvcc) == "/usr/bin/nvcc" else os.path.join(home, "lib64")
    if not os.path.isfile(os.path.join(lib, "libcudart.so")):
        return False
    if not os.path.isfile(os.path.join(include, "cuda_runtime.h")):
        return False
    includes = [include, os.path.join(home, "targets", _TARGET, "include"), "/usr/include"]
    lib_dirs = [os.path.join(home, "bin"), lib, os.path.join(home, "targets", _TARGET, "lib"),
                _ARCH_LIB, "/usr/lib"]
    names = dict(EXTERNS)
    if tk.cudnn_problem:
        names.pop("cudnn")  # skipped (conv_opt=1), with cuFFT and cuSPARSE
        names.pop("cufft")
        names.pop("cusparse")
    elif tk.cudnn[0] >= 9:
        names.update({f"cudnn_{p}": None for p in ("graph", "ops", "cnn")})
    for name, header in names.items():
        if header and not any(os.path.isfile(os.path.join(i, header)) for i in includes):
            return False
        if not any(os.path.isfile(os.path.join(d, f"lib{name}.so")) for d in lib_dirs):
            return False
    # cub: bundled with nvcc (CUDA 13: under include/cccl, which nvcc adds itself)
    return any(os.path.isfile(os.path.join(i, "cub", "cub.cuh"))
               for i in (include, os.path.join(include, "cccl"),
                         os.path.join(home, "targets", _TARGET, "include")))


def make_cuda_home(tk):
    """A folder laid out as Jittor expects a CUDA home, of links to what ``tk`` found:
    ``bin/nvcc`` (a script running the real one, since Jittor resolves links),
    ``include/`` and ``lib64/`` (each library as ``libX.so`` and under its own name).
    Made once per toolkit, in Jittor's cache folder; returns its path."""
    nvcc = real_nvcc(tk.nvcc)
    key = json.dumps([_HOME_LAYOUT, nvcc, tk.includes, tk.lib_dirs, sorted(tk.libs.items())])
    home = os.path.join(_jittor_cache(), "vaanet_cuda",
                        hashlib.sha1(key.encode()).hexdigest()[:12])
    if os.path.isfile(os.path.join(home, "bin", "nvcc")):
        return home
    os.makedirs(os.path.dirname(home), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=os.path.dirname(home))
    for sub in ("bin", "include", "lib64"):
        os.mkdir(os.path.join(tmp, sub))
    with open(os.path.join(tmp, "bin", "nvcc"), "w") as f:
        f.write(f'#!/bin/sh\n# CUDA home for Jittor made by core/jittor_cuda.py\n'
                f'exec "{nvcc}" "$@"\n')
    os.chmod(os.path.join(tmp, "bin", "nvcc"), 0o755)
    # the toolkit's headers, then each library's own, then the rest (not /usr/include,
    # which every compiler searches anyway)
    order = tk.includes[:1] + list(tk.headers.values()) + tk.includes[1:]
    for inc in dict.fromkeys(i for i in order if i != "/usr/include"):
        for entry in sorted(os.listdir(inc)):
            link = os.path.join(tmp, "include", entry)
            if not os.path.lexists(link):
                os.symlink(os.path.join(inc, entry), link)
    for name, path in tk.libs.items():
        for link_name in {f"lib{name}.so", os.path.basename(path)}:
            os.symlink(path, os.path.join(tmp, "lib64", link_name))
    # and what they load in turn, for which $ORIGIN is now lib64/: libcusparse.so.12 needs
    # libnvJitLink (CUDA 12: in another wheel's folder), libcudnn.so.9 its parts
    for d in tk.lib_dirs:
        for path in sorted(glob.glob(os.path.join(d, "lib*.so*"))):
            link = os.path.join(tmp, "lib64", os.path.basename(path))
            if not os.path.lexists(link):
                os.symlink(path, link)
    try:
        os.rename(tmp, home)
    except OSError:  # another process made it first
        shutil.rmtree(tmp, ignore_errors=True)
    return home


# ------------------------------------------------------------------------------ patches

@dataclass
class Patch:
    """Replace each ``old`` by its ``new`` in ``path`` (relative to Jittor's package), when
    ``needed(toolkit)``. A file that already holds every ``new`` is left alone."""
    path: str
    why: str
    needed: object
    edits: list


def _cuda13(tk):
    return tk.cuda[0] >= 13


def _cudnn9(tk):
    return tk.cudnn_problem is None and tk.cudnn[0] >= 9


def _attribute(attr, device):
    return (f"[&]{{ int v = 0; cudaDeviceGetAttribute(&v, {attr}, {device}); return v; }}()")


PATCHES = [
    Patch("src/misc/cuda_flags.cc",
          "without a driver cudaGetDeviceCount fails and leaves Jittor's count at -1, taken "
          "for a device: a CUDA build then aborts at load on a machine with no GPU",
          lambda tk: tk.devices == 0,
          [("        cudaGetDeviceCount(&count);\n    return count;",
            "        if (cudaGetDeviceCount(&count) != cudaSuccess) count = 0;  "
            "// patched (core/jittor_cuda.py)\n    return count;")]),
    Patch("extern/cuda/inc/helper_cuda.h",
          "CUDA 13 removed cudaDeviceProp::computeMode and ::clockRate: read them as "
          "device attributes, which every CUDA has",
          _cuda13,
          [("if (deviceProp.computeMode == cudaComputeModeProhibited) {",
            f"if ({_attribute('cudaDevAttrComputeMode', 'devID')} == cudaComputeModeProhibited) {{"),
           ("    if (deviceProp.computeMode != cudaComputeModeProhibited) {\n",
            f"    if ({_attribute('cudaDevAttrComputeMode', 'current_device')} != cudaComputeModeProhibited) {{\n"),
           ("sm_per_multiproc * deviceProp.clockRate;",
            f"sm_per_multiproc * {_attribute('cudaDevAttrClockRate', 'current_device')};"),
           ("        (deviceProp.computeMode != cudaComputeModeProhibited)) {",
            f"        ({_attribute('cudaDevAttrComputeMode', 'current_device')} != cudaComputeModeProhibited)) {{")]),
    Patch("src/misc/cuda_limits.h",
          "every generated reduction kernel includes it, and it takes 8 integer limits from "
          "NPP's npp.h, which pip's CUDA wheels and minimal toolkits lack: define them here",
          lambda tk: not tk.npp,
          [("#ifdef IS_CUDA\n#include <npp.h>\n",
            "#ifdef IS_CUDA\n#if __has_include(<npp.h>)\n#include <npp.h>\n"
            "#else  // patched (core/jittor_cuda.py): NPP's limits without NPP\n"
            "#define NPP_MIN_32U ( 0 )\n#define NPP_MAX_32U ( 4294967295U )\n"
            "#define NPP_MIN_32S (-2147483647 - 1 )\n#define NPP_MAX_32S ( 2147483647 )\n"
            "#define NPP_MIN_64U ( 0 )\n#define NPP_MAX_64U ( 18446744073709551615ULL )\n"
            "#define NPP_MIN_64S (-9223372036854775807LL - 1)\n"
            "#define NPP_MAX_64S ( 9223372036854775807LL )\n#endif\n")]),
    Patch("extern/cuda/cub/ops/cub_where_op.cc",
          "CUDA 13's CCCL 3 removed cub::CountingInputIterator and cub::TransformInputIterator: "
          "use thrust's, which every CUDA has",
          _cuda13,
          [("#include <thrust/transform.h>\n",
            "#include <thrust/transform.h>\n"
            "#include <thrust/iterator/counting_iterator.h>  // patched (core/jittor_cuda.py)\n"
            "#include <thrust/iterator/transform_iterator.h>\n"),
           ("    cub::CountingInputIterator<To> counting_itr(0);\n",
            "    thrust::counting_iterator<To> counting_itr(0);\n"),
           ("    cub::TransformInputIterator<bool, NonZeroOp<Ti>, Ti*> itr(",
            "    thrust::transform_iterator<NonZeroOp<Ti>, Ti*, bool> itr(")]),
    Patch("compiler.py",
          "CUDA 13's CCCL 3 (cub, thrust) needs C++17, where Jittor asks nvcc for C++14",
          _cuda13,
          [("        if nvcc_version >= [11,4]:\n"
            "            nvcc_flags = nvcc_flags.replace(\"-std=c++17\", \"-std=c++14 -Xcompiler -std:c++14\")\n",
            "        if nvcc_version >= [13]:  # patched (core/jittor_cuda.py): CCCL 3 needs C++17\n"
            "            nvcc_flags = nvcc_flags.replace(\"-std=c++14\", \"-std=c++17\")\n"
            "        elif nvcc_version >= [11,4]:\n"
            "            nvcc_flags = nvcc_flags.replace(\"-std=c++17\", \"-std=c++14 -Xcompiler -std:c++14\")\n")]),
    Patch("compile_extern.py",
          "cuDNN 9 replaced libcudnn_{ops,cnn}_{infer,train}.so by libcudnn_{graph,ops,cnn}.so "
          "(Jittor issue 666), and dropped the legacy RNN API of Jittor's cudnn_rnn ops",
          _cudnn9,
          [("                libs = [\"libcudnn_ops_infer.so\", \"libcudnn_ops_train.so\", "
            "\"libcudnn_cnn_infer.so\", \"libcudnn_cnn_train.so\"]\n",
            "                libs = [\"libcudnn_ops_infer.so\", \"libcudnn_ops_train.so\", "
            "\"libcudnn_cnn_infer.so\", \"libcudnn_cnn_train.so\"]\n"
            "                if _cudnn_major(cuda_include_name) >= 9:  # patched (core/jittor_cuda.py)\n"
            "                    libs = [\"libcudnn_graph.so\", \"libcudnn_ops.so\", \"libcudnn_cnn.so\"]\n"),
           ("    culib_src_dir = os.path.join(jittor_path, \"extern\", \"cuda\", lib_name)\n"
            "    culib_src_files = []\n"
            "    for r, _, f in os.walk(culib_src_dir):\n"
            "        for fname in f:\n",
            "    culib_src_dir = os.path.join(jittor_path, \"extern\", \"cuda\", lib_name)\n"
            "    culib_src_files = []\n"
            "    for r, _, f in os.walk(culib_src_dir):\n"
            "        for fname in f:\n"
            "            if lib_name == \"cudnn\" and \"rnn\" in fname and link and "
            "_cudnn_major(cuda_include_name) >= 9: continue  # patched: no legacy RNN API\n"),
           ("def setup_cuda_lib(lib_name, link=True, extra_flags=\"\"):\n",
            "def _cudnn_major(cudnn_h):  # patched (core/jittor_cuda.py)\n"
            "    import re\n"
            "    text = \"\".join(open(p, errors=\"replace\").read() for p in (cudnn_h, "
            "os.path.join(os.path.dirname(cudnn_h), \"cudnn_version.h\")) if os.path.isfile(p))\n"
            "    m = re.search(r\"#define CUDNN_MAJOR\\s+(\\d+)\", text)\n"
            "    return int(m.group(1)) if m else 0\n\n"
            "def setup_cuda_lib(lib_name, link=True, extra_flags=\"\"):\n")]),
    Patch("nn.py",
          "without the cudnn_rnn ops (cuDNN 9), Jittor's RNN/LSTM/GRU take their own path",
          _cudnn9,
          [("        if jt.flags.use_cuda and jt.cudnn and jt.compiler.is_cuda:\n",
            "        if jt.flags.use_cuda and jt.cudnn and hasattr(jt.cudnn.ops, \"cudnn_rnn\") "
            "and jt.compiler.is_cuda:  # patched\n"),
           ("        if jt.flags.use_cuda and jt.cudnn and self.proj_size == 0 and jt.compiler.is_cuda:\n",
            "        if jt.flags.use_cuda and jt.cudnn and hasattr(jt.cudnn.ops, \"cudnn_rnn\") "
            "and self.proj_size == 0 and jt.compiler.is_cuda:  # patched\n")]),
]


def jittor_dir():
    spec = importlib.util.find_spec("jittor")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("Jittor is not installed (pip install -r requirements.txt)")
    return list(spec.submodule_search_locations)[0]


def patch_state(patch, root=None):
    """'applied', 'pending' (stock text found) or 'unknown' (neither: another Jittor)."""
    with open(os.path.join(root or jittor_dir(), patch.path)) as f:
        text = f.read()
    if all(new in text for _, new in patch.edits):
        return "applied"
    if all(old in text or new in text for old, new in patch.edits):
        return "pending"
    return "unknown"


@contextlib.contextmanager
def _locked(folder):
    """Exclusive use of ``folder`` among the processes that ask for it: an flock on the
    folder itself (nothing created, nothing left behind; released when the process ends),
    so that ranks started together by mpirun patch Jittor one after the other."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def apply_patches(tk, root=None):
    """Apply the patches ``tk`` needs to the installed Jittor; returns [(patch, state)]
    with state 'applied now', 'applied' (before) or 'not needed'. Each file is replaced
    whole (a process reading it sees the stock file or the patched one), under a lock:
    of processes starting at once, one patches and the others find it done."""
    root = root or jittor_dir()
    needed = [p for p in PATCHES if p.needed(tk)]
    if any(patch_state(p, root) != "applied" for p in needed):
        with _locked(root):
            done = {p.path: _apply(p, tk, root) for p in needed}
    else:
        done = {p.path: "applied" for p in needed}
    return [(p, done.get(p.path, "not needed")) for p in PATCHES]


def _apply(patch, tk, root):
    state = patch_state(patch, root)  # again: another process may have patched it meanwhile
    if state == "applied":
        return state
    path = os.path.join(root, patch.path)
    if state == "unknown":
        raise RuntimeError(f"{path} is not Jittor 1.3.11's: cannot apply the patch "
                           f"({patch.why}); install jittor==1.3.11.0")
    with open(path) as f:
        text = f.read()
    for old, new in patch.edits:
        if new not in text:
            text = text.replace(old, new, 1)
    try:
        write_atomically(path, lambda f: f.write(text.encode()),
                         mode=stat.S_IMODE(os.stat(path).st_mode))
    except OSError as e:
        raise RuntimeError(f"cannot patch {path} ({e}): Jittor needs it for CUDA "
                           f"{tk.cuda[0]} / cuDNN {tk.cudnn}: {patch.why}. Install Jittor "
                           "where you can write (a virtual environment), or set "
                           "VAANET_NO_CUDA=1 for the CPU") from e
    return "applied now"


# ------------------------------------------------------------------------------ prepare

def prepare(devices, nvcc=None):
    """Before ``import jittor``: find CUDA, patch Jittor for it, point Jittor at it.
    ``devices``: how many CUDA devices the driver reports (0: only compile, see
    ``core.jittor_setup``).
    Returns the Toolkit, or None when there is no nvcc (Jittor then does as it always
    does). Warns when cuDNN is unusable and Jittor is told to skip it."""
    tk = find_toolkit(nvcc)
    if tk is None:
        return None
    tk.devices = devices
    for name in ("cudart", "cublas", "curand"):
        if name not in tk.libs:
            raise RuntimeError(
                f"CUDA {tk.cuda[0]}.{tk.cuda[1]} (nvcc {tk.nvcc}) without lib{name}: install "
                f"the toolkit's libraries (pip: nvidia-cuda-runtime, nvidia-cublas, "
                f"nvidia-curand for CUDA 13; their -cu12 wheels for CUDA 12), or set "
                "VAANET_NO_CUDA=1 for the CPU")
    if tk.cudnn_problem:
        os.environ["conv_opt"] = "1"  # Jittor skips cuDNN (and cuFFT, cuSPARSE)
        warnings.warn(f"cuDNN is not used: {tk.cudnn_problem}. Convolutions run on Jittor's "
                      "own CUDA kernels, which are much slower.", RuntimeWarning, stacklevel=3)
    apply_patches(tk)
    if tk.cuda[0] >= 13:
        # cutt (Jittor's transposes, built from a zip at first use) reads the device
        # properties CUDA 13 removed; Jittor's own transpose kernels replace it.
        os.environ.setdefault("use_cutt", "0")
    nvcc_path = tk.nvcc
    if not tk.stock:
        tk.home = make_cuda_home(tk)
        nvcc_path = os.path.join(tk.home, "bin", "nvcc")
    os.environ["nvcc_path"] = nvcc_path
    return tk


def describe(tk):
    """What was found, and each patch: needed or not, and its state in the installed Jittor."""
    if tk is None:
        lines = ["no nvcc found: Jittor runs on the CPU (or downloads its own CUDA 11)"]
    else:
        lines = [f"nvcc        {tk.nvcc} (CUDA {tk.cuda[0]}.{tk.cuda[1]})",
                 f"cuDNN       {'.'.join(map(str, tk.cudnn)) if tk.cudnn else '-'}"
                 + (f"  NOT USED: {tk.cudnn_problem}" if tk.cudnn_problem else ""),
                 "layout      " + ("Jittor finds everything itself" if tk.stock else
                                  "a CUDA home of links is needed"
                                  + (f": {tk.home}" if tk.home else ""))]
        lines += [f"  {name:<30} {path}" for name, path in sorted(tk.libs.items())]
    root = jittor_dir()
    lines.append(f"patches of {root}:")
    for patch in PATCHES:
        needed = "-" if tk is None else "needed" if patch.needed(tk) else "not needed"
        lines.append(f"  {patch.path:<36} {needed:<10} {patch_state(patch, root):<8} {patch.why}")
    return "\n".join(lines)


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(
        prog="python -m core.jittor_cuda",
        description="What core/jittor_setup.py would use for CUDA; with --apply, do it now.")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 unless every patch fits the installed Jittor "
                        "(stock or patched)")
    parser.add_argument("--apply", action="store_true",
                        help="patch the installed Jittor and make the CUDA home now, as the "
                        "first use of CUDA would (e.g. once after installing, on a GPU machine)")
    args = parser.parse_args(argv)
    tk = prepare(cuda_device_count()) if args.apply else find_toolkit()
    print(describe(tk))
    unknown = [p.path for p in PATCHES if patch_state(p) == "unknown"]
    if args.check and unknown:
        return f"this Jittor is not the 1.3.11 the patches were written for: {unknown}"
    return 0


if __name__ == "__main__":
    sys.exit(main())
