"""Which branch the layers of ``models/layers.py`` take, asked at each call.

    from models import backend
    backend.device.cuda      # CUDA on (Jittor's use_cuda flag)
    backend.device.mpi       # several MPI processes: BatchNorm's statistics are global
    backend.device.cudnn     # Jittor's cuDNN ops, None where Jittor has not loaded them

``device`` answers from Jittor itself. It is an object of this module rather than calls
spread over the layers so that one thing decides the branch: tests/test_cuda_branches.py
swaps in a stand-in (a subclass of ``Device``) that runs the CUDA and MPI branches on the
CPU with CPU versions of the cuDNN / cuBLAS calls; nothing else sets it.
"""
from core.jittor_setup import jt


class Device:
    """Jittor's own answers: CUDA on or off, MPI with several processes, and the cuDNN /
    cuBLAS ops (None where Jittor has not loaded them)."""

    @property
    def cuda(self):
        return jt.flags.use_cuda

    @property
    def mpi(self):
        return jt.in_mpi and jt.world_size > 1

    @property
    def cudnn(self):
        return jt.compile_extern.cudnn.ops if jt.compile_extern.cudnn is not None else None

    @property
    def cublas(self):
        return jt.compile_extern.cublas_ops

    @staticmethod
    def all_reduce(x):
        """Sum over the processes; its gradient is the sum of theirs."""
        return x.mpi_all_reduce("add")


device = Device()
