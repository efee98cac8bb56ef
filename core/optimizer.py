"""Adam with PyTorch's arithmetic and state layout.

Jittor's Adam adds eps before the bias correction of the second moment; PyTorch's adds it
after, and the release trains with PyTorch's. ``state_dict()`` has PyTorch's layout
(``{'state': {i: {'step', 'exp_avg', 'exp_avg_sq'}}, 'param_groups': [...]}``), so a
release checkpoint's optimizer resumes here and ours resumes there. Gradients are averaged
across MPI processes by Jittor's ``Optimizer.pre_step``.
"""
import math

import numpy as np

from core.jittor_setup import jt


class Adam(jt.optim.Optimizer):
    def __init__(self, params, lr=2e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        params = list(params)
        super().__init__(params, lr)
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
        jt.sync(self.param_groups[0]["grads"])
        b1, b2 = self.betas
        lr = self.param_groups[0].get("lr", self.lr)
        for i, (p, g) in enumerate(zip(self.params, self.param_groups[0]["grads"])):
            if p.is_stop_grad():
                continue
            if self.weight_decay:
                g = g + self.weight_decay * p
            self.steps[i] += 1
            t = self.steps[i]
            m, v = self.exp_avg[i], self.exp_avg_sq[i]
            m.update(m + (g - m) * (1 - b1))
            v.update(v * b2 + g * g * (1 - b2))
            denom = v.sqrt() / math.sqrt(1 - b2 ** t) + self.eps
            p.update(p - m / denom * (lr / (1 - b1 ** t)))
        self.post_step()

    def state_dict(self):
        state = {}
        for i in range(len(self.params)):
            if self.steps[i]:
                state[i] = {"step": float(self.steps[i]), "exp_avg": self.exp_avg[i].numpy(),
                            "exp_avg_sq": self.exp_avg_sq[i].numpy()}
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
