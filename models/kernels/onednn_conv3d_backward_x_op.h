// Gradient of onednn_conv3d with respect to its input: dx [N, D, H, W, C] from the weight
// and dy [N, D', H', W', O]; (D, H, W) is the input's size.
#pragma once
#include "op.h"

namespace jittor {

struct OnednnConv3dBackwardXOp : Op {
    Var* w, * dy, * dx;
    int d, h, wd, sd, sh, sw, pd, ph, pw;
    OnednnConv3dBackwardXOp(Var* w, Var* dy, int d, int h, int wd, int sd, int sh, int sw, int pd, int ph, int pw);

    const char* name() const override { return "onednn_conv3d_backward_x"; }
    void infer_shape() override;
    DECLARE_jit_run;
};

} // jittor
