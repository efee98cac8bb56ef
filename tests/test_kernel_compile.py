"""Jittor's kernel compiles (core/kernel_compile.py): under a lock that outlives the
process that asked, so that a compiler left running by a killed process finishes before the
next compile of the same kernel starts; with a precompiled header that changes no machine
code."""
import math
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from core import kernel_compile
from core.jittor_setup import jt

ROOT = Path(__file__).resolve().parents[1]
LOCKED = [sys.executable, str(ROOT / "core" / "kernel_compile.py")]


def fake_compiler(tmp_path):
    """A 'compiler' that logs its start, takes a second, then logs its end and writes its
    output; with a tag ending in "!", it fails instead (exit status 1, no output)."""
    script = tmp_path / "compiler.py"
    script.write_text(textwrap.dedent("""
        import sys, time
        tag, out = sys.argv[1], sys.argv[-1]
        open(out + ".log", "a").write("start " + tag + "\\n")
        time.sleep(1.0)
        if tag.endswith("!"):
            open(out + ".log", "a").write("failed " + tag + "\\n")
            sys.exit(1)
        open(out, "w").write(tag)
        open(out + ".log", "a").write("end " + tag + "\\n")
    """))
    return script


def wait_for_line(log, line, timeout=30):
    end = time.time() + timeout
    while not (log.exists() and line in log.read_text().split("\n")):
        assert time.time() < end, f"no {line!r} in {log}"
        time.sleep(0.02)


def compile_after_a_killed_one(tmp_path, second, first="A"):
    """The log of two compiles of one kernel, and the kernel: the first (tagged ``first``)
    asked by a shell that is killed once the compiler runs (as a killed Jittor process
    leaves its compiler), the second (tagged B) started by ``second`` at once."""
    compiler, out = fake_compiler(tmp_path), tmp_path / "kernel_op.so"
    asker = subprocess.Popen(["sh", "-c", " ".join(f"'{a}'" for a in (
        *LOCKED, compiler, first, "-o", out))], start_new_session=True)
    log = Path(str(out) + ".log")
    wait_for_line(log, "start " + first)
    os.kill(asker.pid, signal.SIGKILL)
    asker.wait()
    subprocess.run([*second, str(compiler), "B", "-o", str(out)], check=True, timeout=60)
    end = "failed " + first if first.endswith("!") else "end " + first
    wait_for_line(log, end)
    return log.read_text().splitlines(), out.read_text()


def test_a_compile_waits_for_the_compiler_of_a_killed_process_and_uses_its_kernel(tmp_path):
    assert compile_after_a_killed_one(tmp_path, LOCKED) == (["start A", "end A"], "A")


def test_a_compile_that_waited_for_a_failed_one_compiles(tmp_path):
    assert compile_after_a_killed_one(tmp_path, LOCKED, first="A!") == (
        ["start A!", "failed A!", "start B", "end B"], "B")


def test_a_kernel_asked_for_again_later_compiles_again(tmp_path):
    """Only a compile that was waited for is taken: Jittor asks again when its cache key
    does not match (a source or header changed), and that compile runs."""
    compiler, out = fake_compiler(tmp_path), tmp_path / "kernel_op.so"
    for tag in ("A", "B"):
        subprocess.run([*LOCKED, str(compiler), tag, "-o", str(out)], check=True, timeout=60)
    assert Path(f"{out}.log").read_text().split() == ["start", "A", "end", "A", "start", "B",
                                                      "end", "B"]


def test_control_without_the_lock_the_compiles_overlap(tmp_path):
    lines, _ = compile_after_a_killed_one(tmp_path, [sys.executable])
    assert lines.index("start B") < lines.index("end A"), lines


