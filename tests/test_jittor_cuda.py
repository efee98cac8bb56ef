"""core/jittor_cuda.py without a GPU: the patch set on a copy of the installed Jittor's
files, and finding CUDA in a pip-wheel layout made of stand-in files (a fake nvcc, cuDNN
built here as a tiny C library answering cudnnGetVersion), down to the fallback without
cuDNN and its warning."""
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from core import jittor_cuda
from core.jittor_cuda import PATCHES, Toolkit, apply_patches, patch_state

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def jittor_copy(tmp_path):
    """The files of the installed Jittor that the patches touch, copied (stock or already
    patched: the patches are undone first, so the copy is stock)."""
    root = tmp_path / "jittor"
    for patch in PATCHES:
        dst = root / patch.path
        dst.parent.mkdir(parents=True, exist_ok=True)
        text = open(os.path.join(jittor_cuda.jittor_dir(), patch.path)).read()
        for old, new in patch.edits:
            text = text.replace(new, old)
        dst.write_text(text)
    return str(root)


def _toolkit(cuda, cudnn, npp=False, devices=0):
    return Toolkit(nvcc="nvcc", cuda=cuda, cudnn=cudnn, npp=npp, devices=devices)


def _files(root):
    return {p.path: open(os.path.join(root, p.path)).read() for p in PATCHES}


def test_patches_apply_once_and_only_where_needed(jittor_copy):
    stock = _files(jittor_copy)
    assert all(patch_state(p, jittor_copy) == "pending" for p in PATCHES)

    # CUDA 11 + cuDNN 8 on a GPU machine with NPP: stock Jittor, nothing touched
    done = apply_patches(_toolkit((11, 8), (8, 9, 7), npp=True, devices=1), jittor_copy)
    assert {state for _, state in done} == {"not needed"}
    assert _files(jittor_copy) == stock

    # CUDA 12.9 + cuDNN 9 with a full toolkit: the cuDNN 9 patches only
    done = dict((p.path, s) for p, s in
                apply_patches(_toolkit((12, 9), (9, 10, 2), npp=True, devices=1), jittor_copy))
    assert {k for k, s in done.items() if s == "applied now"} == {"compile_extern.py", "nn.py"}

    # CUDA 13 + cuDNN 9 from pip wheels, no GPU: the rest; then again: nothing changes
    apply_patches(_toolkit((13, 0), (9, 19, 0)), jittor_copy)
    patched = _files(jittor_copy)
    assert all(patch_state(p, jittor_copy) == "applied" for p in PATCHES)
    done = apply_patches(_toolkit((13, 0), (9, 19, 0)), jittor_copy)
    assert {state for _, state in done} == {"applied"}
    assert _files(jittor_copy) == patched
    for path in ("compile_extern.py", "compiler.py", "nn.py"):
        compile(patched[path], path, "exec")  # still Python
    assert "clockRate" not in patched["extern/cuda/inc/helper_cuda.h"]
    assert "cub::CountingInputIterator" not in patched["extern/cuda/cub/ops/cub_where_op.cc"]


def test_patched_jittor_picks_cudnn_libraries_by_version(jittor_copy, tmp_path):
    """The patched compile_extern.py reads cuDNN's major version from its headers."""
    apply_patches(_toolkit((13, 0), (9, 19, 0)), jittor_copy)
    source = open(os.path.join(jittor_copy, "compile_extern.py")).read()
    start = source.index("def _cudnn_major(cudnn_h):")
    namespace = {"os": os}
    exec(source[start:source.index("def setup_cuda_lib(")], namespace)
    for major in (8, 9):
        inc = tmp_path / f"cudnn{major}"
        inc.mkdir()
        (inc / "cudnn.h").write_text('#include "cudnn_version.h"\n')
        (inc / "cudnn_version.h").write_text(f"#define CUDNN_MAJOR {major}\n")
        assert namespace["_cudnn_major"](str(inc / "cudnn.h")) == major


def test_a_patch_refuses_another_jittor(jittor_copy):
    path = os.path.join(jittor_copy, "extern/cuda/inc/helper_cuda.h")
    with open(path, "w") as f:
        f.write("// not Jittor 1.3.11's\n")
    with pytest.raises(RuntimeError, match="not Jittor 1.3.11's"):
        apply_patches(_toolkit((13, 0), (9, 19, 0)), jittor_copy)


