// See onednn_conv3d_op.h. Activations stay channels-last (oneDNN's ndhwc kernels read and
// write them in place); only the weight is reordered to oneDNN's layout, inside the call.
#include "onednn_conv3d_common.h"
#include "onednn_conv3d_op.h"

namespace jittor {

#ifndef JIT

OnednnConv3dOp::OnednnConv3dOp(Var* x, Var* w, int sd, int sh, int sw, int pd, int ph, int pw,
        int training, int blocked)
    : x(x), w(w), sd(sd), sh(sh), sw(sw), pd(pd), ph(ph), pw(pw), training(training),
      blocked(blocked) {
    y = create_output(nullptr, ns_float32);
}

void OnednnConv3dOp::infer_shape() {
    using ndhwc_conv::out_size;
    ASSERTop(x->shape.size(),==,5);
    ASSERTop(w->shape.size(),==,5);
    ASSERT(x->dtype() == ns_float32 && w->dtype() == ns_float32) << "onednn_conv3d: float32 only";
    ASSERTop(w->shape[1],==,x->shape[4]);
    y->set_shape(NanoVector(x->shape[0], out_size(x->shape[1], w->shape[2], sd, pd),
                            out_size(x->shape[2], w->shape[3], sh, ph),
                            out_size(x->shape[3], w->shape[4], sw, pw), w->shape[0]));
}

void OnednnConv3dOp::jit_prepare(JK& jk) {
    jk << "«T:float32«ONEDNN_BUILD:" << DNNL_VERSION_MAJOR << DNNL_VERSION_MINOR;
}

#else // JIT
#ifdef JIT_cpu

void OnednnConv3dOp::jit_run() {
    using namespace ndhwc_conv;
    engine eng(engine::kind::cpu, 0);
    stream s(eng);
    auto pd_ = forward_pd(eng, x->shape, w->shape, y->shape, {sd, sh, sw}, {pd, ph, pw},
                         training, primitive_attr(), blocked);
    memory user_src(activation_desc(x->shape), eng, x->mem_ptr);
    memory user_dst(activation_desc(y->shape), eng, y->mem_ptr);
    memory user_w(weight_desc(w->shape, tag::oidhw), eng, w->mem_ptr);
    std::unique_ptr<Allocation> src_buffer, dst_buffer, w_buffer;
    auto src = as_layout(user_src, pd_.src_desc(), src_buffer, eng, s, true);
    auto dst = as_layout(user_dst, pd_.dst_desc(), dst_buffer, eng, s, false);
    auto wt = as_layout(user_w, pd_.weights_desc(), w_buffer, eng, s, true);
    convolution_forward(pd_).execute(
        s, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wt}, {DNNL_ARG_DST, dst}});
    if (dst_buffer) reorder(dst, user_dst).execute(s, dst, user_dst);
    s.wait();
}

#endif
#endif // JIT

} // jittor
