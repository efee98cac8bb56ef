"""Adam with PyTorch's arithmetic and state layout.

Jittor's Adam adds eps before the bias correction of the second moment; PyTorch's adds it
after, and the release trains with PyTorch's. ``state_dict()`` has PyTorch's layout
(``{'state': {i: {'step', 'exp_avg', 'exp_avg_sq'}}, 'param_groups': [...]}``), so a
release checkpoint's optimizer resumes here and ours resumes there. Gradients are averaged
across MPI processes by Jittor's ``Optimizer.pre_step``. On the CPU the update of every
parameter is one OpenMP kernel (``_adam_source``), on CUDA Jittor's fused ops.
"""
import math

import numpy as np

from core.jittor_setup import jt


_ADAM_HEADER = """
#include <omp.h>
#include <cmath>
#include <vector>
#include <algorithm>
struct AdamTensor { const float* g; float* p; float* m; float* v; size_t n; float step, bc; };
"""


def _adam_source(n):
    """C++ for ``jt.code``: in{k} the gradient of parameter k, out{k} the parameter,
    out{n+k} and out{2n+k} its moments (all updated in place); the work is cut into
    chunks of 16384 values, so that both cores get equal shares of big and small tensors.
    The arithmetic is PyTorch's, in float32."""
    rows = "\n".join(
        f"tensors.push_back({{in{k}_p, out{k}_p, out{n + k}_p, out{2 * n + k}_p, "
        f"(size_t)in{k}->num, (float)data[\"step{k}\"], (float)data[\"bc{k}\"]}});"
        for k in range(n))
    return """
    const float b2 = data["b2"], c1 = data["c1"], c2 = data["c2"];
    const float eps = data["eps"], wd = data["wd"];
    const size_t CHUNK = 16384;
    std::vector<AdamTensor> tensors;
    """ + rows + """
    std::vector<std::pair<int, size_t>> chunks;
    for (int t = 0; t < (int)tensors.size(); t++)
        for (size_t b = 0; b < tensors[t].n; b += CHUNK) chunks.push_back({t, b});
    #pragma omp parallel for schedule(static)
    for (size_t c = 0; c < chunks.size(); c++) {
        const AdamTensor& T = tensors[chunks[c].first];
        const size_t end = std::min(chunks[c].second + CHUNK, T.n);
        for (size_t j = chunks[c].second; j < end; j++) {
            const float g = wd != 0 ? T.g[j] + wd * T.p[j] : T.g[j];
            const float m = T.m[j] + (g - T.m[j]) * c1;
            const float v = T.v[j] * b2 + g * g * c2;
            T.m[j] = m;
            T.v[j] = v;
            T.p[j] -= m / (std::sqrt(v) / T.bc + eps) * T.step;
        }
    }
"""