def _fake_wheels(tmp_path, cudnn_version, loadable=True, header_major=None):
    """site/nvidia/cu13 (nvcc, headers, libraries) and site/nvidia/cudnn as pip lays them
    out; libraries are empty files except cuDNN's, a C library built here."""
    site = tmp_path / "site"
    cu = site / "nvidia" / "cu13"
    for sub in ("bin", "include", "lib"):
        (cu / sub).mkdir(parents=True)
    nvcc = cu / "bin" / "nvcc"
    nvcc.write_text("#!/bin/sh\necho 'Cuda compilation tools, release 13.0, V13.0.88'\n")
    nvcc.chmod(0o755)
    (cu / "include" / "cccl" / "cub").mkdir(parents=True)
    for h in ("cuda_runtime.h", "cublas.h", "cublasLt.h", "curand.h", "cufft.h", "cusparse.h",
              "cccl/cub/cub.cuh"):
        (cu / "include" / h).write_text("")
    for lib in ("libcudart.so.13", "libcublas.so.13", "libcublasLt.so.13", "libcurand.so.10",
                "libcufft.so.12", "libcusparse.so.12", "libnvJitLink.so.13"):
        (cu / "lib" / lib).write_text("")
    cudnn = site / "nvidia" / "cudnn"
    (cudnn / "include").mkdir(parents=True)
    (cudnn / "lib").mkdir(parents=True)
    major = header_major or cudnn_version // 10000
    (cudnn / "include" / "cudnn.h").write_text('#include "cudnn_version.h"\n')
    (cudnn / "include" / "cudnn_version.h").write_text(
        f"#define CUDNN_MAJOR {major}\n#define CUDNN_MINOR 19\n#define CUDNN_PATCHLEVEL 0\n")
    for name in ("libcudnn", "libcudnn_graph", "libcudnn_ops", "libcudnn_cnn"):
        target = cudnn / "lib" / f"{name}.so.9"
        if loadable:
            src = tmp_path / "cudnn.c"
            src.write_text(f"#include <stddef.h>\nsize_t cudnnGetVersion(void) "
                           f"{{ return {cudnn_version}; }}\n")
            subprocess.run(["cc", "-shared", "-fPIC", "-o", str(target), str(src)], check=True)
        else:
            target.write_text("not a library")
    return site, str(nvcc)


