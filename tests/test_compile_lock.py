"""Jittor's kernel compiles under a lock that outlives the process that asked
(core/locked_compile.py): a compiler left running by a killed process finishes before the
next compile of the same kernel starts."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from core.jittor_setup import jt

ROOT = Path(__file__).resolve().parents[1]
LOCKED = [sys.executable, str(ROOT / "core" / "locked_compile.py")]


def fake_compiler(tmp_path):
    """A 'compiler' that logs its start, takes a second, then logs its end."""
    script = tmp_path / "compiler.py"
    script.write_text(textwrap.dedent("""
        import sys, time
        tag, log = sys.argv[1], sys.argv[-1] + ".log"
        open(log, "a").write("start " + tag + "\\n")
        time.sleep(1.0)
        open(log, "a").write("end " + tag + "\\n")
    """))
    return script


def wait_for_line(log, line, timeout=30):
    end = time.time() + timeout
    while not (log.exists() and line in log.read_text().split("\n")):
        assert time.time() < end, f"no {line!r} in {log}"
        time.sleep(0.02)


def compile_after_a_killed_one(tmp_path, second):
    """The log of two compiles of one kernel: the first asked by a shell that is killed
    once the compiler runs (as a killed Jittor process leaves its compiler), the second
    started by ``second`` at once."""
    compiler, out = fake_compiler(tmp_path), tmp_path / "kernel_op.so"
    asker = subprocess.Popen(["sh", "-c", " ".join(f"'{a}'" for a in (
        *LOCKED, compiler, "A", "-o", out))], start_new_session=True)
    log = Path(str(out) + ".log")
    wait_for_line(log, "start A")
    os.kill(asker.pid, signal.SIGKILL)
    asker.wait()
    subprocess.run([*second, str(compiler), "B", "-o", str(out)], check=True, timeout=60)
    wait_for_line(log, "end A")
    return log.read_text().splitlines()


def test_a_compile_waits_for_the_compiler_of_a_killed_process(tmp_path):
    assert compile_after_a_killed_one(tmp_path, LOCKED) == ["start A", "end A", "start B",
                                                            "end B"]


def test_control_without_the_lock_the_compiles_overlap(tmp_path):
    lines = compile_after_a_killed_one(tmp_path, [sys.executable])
    assert lines.index("start B") < lines.index("end A"), lines


def test_jittor_compiles_its_kernels_through_the_lock():
    """A kernel new to the cache (its source carries a number no other run has) is compiled
    by a fresh process through core/locked_compile.py: its lock file stands beside it."""
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
