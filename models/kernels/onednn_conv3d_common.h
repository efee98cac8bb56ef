// Shared by the onednn_conv3d* ops: oneDNN descriptors of a float32 3D convolution with
// channels-last activations ([N, D, H, W, C], oneDNN's ndhwc) and an [O, I, KD, KH, KW]
// weight (oidhw). Buffers oneDNN needs for its own weight layout come from Jittor's
// caching allocator: left to oneDNN, these multi-megabyte blocks come from malloc on every
// call, fragment its heap and raise the peak resident memory by ~100 MB.
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
inline memory::desc activation_desc(const NanoVector& s) {
    return memory::desc({s[0], s[4], s[1], s[2], s[3]}, dt::f32, tag::ndhwc);
}

inline memory::desc weight_desc(const NanoVector& s, tag t) {
    return memory::desc({s[0], s[1], s[2], s[3], s[4]}, dt::f32, t);
}

inline convolution_forward::primitive_desc forward_pd(
        const engine& eng, const NanoVector& x, const NanoVector& w, const NanoVector& y,
        const memory::dims& strides, const memory::dims& padding) {
    auto desc = convolution_forward::desc(
        prop_kind::forward_training, algorithm::convolution_direct,
        activation_desc(x), weight_desc(w, tag::any), activation_desc(y),
        strides, padding, padding);
    return convolution_forward::primitive_desc(desc, eng);
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