@pytest.fixture
def isolated(monkeypatch, tmp_path, jittor_copy):
    """prepare() writes only under tmp_path: Jittor's copy, the CUDA home, the environment."""
    monkeypatch.setattr(jittor_cuda, "jittor_dir", lambda: jittor_copy)
    monkeypatch.setattr(jittor_cuda, "_jittor_cache", lambda: str(tmp_path / "cache"))
    for var in ("nvcc_path", "conv_opt", "use_cutt"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_pip_layout_with_cudnn9_gets_a_cuda_home_and_the_patches(isolated, tmp_path):
    site, nvcc = _fake_wheels(tmp_path, 91900)
    isolated.setattr(sys, "path", sys.path + [str(site)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning
        tk = jittor_cuda.prepare(1, nvcc=nvcc)
    assert tk.cuda == (13, 0) and tk.cudnn == (9, 19, 0) and tk.cudnn_problem is None
    assert not tk.stock and os.environ["nvcc_path"] == os.path.join(tk.home, "bin", "nvcc")
    assert "conv_opt" not in os.environ and os.environ["use_cutt"] == "0"
    lib64 = os.path.join(tk.home, "lib64")
    for name in ("libcudart.so", "libcublas.so", "libcudnn.so", "libcudnn_ops.so",
                 "libcudnn_cnn.so", "libcudnn_graph.so", "libnvJitLink.so.13"):
        assert os.path.exists(os.path.join(lib64, name)), name
    for name in ("cuda_runtime.h", "cudnn.h", "cudnn_version.h"):
        assert os.path.exists(os.path.join(tk.home, "include", name)), name
    out = subprocess.run([os.environ["nvcc_path"], "--version"], capture_output=True, text=True)
    assert "release 13.0" in out.stdout  # the wrapper runs the real nvcc
    # Jittor, given this home, finds everything itself: a second prepare reuses it
    assert jittor_cuda.find_toolkit(os.environ["nvcc_path"]).stock
    needed = {p.path for p in PATCHES if p.needed(tk)}
    assert "compile_extern.py" in needed and "src/misc/cuda_flags.cc" not in needed  # a GPU
    assert all(patch_state(p) == ("applied" if p.path in needed else "pending") for p in PATCHES)


@pytest.mark.parametrize("case,cause", [
    ("unloadable", "cannot be loaded"),
    ("wrong version", "is cuDNN version 8907, its header cudnn.h says"),
    ("missing", "no cuDNN"),
])
def test_unusable_cudnn_falls_back_with_a_warning_naming_the_cause(isolated, tmp_path, case,
                                                                   cause):
    if case != "unloadable" and shutil.which("cc") is None:
        pytest.skip("needs a C compiler")
    site, nvcc = _fake_wheels(tmp_path, 8907 if case == "wrong version" else 91900,
                              loadable=case != "unloadable", header_major=9)
    if case == "missing":
        shutil.rmtree(site / "nvidia" / "cudnn")
    isolated.setattr(sys, "path", sys.path + [str(site)])
    with pytest.warns(RuntimeWarning, match=f"cuDNN is not used: .*{cause}"):
        tk = jittor_cuda.prepare(1, nvcc=nvcc)
    assert os.environ["conv_opt"] == "1"  # Jittor skips cuDNN; the layers use its own convs
    assert not any(p.needed(tk) for p in PATCHES if p.path in ("compile_extern.py", "nn.py"))


def test_no_nvcc_leaves_jittor_as_it_is(isolated):
    isolated.setenv("nvcc_path", "")  # Jittor's own way to say: no CUDA
    assert jittor_cuda.prepare(1) is None
    assert os.environ["nvcc_path"] == ""


_APPLY_IN_A_PROCESS = """
import sys
from core.jittor_cuda import Toolkit, apply_patches
done = apply_patches(Toolkit(nvcc="nvcc", cuda=(13, 0), cudnn=(9, 19, 0)), sys.argv[1])
print(sum(state == "applied now" for _, state in done))
"""


def test_processes_patching_at_once_patch_each_file_once(jittor_copy):
    """Ranks starting together on a fresh environment: one patches, the others wait for it
    and find the files done; no temporary file is left beside them."""
    once = str(Path(jittor_copy).parent / "once")
    shutil.copytree(jittor_copy, once)
    apply_patches(_toolkit((13, 0), (9, 19, 0)), once)
    procs = [subprocess.Popen([sys.executable, "-c", _APPLY_IN_A_PROCESS, jittor_copy],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(4)]
    applied = [int(p.communicate()[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(applied) == [0, 0, 0, len(PATCHES)]
    assert _files(jittor_copy) == _files(once)
    assert sorted(str(p.relative_to(jittor_copy)) for p in Path(jittor_copy).rglob("*")
                  if p.is_file()) == sorted(p.path for p in PATCHES)


def test_patching_keeps_each_files_permissions(jittor_copy):
    path = os.path.join(jittor_copy, "compiler.py")
    os.chmod(path, 0o640)
    apply_patches(_toolkit((13, 0), (9, 19, 0)), jittor_copy)
    assert patch_state(PATCHES[4], jittor_copy) == "applied" and PATCHES[4].path == "compiler.py"
    assert os.stat(path).st_mode & 0o777 == 0o640


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_apply_option_patches_now_and_prints_what_it_did(isolated, tmp_path, capsys):
    site, nvcc = _fake_wheels(tmp_path, 91900)
    isolated.setattr(sys, "path", sys.path + [str(site)])
    isolated.setenv("nvcc_path", nvcc)
    isolated.setattr(jittor_cuda, "cuda_device_count", lambda: 1)
    assert jittor_cuda.main([]) == 0  # plain: describes, changes nothing
    assert all(patch_state(p) == "pending" for p in PATCHES)
    assert "a CUDA home of links is needed\n" in capsys.readouterr().out
    assert jittor_cuda.main(["--apply"]) == 0
    out = capsys.readouterr().out
    needed = [p for p in PATCHES if p.path != "src/misc/cuda_flags.cc"]  # one GPU: not that one
    assert all(patch_state(p) == "applied" for p in needed)
    assert patch_state(PATCHES[0]) == "pending" and PATCHES[0].path == "src/misc/cuda_flags.cc"
    home = os.environ["nvcc_path"][:-len("/bin/nvcc")]
    assert f"a CUDA home of links is needed: {home}" in out and os.path.isdir(home)
