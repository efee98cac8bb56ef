"""Kernels that Jittor lacks or runs slowly on the CPU.

- ``onednn.onednn_ops()``: a 3D convolution compiled against Jittor's own oneDNN.
- ``batchnorm.batch_norm_train``: training-mode batch normalisation in two OpenMP C++
  kernels (forward and backward) with float64 channel sums.
"""