def test_the_compiler_script_gets_jittor_utils_without_importing_it(tmp_path):
    """asm_tuner's uses of ``jittor_utils`` work on the stand-in, which does not import the
    real module; a name the stand-in lacks comes from the real module."""
    script, out = tmp_path / "compiler.py", tmp_path / "kernel_op.so"
    script.write_text(textwrap.dedent("""
        import sys
        import jittor_utils
        from jittor_utils import LOG
        LOG.vvvv("a message"); jittor_utils.try_import_jit_utils_core(silent=True)
        stand_in = "__file__" not in vars(sys.modules["jittor_utils"])
        real = callable(jittor_utils.run_cmd) and callable(jittor_utils.run_cmds)
        open(sys.argv[-1], "w").write(repr((stand_in, real)))
    """))
    subprocess.run([*LOCKED, str(script), "-o", str(out)], check=True, timeout=60)
    assert out.read_text() == "(True, True)"


def _compilers_at_once(cpus, setting=None):
    """Jittor's number of parallel kernel compiles in a process pinned to ``cpus`` CPUs,
    ``use_parallel_op_compiler`` set to ``setting`` in its environment or unset."""
    env = {k: v for k, v in os.environ.items() if k != "use_parallel_op_compiler"}
    if setting is not None:
        env["use_parallel_op_compiler"] = setting
    code = ("import sys; sys.path.insert(0, %r); from core.jittor_setup import jt; "
            "print(jt.flags.use_parallel_op_compiler)" % str(ROOT))
    pinned = sorted(os.sched_getaffinity(0))[:cpus]
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=300,
                          preexec_fn=lambda: os.sched_setaffinity(0, pinned))
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.split()[-1])


def test_jittor_runs_no_more_compiles_at_once_than_the_process_has_cpus():
    """Pinned to one CPU, a process compiles one kernel at a time (Jittor's default is 16,
    capped by memory: 8 on a 24 GB machine); a number the user set is kept."""
    assert _compilers_at_once(1) == 1
    assert _compilers_at_once(1, setting="3") == 3


def test_jittor_compiles_its_kernels_through_the_lock():
    """A kernel new to the cache (its source carries a number no other run has) is compiled
    by a fresh process through core/kernel_compile.py: its lock file stands beside it, and
    the precompiled header is in Jittor's cache folder."""
    token = time.time_ns() % 10**15
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from core.jittor_setup import jt
        x = jt.ones((3,))
        y = jt.code(x.shape, x.dtype, [x], cpu_src="for (int i = 0; i < in0_shape0; i++) "
                    "@out(i) = @in0(i) * 2 + 0 * {token}ll;")
        assert y.numpy().tolist() == [2.0, 2.0, 2.0]
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    jit = Path(jt.flags.cache_path) / "jit"
    sources = [p for p in jit.glob("*_op.cc") if f"{token}ll" in p.read_text()]
    assert len(sources) == 1, sources
    kernel = sources[0].with_suffix(".so")
    assert kernel.exists() and Path(f"{kernel}.lock").exists(), kernel
    assert list(Path(jt.flags.cache_path).glob("pch/*/kernel.h.gch"))


