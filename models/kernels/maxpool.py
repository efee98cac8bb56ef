"""Max pooling of channels-last tensors on the CPU as two C++ kernels (``jt.code``, OpenMP).

Jittor's own gather-and-reduce pooling is single-threaded, and its backward pass
materialises a window-sized gradient tensor. Here the forward pass writes the maximum and
where it was found, and the backward pass adds each gradient at that place. Ties and NaN
go as in PyTorch: the first maximum in window order, and a NaN wins.
"""
from core.jittor_setup import jt

_HEADER = "#include <omp.h>\n#include <cmath>\n"

_SHAPES = """
    const int N = data["n"], D = data["d"], H = data["h"], W = data["w"], C = data["c"];
    const int KD = data["kd"], KH = data["kh"], KW = data["kw"];
    const int SD = data["sd"], SH = data["sh"], SW = data["sw"];
    const int PD = data["pd"], PH = data["ph"], PW = data["pw"];
    const int OD = data["od"], OH = data["oh"], OW = data["ow"];
"""

# in0 x [N, D, H, W, C] -> out0 y [N, OD, OH, OW, C], out1 the index of each maximum
# within its sample (int32).
_FORWARD = _SHAPES + """
    #pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++)
    for (int od = 0; od < OD; od++)
    for (int oh = 0; oh < OH; oh++)
    for (int ow = 0; ow < OW; ow++) {
        const size_t o = (((size_t)n * OD + od) * OH + oh) * OW + ow;
        float* y = out0_p + o * C;
        int* arg = out1_p + o * C;
        for (int c = 0; c < C; c++) { y[c] = -INFINITY; arg[c] = -1; }
        for (int kd = 0; kd < KD; kd++) {
            const int d = od * SD - PD + kd;
            if (d < 0 || d >= D) continue;
            for (int kh = 0; kh < KH; kh++) {
                const int h = oh * SH - PH + kh;
                if (h < 0 || h >= H) continue;
                for (int kw = 0; kw < KW; kw++) {
                    const int w = ow * SW - PW + kw;
                    if (w < 0 || w >= W) continue;
                    const int base = ((d * H + h) * W + w) * C;
                    const float* x = in0_p + (size_t)n * D * H * W * C + base;
                    for (int c = 0; c < C; c++) {
                        const float v = x[c];
                        if (v > y[c] || std::isnan(v)) { y[c] = v; arg[c] = base + c; }
                    }
                }
            }
        }
    }
"""

# in0 dy, in1 the indices -> out0 dx.
_BACKWARD = _SHAPES + """
    const size_t per_in = (size_t)D * H * W * C, per_out = (size_t)OD * OH * OW * C;
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float* dx = out0_p + n * per_in;
        for (size_t i = 0; i < per_in; i++) dx[i] = 0;
        const float* dy = in0_p + n * per_out;
        const int* arg = in1_p + n * per_out;
        for (size_t i = 0; i < per_out; i++)
            if (arg[i] >= 0) dx[arg[i]] += dy[i];  // -1: a window all padding
    }
"""


class _MaxPool(jt.Function):
    def __init__(self, data):
        self.data = data

    def execute(self, x):
        d = self.data
        y, arg = jt.code([(d["n"], d["od"], d["oh"], d["ow"], d["c"])] * 2,
                         ["float32", "int32"], [x], cpu_header=_HEADER, cpu_src=_FORWARD,
                         data=d)
        self.arg = arg  # only the indices are kept for the backward pass, not the input
        return y

    def grad(self, dy):
        d = self.data
        return jt.code((d["n"], d["d"], d["h"], d["w"], d["c"]), "float32", [dy, self.arg],
                       cpu_header=_HEADER, cpu_src=_BACKWARD, data=d)


def max_pool_ndhwc(x, kernel_size, stride, padding):
    """``x [N, D, H, W, C]`` float32, pooled over D, H and W (-inf padding)."""
    data = dict(zip("ndhwc", x.shape))
    for axis, name, k, s, p in zip((1, 2, 3), "dhw", kernel_size, stride, padding):
        data.update({f"k{name}": k, f"s{name}": s, f"p{name}": p,
                     f"o{name}": (x.shape[axis] + 2 * p - k) // s + 1})
    return _MaxPool(data)(x)
