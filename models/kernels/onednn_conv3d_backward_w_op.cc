#include "onednn_conv3d_common.h"
#include "onednn_conv3d_backward_w_op.h"

namespace jittor {

#ifndef JIT

OnednnConv3dBackwardWOp::OnednnConv3dBackwardWOp(Var* x, Var* dy, int kd, int kh, int kw,
        int sd, int sh, int sw, int pd, int ph, int pw)
    : x(x), dy(dy), kd(kd), kh(kh), kw(kw), sd(sd), sh(sh), sw(sw), pd(pd), ph(ph), pw(pw) {
    dw = create_output(nullptr, ns_float32);
}

void OnednnConv3dBackwardWOp::infer_shape() {
    ASSERTop(x->shape.size(),==,5);
    ASSERTop(dy->shape.size(),==,5);
    dw->set_shape(NanoVector(dy->shape[4], x->shape[4], kd, kh, kw));
}

void OnednnConv3dBackwardWOp::jit_prepare(JK& jk) {
    jk << "«T:float32«ONEDNN_BUILD:" << DNNL_VERSION_MAJOR << DNNL_VERSION_MINOR;
}

#else // JIT
#ifdef JIT_cpu

void OnednnConv3dBackwardWOp::jit_run() {
    using namespace ndhwc_conv;
    engine eng(engine::kind::cpu, 0);
    stream s(eng);
    auto pd_ = backward_pd<convolution_backward_weights>(eng, x->shape, dw->shape, dy->shape,
                                                         {sd, sh, sw}, {pd, ph, pw});
    memory src(activation_desc(x->shape), eng, x->mem_ptr);
    memory diff_dst(activation_desc(dy->shape), eng, dy->mem_ptr);
    memory user_dw(weight_desc(dw->shape, tag::oidhw), eng, dw->mem_ptr);
    std::unique_ptr<Allocation> dw_buffer;
    auto diff_w = as_layout(user_dw, pd_.diff_weights_desc(), dw_buffer, eng, s, false);
    convolution_backward_weights(pd_).execute(
        s, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, diff_dst}, {DNNL_ARG_DIFF_WEIGHTS, diff_w}});
    if (diff_w != user_dw) reorder(diff_w, user_dw).execute(s, diff_w, user_dw);
    s.wait();
}

#endif
#endif // JIT

} // jittor