def machine_code(folder, source, flags, header=None):
    """The object code (debug information stripped) g++ makes in ``folder`` of a kernel
    ``source`` as Jittor's asm_tuner does (``-g -S``, then assembled); with ``header``,
    included as core/kernel_compile.py does, and g++ must report that it read its
    precompiled form."""
    out = folder / "kernel.s"
    extra = [*kernel_compile.MACROS, "-include", header, "-H"] if header else []
    proc = subprocess.run(["g++", str(source), *extra, *flags, "-g", "-S", "-o", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    if header:
        assert f"! {header}.gch" in proc.stderr.splitlines(), proc.stderr[:2000]
    obj = out.with_suffix(".o")
    subprocess.run(["g++", "-c", str(out), "-o", str(obj)], check=True)
    subprocess.run(["objcopy", "--strip-debug", str(obj)], check=True)
    return obj.read_bytes()


def fused_and_code_kernels():
    """The sources of a fused kernel (unary and reduce ops) and a code kernel this process
    compiled, neither with asm_tuner's markers."""
    x = jt.ones((3, 5))
    y = jt.code(x.shape, x.dtype, [x], cpu_src="for (int i = 0; i < in0_shape0; i++) "
                "for (int j = 0; j < in0_shape1; j++) @out(i, j) = @in0(i, j) * 3;")
    assert ((y * 2 + 1).exp().sum(1)).numpy().tolist() == pytest.approx([5 * math.exp(7)] * 3)
    jit = Path(jt.flags.cache_path) / "jit"
    sources = [(p, p.read_text()) for p in sorted(jit.glob("*_op.cc"))]
    return [next(p for p, text in sources
                 if all(f'#include "{h}"' in text for h in hs) and "@begin" not in text)
            for hs in (("fused_op.h", "ops/unary_op.h", "ops/reduce_op.h"), ("ops/code_op.h",))]


def test_kernels_compile_to_the_same_code_with_the_precompiled_header(tmp_path):
    """A fused kernel and a code kernel of this process compile to the same machine code
    with and without the precompiled header (which g++ reads); control: the comparison
    tells -O0 code from Jittor's -Ofast code."""
    kernels = fused_and_code_kernels()
    flags = kernel_compile.compile_flags(shlex.split(jt.flags.cc_flags))
    header = kernel_compile.build_header("g++", flags, str(tmp_path / "pch"))
    assert header is not None
    for source in kernels:
        plain = machine_code(tmp_path, source, flags)
        assert machine_code(tmp_path, source, flags, header) == plain, source
        assert machine_code(tmp_path, source, [*flags, "-O0"]) != plain, source


def loaded_bytes(library):
    """What a shared library loads (its allocated sections), less its build id (a hash
    that covers the debug information too)."""
    out = library.with_suffix(".bin")
    subprocess.run(["objcopy", "-O", "binary", "--remove-section", ".note.gnu.build-id",
                    str(library), str(out)], check=True)
    return out.read_bytes()


def test_kernels_without_markers_compile_straight_to_the_same_code(tmp_path):
    """Jittor's command for a fused kernel and a code kernel of this process, given to
    core/kernel_compile.py, builds the library without asm_tuner (which leaves its
    assembly files beside the source) and with the code asm_tuner makes; control: the
    comparison tells -O0 code from Jittor's."""
    kernels = fused_and_code_kernels()
    tuner = str(Path(jt.__file__).parent / "utils" / "asm_tuner.py")
    # Jittor's flags but the libraries (a kernel library may leave symbols to its loader)
    flags = [a for a in shlex.split(jt.flags.cc_flags) if not a.startswith(("-l", "-L"))]
    for i, kernel in enumerate(kernels):
        libraries = {}
        for way, command in (("tuner", [sys.executable]), ("direct", LOCKED), ("O0", LOCKED)):
            folder = tmp_path / f"{i}{way}"
            folder.mkdir()
            source = folder / kernel.name
            source.write_text(kernel.read_text())
            out = source.with_suffix(".so")
            extra = ["-O0"] if way == "O0" else []
            subprocess.run([*command, tuner, "--cc_path=g++", str(source), *flags, *extra,
                            "-o", str(out)], check=True, timeout=300, cwd=folder)
            assert (way == "tuner") == source.with_suffix(".post.s").exists(), way
            libraries[way] = loaded_bytes(out)
        assert libraries["direct"] == libraries["tuner"], kernel
        assert libraries["O0"] != libraries["tuner"], kernel


def test_a_kernel_with_markers_goes_through_the_compiler_script(tmp_path):
    """A source with asm_tuner's ``//@begin`` marker is handed to the compiler script;
    one without is built by g++ itself."""
    script = tmp_path / "tuner.py"
    script.write_text("import sys\nopen(sys.argv[-1], 'w').write('script')\n")
    for name, marker in (("plain", ""), ("marked", '//@begin replace "a" "b"\n//@end\n')):
        source = tmp_path / f"{name}_op.cc"
        source.write_text(f"{marker}int f() {{ return 1; }}\n")
        out = tmp_path / f"{name}_op.so"
        subprocess.run([*LOCKED, str(script), "--cc_path=g++", str(source), "-shared", "-fPIC",
                        "-o", str(out)], check=True, timeout=120)
        assert (out.read_bytes() == b"script") == bool(marker), name
