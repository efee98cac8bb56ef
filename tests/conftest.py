"""Shared pytest fixtures.

PyTorch (the tests' reference) is imported here, before anything imports Jittor: the port
keeps Jittor from importing PyTorch itself (``core/jittor_setup.py``), and PyTorch loaded
after Jittor's libraries could bind to their symbols.

The suite may run in several processes (pytest-xdist, ``-n``; docs/tests.md): the
session's expensive builds (the demo dataset, the training runs) are made once for all of
them (``built_once``). Each process then gets its share of the cores for OpenMP (PyTorch,
oneDNN and Jittor's kernels, in the process and in the programs it starts): two processes
of two threads each on two cores took 110 s for one parity reference draw where two of one
thread took 68 s.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path


def _share_the_cores():
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        cores = len(os.sched_getaffinity(0))
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cores // workers)))


_share_the_cores()  # before PyTorch and Jittor start their thread pools

import pytest  # noqa: E402
import torch  # noqa: E402, F401  (first; see above)
from filelock import FileLock  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

#: The modules that take longest (module-wide references, training runs), longest first:
#: collected first, so that the two processes of ``make test`` (each module in one) end
#: together instead of one long module running alone at the end. test_train.py comes after
#: two modules that do not need ``full_run``, which test_faults.py builds meanwhile.
SLOW_FIRST = ("test_parity.py", "test_faults.py", "test_cuda_branches.py", "test_custom.py",
              "test_train.py", "test_trajectory.py", "test_predict.py", "test_bad_data.py",
              "test_mpi.py")


def pytest_collection_modifyitems(items):
    first = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: first.get(item.path.name, len(SLOW_FIRST)))  # stable


@pytest.fixture(scope="session", autouse=True)
def children_may_die():
    """Jittor, once imported, ends its process at once when any child process dies by a
    signal (core/child_processes.py). In a test process that would end the whole run
    without a word when a test's subprocess is killed for its time-out, or when a signal
    test stops a main.py before its handlers are set: the test that started the child
    reports how it ended instead. (A Jittor loader worker of an in-process test killed by
    the system would then hang that test rather than end the run.)"""
    import core.jittor_setup  # noqa: F401  (Jittor's handler in place, to be set aside)
    from core.child_processes import children_may_die as default_sigchld

    with default_sigchld():
        yield


def built_once(tmp_path_factory, name, build):
    """The folder ``name`` after ``build(folder)`` filled it, once per test session: the
    first process of the session (one of pytest-xdist's workers, or pytest itself) to ask
    builds it under a file lock, the others wait for it and find it built. A build that
    fails leaves no folder behind, so each asking process reports the failure."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the workers' common folder
    folder, done = base / name, base / f"{name}.done"
    with FileLock(str(base / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            try:
                build(folder)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            done.touch()
    return folder


@pytest.fixture(scope="session")
def ffmpeg_exe():
    """Path of the ffmpeg binary the tools use (imageio-ffmpeg's static build by default)."""
    from datasets.media import find_ffmpeg

    return find_ffmpeg()


@pytest.fixture(scope="session")
def make_video(ffmpeg_exe):
    """Factory: ``make_video(path, frames=30, fps=25, size=(128, 96), audio=True)`` writes a
    tiny synthetic H.264 mp4 (moving test pattern; a 440 Hz tone when ``audio``) and returns
    its Path. ``frames`` is exact."""

    def _make(path, frames=30, fps=25, size=(128, 96), audio=True):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        w, h = size
        seconds = frames / fps
        cmd = [ffmpeg_exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
               "-f", "lavfi", "-i", f"testsrc=size={w}x{h}:rate={fps}"]
        if audio:
            cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
        cmd += ["-frames:v", str(frames), "-t", f"{seconds:.4f}", "-c:v", "libx264",
                "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
        cmd += ["-c:a", "aac", "-shortest"] if audio else ["-an"]
        cmd += ["file:" + str(path.resolve())]
        subprocess.run(cmd, check=True)
        return path

    return _make


@pytest.fixture(scope="session")
def demo_build(tmp_path_factory):
    """A tiny prepared VE-8-layout dataset made by the project's own tools, as ``make demo``
    makes one: the synthetic videos of ``tools/make_demo_dataset.py`` (2 training and 1
    test video of 1 s per class: 16 + 8 videos) in ``raw``, prepared by
    ``tools/prepare_dataset.py`` into ``root``. Also the two runs' output (``make``,
    ``prepare``: their stdout) and ``root_listing``, the root's entries as prepared, for the
    tests of the tools themselves (test_tools.py)."""
    def build(base):
        raw, root = base / "raw", base / "data"
        runs = {}
        for name, cmd in (
                ("make", ["tools/make_demo_dataset.py", "--dst", raw, "--per_class_train", "2",
                          "--per_class_test", "1", "--seconds", "1", "--workers", "2",
                          "--no_progress"]),
                ("prepare", ["tools/prepare_dataset.py", "--src", raw, "--dst", root,
                             "--split_dir", raw / "splits", "--workers", "2", "--no_progress"])):
            r = subprocess.run([sys.executable, *map(str, cmd)], cwd=REPO, capture_output=True,
                               text=True, timeout=600)
            assert r.returncode == 0, r.stdout + r.stderr
            runs[name] = r.stdout
        runs["root_listing"] = sorted(p.name for p in root.iterdir())
        (base / "build.json").write_text(json.dumps(runs))

    base = built_once(tmp_path_factory, "demo_data", build)
    return dict(json.loads((base / "build.json").read_text()), raw=base / "raw",
                root=base / "data")


@pytest.fixture(scope="session")
def demo_data(demo_build):
    """The root folder of ``demo_build``'s prepared dataset. Tests share it: they may fill
    its MFCC cache, but must copy it before changing anything else."""
    return demo_build["root"]


@pytest.fixture(scope="session")
def make_model():
    """Factory of the checkpoint tests' VAANet (``tests.helpers.TINY_64``), freshly
    initialised."""
    from models.vaanet import VAANet
    from tests.helpers import TINY_64, network_shape

    def make():
        return VAANet(**network_shape(TINY_64))
    return make


@pytest.fixture(scope="session")
def full_run(demo_data, tmp_path_factory):
    """The folder of main.py's uninterrupted 2-epoch run of tests.test_train's tiny
    configuration on ``demo_data``: where every interrupted and resumed run must end."""
    import main as train_main
    from tests.helpers import train_args

    def build(results):
        assert train_main.main(train_args(demo_data, results, "full", 2)) == 0

    return built_once(tmp_path_factory, "full_run", build) / "full"


@pytest.fixture(scope="session")
def mpi_full_run(demo_data, tmp_path_factory):
    """The folder of an uninterrupted 2-epoch run under ``mpirun -np 2`` on ``demo_data``
    (``tests.helpers.mpi_train_args``): the checkpoints of the MPI tests, and where the
    run resumed after a dead rank must end. Skipped without mpirun."""
    from tests.helpers import MPIRUN, NO_MPIRUN, mpi_run, mpi_train_args

    if MPIRUN is None:
        pytest.skip(NO_MPIRUN)
    def build(results):
        mpi_run(["main.py", *mpi_train_args(demo_data, results, "full")], np_=2)

    return built_once(tmp_path_factory, "mpi_full_run", build) / "full"
