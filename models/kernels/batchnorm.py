"""Training-mode batch normalisation on the CPU as two C++ kernels (``jt.code``, OpenMP).

Written as Jittor graph ops, a training BatchNorm with float64 statistics is a dozen
single-threaded passes forward and as many backward (~35 % of the audio stream's training
step). Here the forward is two passes (both moments, normalise) and the backward two
(sums, input gradient), over both cores; a residual added after the normalisation and a
following ReLU can be fused in, which also spares keeping the ReLU's input for the backward
pass. The arithmetic is the graph's: float64 channel sums; ``y = (x - float32(mean)) *
float32(weight / sqrt(var + eps)) + bias`` in float32; PyTorch's backward formula with
float64 sums. (In eval mode Jittor fuses the normalisation with the running statistics,
the residual and the ReLU into one pass of its own; an OpenMP kernel for it was no faster
on one core and up to 10x slower on two when the machine is busy.)

Inputs are viewed as ``[outer, C, inner]``: ``[N, C, H*W]`` for NCHW, ``[N*T*H*W, C, 1]``
for channels last.
"""
from core.jittor_setup import jt

_HEADER = "#include <omp.h>\n#include <vector>\n#include <cmath>\n#include <algorithm>\n"

_SHAPES = """
    const int O = in0_shape0, C = in0_shape1, I = in0_shape2;
    const int T = omp_get_max_threads();
    const double n = (double)O * I;
"""


def _channel_sums(name, terms, prelude=""):
    """C++ that fills ``std::vector<double> name`` with ``len(terms) * C`` float64 sums:
    ``name[k * c + j]`` sums ``terms[j]`` over the elements ``idx`` of channel ``c``
    (``prelude`` may define values the terms use). One partial array per thread, combined
    at the end; an [N, C, H*W] row is summed in registers first."""
    k = len(terms)
    row_init = " ".join(f"double s{j} = 0;" for j in range(k))
    row_add = " ".join(f"s{j} += {t};" for j, t in enumerate(terms))
    row_done = " ".join(f"acc[{k} * c + {j}] += s{j};" for j in range(k))
    direct = " ".join(f"acc[{k} * c + {j}] += {t};" for j, t in enumerate(terms))
    return f"""
    std::vector<double> {name}((size_t){k} * C, 0.0);
    {{
        std::vector<double> part((size_t)T * {k} * C, 0.0);
        #pragma omp parallel
        {{
            double* acc = part.data() + (size_t)omp_get_thread_num() * {k} * C;
            #pragma omp for schedule(static)
            for (int o = 0; o < O; o++) {{
                if (I == 1) {{
                    for (int c = 0; c < C; c++) {{
                        const size_t idx = (size_t)o * C + c; {prelude} {direct}
                    }}
                }} else {{
                    for (int c = 0; c < C; c++) {{
                        {row_init}
                        for (int i = 0; i < I; i++) {{
                            const size_t idx = ((size_t)o * C + c) * I + i; {prelude} {row_add}
                        }}
                        {row_done}
                    }}
                }}
            }}
        }}
        for (int t = 0; t < T; t++)
            for (int j = 0; j < {k} * C; j++) {name}[j] += part[(size_t)t * {k} * C + j];
    }}
"""


def _apply(body):
    """C++ running ``body`` over both cores for every element ``idx`` of channel ``c``, in
    memory order: inner positions innermost for ``[N, C, H*W]``, channels innermost for
    channels last."""
    return f"""
    #pragma omp parallel for schedule(static)
    for (int o = 0; o < O; o++) {{
        if (I == 1) {{
            for (int c = 0; c < C; c++) {{ const size_t idx = (size_t)o * C + c; {body} }}
        }} else {{
            for (int c = 0; c < C; c++)
                for (int i = 0; i < I; i++) {{
                    const size_t idx = ((size_t)o * C + c) * I + i; {body}
                }}
        }}
    }}
"""


