"""Training-mode batch normalisation on the CPU as two C++ kernels (``jt.code``, OpenMP).

Written as Jittor graph ops, a training BatchNorm with float64 statistics is a dozen
single-threaded passes forward and as many backward (~35 % of the audio stream's training
step). Here the forward is three passes (sum, squared deviations, normalise) and the
backward two (sums, input gradient), over both cores; a following ReLU can be fused in,
which also spares keeping its input for the backward pass. The arithmetic is the graph's:
float64 channel sums; ``y = (x - float32(mean)) * float32(weight / sqrt(var + eps)) + bias``
in float32; PyTorch's backward formula with float64 sums.

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


def _forward_src(relu):
    out = "std::max(v, 0.0f)" if relu else "v"
    return (
        _SHAPES
        + _channel_sums("sums", ["in0_p[idx]"])
        + """
    for (int c = 0; c < C; c++) out1_p[c] = sums[c] / n;
    const double* mean = out1_p;
    """
        + _channel_sums("squares", ["d * d"], "const double d = in0_p[idx] - mean[c];")
        + """
    std::vector<float> meanf(C), scale(C);
    for (int c = 0; c < C; c++) {
        out2_p[c] = squares[c] / n;
        meanf[c] = (float)mean[c];
        scale[c] = (float)((double)in1_p[c] / std::sqrt(out2_p[c] + data["eps"]));
    }
    """
        + _apply(f"const float v = (in0_p[idx] - meanf[c]) * scale[c] + in2_p[c];"
                 f" out0_p[idx] = {out};"))


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


_SOURCES = {relu: (_forward_src(relu), _backward_src(relu)) for relu in (False, True)}


class _BatchNormTrain(jt.Function):
    def __init__(self, eps, relu):
        self.eps, self.relu = eps, relu

    def execute(self, x, weight, bias):
        c = x.shape[1]
        y, mean, var = jt.code([x.shape, (c,), (c,)], [x.dtype, "float64", "float64"],
                               [x, weight, bias], cpu_header=_HEADER,
                               cpu_src=_SOURCES[self.relu][0], data={"eps": self.eps})
        self.saved = (x, mean, var, weight, y if self.relu else None)
        return y, mean, var

    def grad(self, dy, *_):
        x, mean, var, weight, y = self.saved
        if dy is None:
            return None, None, None
        c = x.shape[1]
        inputs = [x, dy, mean, var, weight] + ([y] if self.relu else [])
        dx, dweight, dbias = jt.code([x.shape, (c,), (c,)], [x.dtype, "float32", "float32"],
                                     inputs, cpu_header=_HEADER,
                                     cpu_src=_SOURCES[self.relu][1], data={"eps": self.eps})
        return dx, dweight, dbias


def batch_norm_train(x3, weight, bias, eps, relu=False):
    """``x3 [outer, C, inner]`` float32 -> (y like x3, batch mean [C] and biased variance
    [C], both float64); ``relu`` applies ReLU to y in the same pass (and its mask in the
    backward one). Gradients flow to x3, weight and bias through y."""
    return _BatchNormTrain(eps, relu)(x3, weight, bias)
