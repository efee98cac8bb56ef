"""Kernels that Jittor lacks or runs slowly on the CPU.

- ``onednn.conv3d_ndhwc``: channels-last 3D (and 2D) convolutions with their gradients,
  as ops compiled against oneDNN 3.x from PyPI, or else Jittor's own oneDNN 2.2.
- ``batchnorm.batch_norm_train``: training-mode batch normalisation in two OpenMP C++
  kernels (forward and backward) with float64 channel sums, optionally with a residual
  added and ReLU.
- ``maxpool.max_pool_ndhwc``: channels-last max pooling in two OpenMP C++ kernels.
- ``needs_grad(*vars)``: whether a kernel must keep its inputs for a backward pass.
"""
from core.jittor_setup import jt


def needs_grad(*vars):
    """Whether a gradient can flow back to any of ``vars`` (outside ``jt.no_grad``)."""
    return not jt.flags.no_grad and any(v.requires_grad for v in vars)