def _forward_src(relu, residual):
    # in0 x, in1 weight, in2 bias[, in3 the residual to add before the ReLU]
    value = "(in0_p[idx] - meanf[c]) * scale[c] + in2_p[c]" + (" + in3_p[idx]" if residual else "")
    out = "std::max(v, 0.0f)" if relu else "v"
    return (
        _SHAPES
        # One pass for both moments: float64 sums of d = x - k and d^2, shifted by k = the
        # channel's first value, so that E[d^2] - E[d]^2 cancels no more digits than the
        # float32 inputs carry (as exact as summing the squared deviations in a second pass).
        + """
    std::vector<double> shift(C);
    for (int c = 0; c < C; c++) shift[c] = in0_p[(size_t)c * I];
    """
        + _channel_sums("sums", ["d", "d * d"], "const double d = in0_p[idx] - shift[c];")
        + """
    std::vector<float> meanf(C), scale(C);
    for (int c = 0; c < C; c++) {
        const double m = sums[2 * c] / n;
        out1_p[c] = shift[c] + m;
        out2_p[c] = std::max(sums[2 * c + 1] / n - m * m, 0.0);
        meanf[c] = (float)out1_p[c];
        scale[c] = (float)((double)in1_p[c] / std::sqrt(out2_p[c] + data["eps"]));
    }
    """
        + _apply(f"const float v = {value}; out0_p[idx] = {out};"))


def _backward_src(relu):
    # in0 x, in1 dy, in2 mean, in3 var, in4 weight, in5 y (the output, for ReLU's mask)
    g = "(in5_p[idx] > 0 ? (double)in1_p[idx] : 0.0)" if relu else "(double)in1_p[idx]"
    return (
        _SHAPES
        + """
    const double* mean = in2_p;
    """
        + _channel_sums("sums", ["g", "g * (in0_p[idx] - mean[c])"], f"const double g = {g};")
        + """
    std::vector<double> dmean(C), dproj(C), gain(C);
    for (int c = 0; c < C; c++) {
        const double invstd = 1.0 / std::sqrt(in3_p[c] + data["eps"]);
        out1_p[c] = (float)(sums[2 * c + 1] * invstd);  // d weight = sum(dy * xhat)
        out2_p[c] = (float)sums[2 * c];                 // d bias = sum(dy)
        dmean[c] = sums[2 * c] / n;
        dproj[c] = sums[2 * c + 1] * invstd * invstd / n;
        gain[c] = (double)in4_p[c] * invstd;
    }
    """
        + _apply(f"const double g = {g};"
                 " out0_p[idx] = (float)((g - dmean[c] - (in0_p[idx] - mean[c]) * dproj[c])"
                 " * gain[c]);"))


_FORWARD = {(relu, res): _forward_src(relu, res) for relu in (False, True) for res in (False, True)}
_BACKWARD = {relu: _backward_src(relu) for relu in (False, True)}


class _BatchNormTrain(jt.Function):
    def __init__(self, eps, relu):
        self.eps, self.relu = eps, relu

    def execute(self, x, weight, bias, residual=None):
        c = x.shape[1]
        inputs = [x, weight, bias] + ([residual] if residual is not None else [])
        y, mean, var = jt.code([x.shape, (c,), (c,)], [x.dtype, "float64", "float64"],
                               inputs, cpu_header=_HEADER,
                               cpu_src=_FORWARD[self.relu, residual is not None],
                               data={"eps": self.eps})
        self.residual = residual is not None
        self.saved = (x, mean, var, weight, y if self.relu else None)
        return y, mean, var

    def grad(self, dy, *_):
        x, mean, var, weight, y = self.saved
        if dy is None:
            return (None,) * (4 if self.residual else 3)
        c = x.shape[1]
        relu = self.relu
        if self.residual and relu:
            # The residual's gradient is ReLU's masked gradient, which then goes through the
            # normalisation's backward kernel as it is.
            dy, relu = jt.ternary(y > 0, dy, jt.zeros_like(dy)), False
        inputs = [x, dy, mean, var, weight] + ([y] if relu else [])
        dx, dweight, dbias = jt.code([x.shape, (c,), (c,)], [x.dtype, "float32", "float32"],
                                     inputs, cpu_header=_HEADER, cpu_src=_BACKWARD[relu],
                                     data={"eps": self.eps})
        return (dx, dweight, dbias) + ((dy,) if self.residual else ())


def batch_norm_train(x3, weight, bias, eps, relu=False, residual=None):
    """``x3 [outer, C, inner]`` float32 -> (y like x3, batch mean [C] and biased variance
    [C], both float64). ``residual`` (like x3) is added to y, and ``relu`` applies ReLU to
    the sum, in the same pass (their masks in the backward one). Gradients flow to x3,
    weight, bias and residual through y."""
    args = (x3, weight, bias) + ((residual,) if residual is not None else ())
    return _BatchNormTrain(eps, relu)(*args)
