// A float32 3D convolution on oneDNN: channels-last clips x [N, D, H, W, C] and a weight in
// PyTorch's layout [O, I, KD, KH, KW] give y [N, D', H', W', O]. Inference only (no
// gradient): it serves the frozen 3D ResNet. Loaded by models/kernels/__init__.py.
#pragma once
#include "op.h"

namespace jittor {

struct OnednnConv3dOp : Op {
    Var* x, * w, * y;
    int sd, sh, sw, pd, ph, pw;
    OnednnConv3dOp(Var* x, Var* w, int sd, int sh, int sw, int pd, int ph, int pw);

    const char* name() const override { return "onednn_conv3d"; }
    void infer_shape() override;
    DECLARE_jit_run;
};

} // jittor
