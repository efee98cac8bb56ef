"""Small C libraries of the project, compiled on first use and cached.

    from core.cbuild import Library, build
    lib = ctypes.CDLL(build(source_c_file, link=[...]))   # inside load()
    kernel = Library(load, "the resampling kernel", "frames are resized with Pillow")
    lib = kernel()        # load() once per process; None (and one warning) if it failed

``build(source, link)`` compiles ``source`` with the system's C compiler (``$CC``, else
``cc``, ``gcc`` or ``clang``; the one Jittor needs anyway) into a shared library under
``$XDG_CACHE_HOME/vaanet`` (default ``~/.cache/vaanet``): one file per source, compiler,
flags and CPU (``-march=native``, then without it), written atomically
(``core.atomic_file``) so that several processes may build it at once. The users
(``transforms/resample.py``, ``datasets/jpeg.py``) give the same values without their
library, only slower: a library that cannot be built or loaded is a warning, not an error.
"""
import hashlib
import os
import platform
import shutil
import subprocess
import threading
import warnings

from core.atomic_file import atomic_path


def _compiler():
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        path = name and shutil.which(name)
        if path:
            return path
    return None


def _cpu_fingerprint():
    """What ``-march=native`` depends on, so that a shared cache never serves a library
    built for another CPU."""
    text = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            text += "".join(line for line in f if line.startswith(("flags", "Features")))[:4096]
    except OSError:
        text += platform.processor()
    return text


def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "vaanet")


def build(source, link=(), folder=None):
    """Path of the compiled ``source`` (a shared library linked with the arguments
    ``link``) in ``folder`` (default ``cache_dir()``), built if needed; raises
    RuntimeError if it cannot be."""
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler found ($CC, cc, gcc or clang)")
    with open(source, "rb") as f:
        text = f.read()
    name = os.path.splitext(os.path.basename(source))[0]
    folder = folder or cache_dir()
    errors = []
    for flags in (["-O3", "-march=native"], ["-O3"]):
        key = hashlib.sha1(b"\0".join([text, cc.encode(), " ".join(flags + list(link)).encode(),
                                       _cpu_fingerprint().encode()])).hexdigest()[:16]
        path = os.path.join(folder, f"{name}-{key}.so")
        if os.path.exists(path):
            return path
        os.makedirs(folder, exist_ok=True)
        try:
            with atomic_path(path) as tmp:
                r = subprocess.run([cc, *flags, "-std=c99", "-shared", "-fPIC", source, "-o",
                                    tmp, *link], capture_output=True, text=True, timeout=300)
                if r.returncode != 0:
                    raise RuntimeError(f"{cc} {' '.join(flags)}: {r.stderr.strip()[-2000:]}")
            return path
        except RuntimeError as e:
            errors.append(str(e))
        except subprocess.SubprocessError as e:  # a compiler that hangs: timed out
            errors.append(f"{cc} {' '.join(flags)}: {e}")
    raise RuntimeError("cannot compile " + source + ":\n" + "\n".join(errors))


class Library:
    """``load()``'s library (built, loaded and checked), loaded on the first call in a
    process (under a lock: threads may ask at once). Where ``load`` fails, that call and
    every later one return None, after one warning: "``what`` is unavailable (why);
    ``instead`` (same values, slower)"."""

    def __init__(self, load, what, instead):
        self._load, self.what, self.instead = load, what, instead
        self.lib = None  # False once loading failed
        self._lock = threading.Lock()

    def __call__(self):
        if self.lib is None:
            with self._lock:
                if self.lib is None:
                    try:
                        self.lib = self._load()
                    except (OSError, RuntimeError) as e:
                        warnings.warn(f"{self.what} is unavailable ({e}); {self.instead} "
                                      f"(same values, slower)")
                        self.lib = False
        return self.lib or None
