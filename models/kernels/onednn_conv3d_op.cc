// See onednn_conv3d_op.h. Input and output stay channels-last (oneDNN's ndhwc kernels read
// and write them in place: no blocked copies of the activations); only the weight is
// reordered to oneDNN's layout, inside this call, so no copy of it outlives the call.
#include <dnnl.hpp>

#include "var.h"
#include "mem/allocator.h"
#include "onednn_conv3d_op.h"

namespace jittor {

#ifndef JIT

OnednnConv3dOp::OnednnConv3dOp(Var* x, Var* w, int sd, int sh, int sw, int pd, int ph, int pw)
    : x(x), w(w), sd(sd), sh(sh), sw(sw), pd(pd), ph(ph), pw(pw) {
    y = create_output(nullptr, ns_float32);
}

void OnednnConv3dOp::infer_shape() {
    ASSERTop(x->shape.size(),==,5);
    ASSERTop(w->shape.size(),==,5);
    ASSERT(x->dtype() == ns_float32 && w->dtype() == ns_float32) << "onednn_conv3d: float32 only";
    ASSERTop(w->shape[1],==,x->shape[4]);
    int64 d = (x->shape[1] + 2 * pd - w->shape[2]) / sd + 1;
    int64 h = (x->shape[2] + 2 * ph - w->shape[3]) / sh + 1;
    int64 ww = (x->shape[3] + 2 * pw - w->shape[4]) / sw + 1;
    y->set_shape(NanoVector(x->shape[0], d, h, ww, w->shape[0]));
}

void OnednnConv3dOp::jit_prepare(JK& jk) {
    jk << "«T:float32";
}

#else // JIT
#ifdef JIT_cpu

void OnednnConv3dOp::jit_run() {
    using namespace dnnl;
    using tag = memory::format_tag;
    using dt = memory::data_type;
    const auto& xs = x->shape;
    const auto& ws = w->shape;
    const auto& ys = y->shape;
    // oneDNN's dims are always N, C, D, H, W; the tag says how they lie in memory.
    memory::dims src_dims = {xs[0], xs[4], xs[1], xs[2], xs[3]};
    memory::dims w_dims = {ws[0], ws[1], ws[2], ws[3], ws[4]};
    memory::dims dst_dims = {ys[0], ys[4], ys[1], ys[2], ys[3]};
    memory::dims strides = {sd, sh, sw};
    memory::dims padding = {pd, ph, pw};

    engine eng(engine::kind::cpu, 0);
    stream s(eng);
    auto user_src = memory({src_dims, dt::f32, tag::ndhwc}, eng, x->mem_ptr);
    auto user_w = memory({w_dims, dt::f32, tag::oidhw}, eng, w->mem_ptr);
    auto user_dst = memory({dst_dims, dt::f32, tag::ndhwc}, eng, y->mem_ptr);

    auto desc = convolution_forward::desc(
        prop_kind::forward_inference, algorithm::convolution_direct,
        user_src.get_desc(), memory::desc(w_dims, dt::f32, tag::any), user_dst.get_desc(),
        strides, padding, padding);
    auto pd_ = convolution_forward::primitive_desc(desc, eng);

    // The reordered weight lives in a buffer of Jittor's caching allocator, reused from
    // call to call: left to oneDNN, these 7-27 MB blocks come from malloc every call and
    // fragment its heap (peak RSS grew ~100 MB over the first forward passes).
    Allocation wt_buffer(cpu_allocator, pd_.weights_desc().get_size());
    auto wt = user_w;
    if (pd_.weights_desc() != user_w.get_desc()) {
        wt = memory(pd_.weights_desc(), eng, wt_buffer.ptr);
        reorder(user_w, wt).execute(s, user_w, wt);
    }
    convolution_forward(pd_).execute(
        s, {{DNNL_ARG_SRC, user_src}, {DNNL_ARG_WEIGHTS, wt}, {DNNL_ARG_DST, user_dst}});
    s.wait();
}

#endif
#endif // JIT

} // jittor