class Adam(jt.optim.Optimizer):
    """``params``: every parameter the optimizer holds, in the order its ``state_dict``
    numbers them. ``unused``: those of them that the forward never uses. PyTorch's Adam
    skips a parameter that received no gradient, weight decay included, so these are
    never updated and get no state; Jittor would hand them a gradient of zeros."""

    def __init__(self, params, lr=2e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 unused=()):
        params = list(params)
        unused = {id(p) for p in unused}
        self.trained = [i for i, p in enumerate(params) if id(p) not in unused]
        super().__init__([params[i] for i in self.trained], lr)
        self.betas = tuple(betas)
        self.eps = eps
        self.weight_decay = weight_decay
        self.params = params
        self.steps = [0] * len(params)
        self.exp_avg = [jt.zeros(p.shape, p.dtype).stop_grad() for p in params]
        self.exp_avg_sq = [jt.zeros(p.shape, p.dtype).stop_grad() for p in params]

    def step(self, loss=None, retain_graph=False):
        self.pre_step(loss, retain_graph)
        # Finish the backward pass before the updates: left to itself, Jittor interleaves
        # the updates of the last layers with the backward pass of the first ones, holding
        # the activations, gradients and update temporaries all at once (+90 MB peak RSS).
        grads = dict(zip(self.trained, self.param_groups[0]["grads"]))
        jt.sync(list(grads.values()))
        lr = self.param_groups[0].get("lr", self.lr)
        live = [i for i in self.trained if not self.params[i].is_stop_grad()]
        for i in live:
            self.steps[i] += 1
        if not jt.flags.use_cuda and all(self.params[i].dtype == "float32" for i in live):
            self._update_cpu(live, [grads[i] for i in live], lr)
        else:
            for i in live:
                self._update_graph(i, grads[i], lr)
        self.post_step()

    def _update_graph(self, i, g, lr):
        """One parameter's update as Jittor ops (fused into one kernel per parameter)."""
        b1, b2 = self.betas
        p, m, v, t = self.params[i], self.exp_avg[i], self.exp_avg_sq[i], self.steps[i]
        if self.weight_decay:
            g = g + self.weight_decay * p
        m.update(m + (g - m) * (1 - b1))
        v.update(v * b2 + g * g * (1 - b2))
        denom = v.sqrt() / math.sqrt(1 - b2 ** t) + self.eps
        p.update(p - m / denom * (lr / (1 - b1 ** t)))

    def _update_cpu(self, live, grads, lr):
        """Every parameter's update in one OpenMP pass over both cores, writing the
        parameters and moments in place (Jittor's per-parameter kernels run one at a time,
        each on one core)."""
        b1, b2 = self.betas
        # 1 - beta in float64, as PyTorch does: 1 - 0.999f in float32 is off by 1.3e-5
        data = dict(b2=b2, c1=1 - b1, c2=1 - b2, eps=self.eps, wd=self.weight_decay)
        for k, i in enumerate(live):
            data[f"step{k}"] = lr / (1 - b1 ** self.steps[i])
            data[f"bc{k}"] = math.sqrt(1 - b2 ** self.steps[i])
        jt.code(inputs=grads,
                outputs=[self.params[i] for i in live] + [self.exp_avg[i] for i in live]
                + [self.exp_avg_sq[i] for i in live],
                cpu_header=_ADAM_HEADER, cpu_src=_adam_source(len(live)), data=data)

    def state_dict(self):
        """PyTorch's layout, the moments as Vars (as a Module's ``state_dict`` gives its
        weights): ``save_checkpoint`` writes them without copying them first."""
        state = {}
        for i in range(len(self.params)):
            if self.steps[i]:
                state[i] = {"step": float(self.steps[i]), "exp_avg": self.exp_avg[i],
                            "exp_avg_sq": self.exp_avg_sq[i]}
        group = {"lr": self.param_groups[0].get("lr", self.lr), "betas": list(self.betas),
                 "eps": self.eps, "weight_decay": self.weight_decay, "amsgrad": False,
                 "params": list(range(len(self.params)))}
        return {"state": state, "param_groups": [group]}

    def load_state_dict(self, state_dict):
        groups = state_dict["param_groups"]
        n = sum(len(g["params"]) for g in groups)
        if n != len(self.params):
            raise ValueError(f"optimizer state holds {n} parameters, the model trains "
                             f"{len(self.params)}")
        group = groups[0]
        self.lr = group["lr"]
        self.param_groups[0]["lr"] = group["lr"]
        self.betas = tuple(group["betas"])
        self.eps = group["eps"]
        self.weight_decay = group["weight_decay"]
        order = [pid for g in groups for pid in g["params"]]
        for i, pid in enumerate(order):
            entry = state_dict["state"].get(pid, state_dict["state"].get(str(pid)))
            if entry is None:
                continue
            for name, target in (("exp_avg", self.exp_avg[i]), ("exp_avg_sq", self.exp_avg_sq[i])):
                value = np.asarray(entry[name])
                if tuple(value.shape) != tuple(target.shape):
                    raise ValueError(f"optimizer state for parameter {i} has shape "
                                     f"{tuple(value.shape)}, expected {tuple(target.shape)}")
                target.assign(jt.array(value.astype(np.float32)))
            self.steps[i] = int(np.asarray(entry["step"]))


def release_adam(model, lr, weight_decay=0.0):
    """The release's optimizer for ``model``: Adam over every parameter that takes a
    gradient, in the model's order (so that the state's indices are the release's), those
    its forward never uses (``model.unused_parameters()``) held but never updated."""
    return Adam([p for p in model.parameters() if p.requires_grad], lr=lr,
                weight_decay=weight_decay, unused=model.unused_parameters())
