// A float32 3D convolution on oneDNN: channels-last x [N, D, H, W, C] and a weight in
// PyTorch's layout [O, I, KD, KH, KW] give y [N, D', H', W', O]. A 2D convolution is the
// case D = KD = 1. `training`: whether a backward pass follows (oneDNN may pick another
// kernel for inference). `blocked`: run oneDNN's channel-blocked kernel, reordering the
// activations in and out. Gradients: onednn_conv3d_backward_x / _w (models/kernels/onednn.py).
#pragma once
#include "op.h"

namespace jittor {

struct OnednnConv3dOp : Op {
    Var* x, * w, * y;
    int sd, sh, sw, pd, ph, pw, training, blocked;
    OnednnConv3dOp(Var* x, Var* w, int sd, int sh, int sw, int pd, int ph, int pw, int training, int blocked=0);

    const char* name() const override { return "onednn_conv3d"; }
    void infer_shape() override;
    DECLARE_jit_run;
};

} // jittor
