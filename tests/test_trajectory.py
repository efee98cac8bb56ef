"""Training over several steps lands where the release's lands.

From the same weights (tests/trajectory_reference.py: a reference VAANet at a small depth,
BatchNorm statistics calibrated), ``STEPS`` Adam steps with weight decay over two batches
alternating, the port through the code main.py runs (``core.train.train_epoch``, its PCCE,
``core.optimizer.release_adam``, its BatchNorm), the reference in float64 (the yardstick)
and in float32 (PyTorch's default CPU backend, the release as its users run it; its
distance is the largest over its plain run and a few runs from the same weights in other
rounding patterns, see tests/trajectory_reference.py). Every step's loss, every trained
tensor's update (end minus start) and every BatchNorm statistic at the end must be within
max(2 x the float32 reference's distance to float64, floor);
every tensor the release does not train (the frozen backbone, the unused ``fc``) must end
bit-identical to where it started.

Resume across frameworks: the release's ``save_<e>.pth`` after ``RESUME_AT`` steps (its
optimizer state included), resumed by the port for the remaining steps, must land within
the same bounds of the uninterrupted float64 run.

Positive controls: Adam with eps added before the second moment's bias correction (as
Jittor's own Adam does), and weight decay applied as AdamW does, must each fail.

Run with ``-s`` to print the worst quantity of each group.
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import core.optimizer
from core.checkpoint import load_weights, read_checkpoint_file
from core.jittor_setup import jt
from core.loss import PCCELoss
from core.train import train_epoch
from datasets.catalog import DATASETS
from models.vaanet import VAANet
from tests.parity_reference import max_rel, rel_l2
from tests.trajectory_reference import (CONFIG, LR, RESUME_AT, STEPS, UNUSED, UPDATE_FLOOR,
                                        WEIGHT_DECAY, load)

pytestmark = pytest.mark.slow  # ~4 minutes of PyTorch reference trainings (make check-all)

FLOORS = {"loss": 1e-4, "update": 1e-3, "stats": 1e-4}
ROOT = Path(__file__).resolve().parents[1]


def run_port(start_pth, data, first_step=0, adam_update=None):
    """The port trained from ``start_pth`` (weights, and an optimizer state if it has one)
    for the steps from ``first_step`` on: ``(losses, start state, end state)``."""
    model = VAANet(**CONFIG)
    ckpt = read_checkpoint_file(start_pth)
    load_weights(model, ckpt["state_dict"])
    optimizer = core.optimizer.release_adam(model, LR, WEIGHT_DECAY)
    if ckpt.get("optimizer"):
        optimizer.load_state_dict(ckpt["optimizer"])
    if adam_update is not None:
        optimizer._update_cpu = adam_update.__get__(optimizer)
    criterion = PCCELoss(DATASETS["ve8"].classes.positive_mask())
    start = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    losses = []
    for k in range(first_step, STEPS):
        visual, audio, target = data[k % len(data)]
        batch = [(jt.array(visual), jt.array(target), jt.array(audio), None)]
        losses.append(train_epoch(k + 1, batch, model, criterion, optimizer, progress=False)["loss"])
    end = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    return losses, start, end


def distances(run, ref, origin):
    """``{group: {name: distance}}`` of a port run to the float64 run; updates are taken
    from ``origin`` (the float64 run's starting weights)."""
    losses, _, end = run
    floor = UPDATE_FLOOR * max(np.linalg.norm(u) for u in ref["update"].values())
    first = len(ref["loss"]) - len(losses)
    return {"loss": {str(first + k): abs(a - ref["loss"][first + k]) / abs(ref["loss"][first + k])
                     for k, a in enumerate(losses)},
            "update": {k: rel_l2(end[k].astype(np.float64) - origin[k], u, floor)
                       for k, u in ref["update"].items()},
            "stats": {k: max_rel(end[k].astype(np.float64), s) for k, s in ref["stats"].items()}}


def beyond(port, ref32):
    """``[(port / bound, group, name, reference, port)]`` of the quantities over their
    bound, worst first."""
    rows = [(d / max(2 * ref32[g][k], FLOORS[g]), g, k, ref32[g][k], d)
            for g, items in port.items() for k, d in items.items()]
    return sorted((r for r in rows if r[0] > 1), reverse=True)


def _summary(label, port, ref32):
    print(f"\n{label}: reference float32 / port vs float64 (bound max(2 x reference, floor))")
    for g, items in port.items():
        ratio, k = max((d / max(2 * ref32[g][k], FLOORS[g]), k) for k, d in items.items())
        print(f"  {g:6s} {k:32s} {ref32[g][k]:.2e} / {items[k]:.2e}  {ratio:.2f} of its bound")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("trajectory")
    subprocess.run([sys.executable, str(ROOT / "tests" / "trajectory_reference.py"), str(out)],
                   cwd=ROOT, check=True)
    data, ref, ref32 = load(out)
    origin = {k: np.asarray(v, np.float64)
              for k, v in read_checkpoint_file(out / "start.pth")["state_dict"].items()}
    return out, data, ref, ref32, origin


@pytest.fixture(scope="module")
def port_run(reference):
    out, data, ref, ref32, origin = reference
    run = run_port(out / "start.pth", data)
    _summary(f"{STEPS} steps", distances(run, ref, origin), ref32)
    return run


def test_losses_updates_and_statistics_follow_the_release(reference, port_run):
    _, _, ref, ref32, origin = reference
    port = distances(port_run, ref, origin)
    assert len(port["loss"]) == STEPS
    assert len(port["update"]) == 17 + 69 + 2  # visual heads, audio stream, av_fc
    assert len(port["stats"]) == 2 * (12 + 20 + 6)  # ResNet-10, ResNet-18, heads
    assert beyond(port, ref32) == []


def test_untrained_tensors_stay_bit_identical(port_run):
    _, start, end = port_run
    frozen = [k for k in start if k.startswith("resnet.") and "running_" not in k
              and "num_batches" not in k] + list(UNUSED)
    assert len(frozen) == 3 + 4 * 6 + 3 * 3 + 2  # conv1 + bn1, 4 blocks, 3 downsamples, fc
    moved = [k for k in frozen if not np.array_equal(start[k], end[k])]
    assert moved == []


def test_release_checkpoint_resumes_to_the_same_place(reference):
    out, data, ref, ref32, origin = reference
    run = run_port(out / "resume.pth", data, first_step=RESUME_AT)
    port = distances(run, ref, origin)
    _summary(f"resumed at step {RESUME_AT}", port, ref32)
    assert len(port["loss"]) == STEPS - RESUME_AT
    assert beyond(port, ref32) == []


def _eps_before_bias_correction(self, live, grads, lr):
    """Jittor's Adam: p -= lr_t * m / (sqrt(v) + eps), lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)."""
    b1, b2 = self.betas
    for i, g in zip(live, grads):
        p, m, v, t = self.params[i], self.exp_avg[i], self.exp_avg_sq[i], self.steps[i]
        g = g + self.weight_decay * p
        m.update(m + (g - m) * (1 - b1))
        v.update(v * b2 + g * g * (1 - b2))
        p.update(p - m / (v.sqrt() + self.eps) * (lr * (1 - b2 ** t) ** 0.5 / (1 - b1 ** t)))
    jt.sync(self.params)


def _adamw_decay(self, live, grads, lr):
    """Weight decay decoupled from the gradient, as AdamW applies it."""
    b1, b2 = self.betas
    for i, g in zip(live, grads):
        p, m, v, t = self.params[i], self.exp_avg[i], self.exp_avg_sq[i], self.steps[i]
        m.update(m + (g - m) * (1 - b1))
        v.update(v * b2 + g * g * (1 - b2))
        denom = v.sqrt() / (1 - b2 ** t) ** 0.5 + self.eps
        p.update(p * (1 - lr * self.weight_decay) - m / denom * (lr / (1 - b1 ** t)))
    jt.sync(self.params)


@pytest.mark.parametrize("variant", [_eps_before_bias_correction, _adamw_decay])
def test_control_with_another_adam_fails(reference, variant):
    out, data, ref, ref32, origin = reference
    port = distances(run_port(out / "start.pth", data, adam_update=variant), ref, origin)
    bad = beyond(port, ref32)
    assert bad, f"{variant.__name__} passed"
    ratio, group, name, r, d = bad[0]
    print(f"\ncontrol {variant.__name__}: {len(bad)} quantities beyond their bound, worst "
          f"{group} {name} {r:.2e} / {d:.2e}, {ratio:.0f} x its bound")
