// Shared by the onednn_conv3d* ops: oneDNN primitive descriptors of a float32 3D
// convolution with channels-last activations ([N, D, H, W, C], oneDNN's ndhwc) and an
// [O, I, KD, KH, KW] weight (oidhw), for oneDNN 2.x (Jittor's own copy) and 3.x (whose
// primitive descriptors are built directly, engine first, without operation descriptors).
// The ops' jit keys carry the version, so that the kernels of the two builds never share a
// cache entry. Buffers oneDNN needs for its own weight layout come from Jittor's caching allocator:
// left to oneDNN, these multi-megabyte blocks come from malloc on every call, fragment its
// heap and raise the peak resident memory by ~100 MB.
#pragma once
#include <memory>
#include <dnnl.hpp>

#include "var.h"
#include "mem/allocator.h"

namespace jittor {
namespace ndhwc_conv {

using namespace dnnl;
using tag = memory::format_tag;
using dt = memory::data_type;

// oneDNN's dims are always N, C, D, H, W; the tag says how they lie in memory.
inline memory::desc activation_desc(const NanoVector& s, tag t = tag::ndhwc) {
    return memory::desc({s[0], s[4], s[1], s[2], s[3]}, dt::f32, t);
}

inline memory::desc weight_desc(const NanoVector& s, tag t) {
    return memory::desc({s[0], s[1], s[2], s[3], s[4]}, dt::f32, t);
}

// `post_ops` (ReLU, a residual sum, ...) run on the output inside the convolution.
// `blocked`: let oneDNN lay the activations out as it likes (the caller reorders); for a
// training pass it then picks the channel-blocked kernel that PyTorch's NCDHW tensors get,
// whose rounding on AVX-512 is 2-4x smaller than the channels-last kernel's (in inference,
// oneDNN 2.2 keeps the channels-last one whatever the layout), so blocked implies training.
inline convolution_forward::primitive_desc forward_pd(
        const engine& eng, const NanoVector& x, const NanoVector& w, const NanoVector& y,
        const memory::dims& strides, const memory::dims& padding, bool training,
        const primitive_attr& attr = primitive_attr(), bool blocked = false) {
    auto kind = training || blocked ? prop_kind::forward_training
                                    : prop_kind::forward_inference;
    auto layout = blocked ? tag::any : tag::ndhwc;
#if DNNL_VERSION_MAJOR >= 3
    return convolution_forward::primitive_desc(
        eng, kind, algorithm::convolution_direct, activation_desc(x, layout),
        weight_desc(w, tag::any), activation_desc(y, layout), strides, padding, padding, attr);
#else
    auto desc = convolution_forward::desc(
        kind, algorithm::convolution_direct, activation_desc(x, layout),
        weight_desc(w, tag::any), activation_desc(y, layout), strides, padding, padding);
    return convolution_forward::primitive_desc(desc, attr, eng);
#endif
}

// The backward passes' descriptors: Prim is convolution_backward_data (x is the input's
// gradient, w the weight) or convolution_backward_weights (x the input, w the weight's
// gradient); both take the same arguments, with the forward pass as a hint.
template <class Prim>
inline typename Prim::primitive_desc backward_pd(
        const engine& eng, const NanoVector& x, const NanoVector& w, const NanoVector& dy,
        const memory::dims& strides, const memory::dims& padding) {
    auto hint = forward_pd(eng, x, w, dy, strides, padding, true);
#if DNNL_VERSION_MAJOR >= 3
    return typename Prim::primitive_desc(
        eng, algorithm::convolution_direct, activation_desc(x), weight_desc(w, tag::any),
        activation_desc(dy), strides, padding, padding, hint);
#else
    typename Prim::desc desc(
        algorithm::convolution_direct, activation_desc(x), weight_desc(w, tag::any),
        activation_desc(dy), strides, padding, padding);
    return typename Prim::primitive_desc(desc, eng, hint);
#endif
}

// A memory of layout `want` for the data in `user`: `user` itself when the layouts agree,
// else one in a new block of Jittor's allocator, owned by `buffer` (freed with it), filled
// from `user` by a reorder when `copy_in`.
inline memory as_layout(memory user, const memory::desc& want,
                        std::unique_ptr<Allocation>& buffer,
                        const engine& eng, stream& s, bool copy_in) {
    if (want == user.get_desc()) return user;
    buffer.reset(new Allocation(cpu_allocator, want.get_size()));
    memory m(want, eng, buffer->ptr);
    if (copy_in) reorder(user, m).execute(s, user, m);
    return m;
}

inline int64 out_size(int64 in, int64 k, int stride, int pad) {
    return (in + 2 * pad - k) / stride + 1;
}

} // ndhwc_conv
} // jittor
