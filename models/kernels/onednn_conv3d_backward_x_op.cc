#include "onednn_conv3d_common.h"
#include "onednn_conv3d_backward_x_op.h"

namespace jittor {

#ifndef JIT

OnednnConv3dBackwardXOp::OnednnConv3dBackwardXOp(Var* w, Var* dy, int d, int h, int wd,
        int sd, int sh, int sw, int pd, int ph, int pw)
    : w(w), dy(dy), d(d), h(h), wd(wd), sd(sd), sh(sh), sw(sw), pd(pd), ph(ph), pw(pw) {
    dx = create_output(nullptr, ns_float32);
}

void OnednnConv3dBackwardXOp::infer_shape() {
    ASSERTop(w->shape.size(),==,5);
    ASSERTop(dy->shape.size(),==,5);
    dx->set_shape(NanoVector(dy->shape[0], d, h, wd, w->shape[1]));
}

void OnednnConv3dBackwardXOp::jit_prepare(JK& jk) {
    jk << "«T:float32«ONEDNN_BUILD:" << DNNL_VERSION_MAJOR << DNNL_VERSION_MINOR;
}

#else // JIT
#ifdef JIT_cpu

void OnednnConv3dBackwardXOp::jit_run() {
    using namespace ndhwc_conv;
    engine eng(engine::kind::cpu, 0);
    stream s(eng);
    auto pd_ = backward_pd<convolution_backward_data>(eng, dx->shape, w->shape, dy->shape,
                                                      {sd, sh, sw}, {pd, ph, pw});
    memory diff_src(activation_desc(dx->shape), eng, dx->mem_ptr);
    memory diff_dst(activation_desc(dy->shape), eng, dy->mem_ptr);
    memory user_w(weight_desc(w->shape, tag::oidhw), eng, w->mem_ptr);
    std::unique_ptr<Allocation> w_buffer;
    auto wt = as_layout(user_w, pd_.weights_desc(), w_buffer, eng, s, true);
    convolution_backward_data(pd_).execute(
        s, {{DNNL_ARG_DIFF_DST, diff_dst}, {DNNL_ARG_WEIGHTS, wt}, {DNNL_ARG_DIFF_SRC, diff_src}});
    s.wait();
}

#endif
#endif // JIT

} // jittor
