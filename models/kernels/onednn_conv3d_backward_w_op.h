// Gradient of onednn_conv3d with respect to its weight: dw [O, I, KD, KH, KW] from the
// input x [N, D, H, W, C] and dy [N, D', H', W', O].
#pragma once
#include "op.h"

namespace jittor {

struct OnednnConv3dBackwardWOp : Op {
    Var* x, * dy, * dw;
    int kd, kh, kw, sd, sh, sw, pd, ph, pw;
    OnednnConv3dBackwardWOp(Var* x, Var* dy, int kd, int kh, int kw, int sd, int sh, int sw, int pd, int ph, int pw);

    const char* name() const override { return "onednn_conv3d_backward_w"; }
    void infer_shape() override;
    DECLARE_jit_run;
};

} // jittor
