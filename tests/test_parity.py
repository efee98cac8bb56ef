"""Parity with an independent PyTorch reference of VAANet, judged against float64 (SPEC §6).

Full ResNet-101 at 16x112x112, batch 2, seq_len 2. The reference's BatchNorm running
statistics are calibrated on a few batches (cumulative average), its weights go through
``torch.save`` into a ``.pth`` that the port reads with ``load_weights``. For each quantity
the port's distance to the float64 reference must be at most max(2 x the float32
reference's own distance, 1e-4) (outputs, loss, BatchNorm statistics: max abs error over
max abs value) or max(2 x, 1e-3) (gradients: relative L2).

"The float32 reference's own distance" is the larger of its distances with PyTorch's two
CPU convolution backends (oneDNN on and off): SPEC §6 notes that switching the backend
moves the float32 result as much as float32 itself does, and for some gradients one backend
lands closer to float64 by chance than the float32 noise floor would suggest.

Run with ``-s`` to print the measured distances.
"""
import copy

import numpy as np
import pytest
import torch

from core.checkpoint import load_weights
from core.jittor_setup import jt
from core.loss import PCCELoss
from datasets.catalog import polarity_mask
from models.vaanet import VAANet
from tests.torch_reference import TorchVAANet, pcce_loss

CONFIG = dict(snippet_duration=16, sample_size=112, seq_len=2, resnet_depth=101)
BATCH = 2
POSITIVE = (1, 4, 6, 7)


def _batch(rng):
    t, s, n = CONFIG["snippet_duration"], CONFIG["sample_size"], CONFIG["seq_len"]
    visual = rng.integers(0, 256, (BATCH, n, 3, t, s, s), dtype=np.uint8)
    audio = (rng.standard_normal((BATCH, 4096, 32)) * 20).astype(np.float32)
    return visual, audio


def _batchnorms(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def _max_rel(x, ref):
    return float(np.abs(x - ref).max() / max(np.abs(ref).max(), 1e-30))


def _on_both_backends(run):
    """``run()`` with PyTorch's oneDNN convolutions, then with its native ones."""
    results = []
    for enabled in (True, False):
        torch.backends.mkldnn.enabled = enabled
        try:
            results.append(run())
        finally:
            torch.backends.mkldnn.enabled = True
    return results


def _torch_train_pass(model, visual, audio, target):
    model.train()
    model.zero_grad()
    logits, *_ = model(torch.from_numpy(visual), torch.from_numpy(audio))
    loss = pcce_loss(logits, torch.from_numpy(target), POSITIVE)
    loss.backward()
    grads = {k: (p.grad.double().numpy() if p.grad is not None else np.zeros(tuple(p.shape)))
             for k, p in model.named_parameters() if p.requires_grad}
    stats = {k: v.double().numpy() for k, v in model.state_dict().items() if "running_" in k}
    return dict(logits=logits.detach().double().numpy(), loss=np.array([loss.item()]),
                grads=grads, stats=stats)


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    ref = TorchVAANet(**CONFIG)
    for bn in _batchnorms(ref):
        bn.momentum = None  # cumulative average over the calibration batches
    ref.train()
    with torch.no_grad():
        for _ in range(3):
            visual, audio = _batch(rng)
            ref(torch.from_numpy(visual), torch.from_numpy(audio))
    for bn in _batchnorms(ref):
        bn.momentum = 0.1
    path = tmp_path_factory.mktemp("parity") / "reference.pth"
    torch.save({"epoch": 1, "state_dict": ref.state_dict()}, path)

    port = VAANet(**CONFIG)
    load_weights(port, str(path))
    ref64 = copy.deepcopy(ref).double()
    visual, audio = _batch(rng)
    target = np.array([1, 2])

    result = {"eval": {}, "train": {}}
    ref.eval(), ref64.eval(), port.eval()
    with torch.no_grad():
        out64 = [o.numpy() for o in ref64(torch.from_numpy(visual), torch.from_numpy(audio))]
        out32 = _on_both_backends(lambda: [o.numpy() for o in ref(
            torch.from_numpy(visual), torch.from_numpy(audio))])
    outp = [o.numpy() for o in port(jt.array(visual), jt.array(audio))]
    for i, name in enumerate(("logits", "alpha", "beta", "gamma")):
        result["eval"][name] = (max(_max_rel(o[i], out64[i]) for o in out32),
                                _max_rel(outp[i], out64[i]))

    r64 = _torch_train_pass(ref64, visual, audio, target)
    r32s = _on_both_backends(lambda: _torch_train_pass(copy.deepcopy(ref), visual, audio, target))
    port.train()
    params = [p for p in port.parameters() if p.requires_grad]
    names = [k for k, v in port.state_dict().items() if v.requires_grad]
    logits, *_ = port(jt.array(visual), jt.array(audio))
    loss = PCCELoss(polarity_mask("ve8", 8))(logits, jt.array(target))
    grads = jt.grad(loss, params)
    rp = dict(logits=logits.numpy().astype(np.float64), loss=np.array([loss.item()]),
              grads={k: g.numpy().astype(np.float64) for k, g in zip(names, grads)},
              stats={k: v.numpy().astype(np.float64)
                     for k, v in port.state_dict().items() if "running_" in k})
    for name in ("logits", "loss"):
        result["train"][name] = (max(_max_rel(r[name], r64[name]) for r in r32s),
                                 _max_rel(rp[name], r64[name]))
    # Relative L2 per gradient. The biases that feed a train-mode BatchNorm (conv0.0.bias,
    # a_fc.0.bias) have a true gradient of 0, so the denominator has a floor at 1e-4 of the
    # largest gradient norm, instead of dividing rounding noise by ~1e-17.
    floor = 1e-4 * max(np.linalg.norm(g) for g in r64["grads"].values())

    def rel_l2(x, g):
        return float(np.linalg.norm(x - g) / max(np.linalg.norm(g), floor))

    result["grads"] = {k: (max(rel_l2(r["grads"][k], g) for r in r32s), rel_l2(rp["grads"][k], g))
                       for k, g in r64["grads"].items()}
    result["stats"] = {k: (max(_max_rel(r["stats"][k], s) for r in r32s),
                           _max_rel(rp["stats"][k], s))
                       for k, s in r64["stats"].items()}
    _print_summary(result)
    return result


def _print_summary(result):
    print("\nparity vs float64 reference: (reference float32, port)")
    for group in ("eval", "train"):
        for name, (a, b) in result[group].items():
            print(f"  {group:5s} {name:7s} {a:.2e} {b:.2e}")
    for group in ("grads", "stats"):
        worst = max(result[group].items(), key=lambda kv: kv[1][1])
        print(f"  {group}: {len(result[group])} tensors, worst port {worst[1][1]:.2e} "
              f"({worst[0]}, reference float32 {worst[1][0]:.2e})")


def _check(items, floor):
    bad = {k: v for k, v in items.items() if v[1] > max(2 * v[0], floor)}
    assert not bad, f"beyond max(2 x reference float32 error, {floor}): {bad}"


def test_eval_outputs_match_float64(measured):
    _check(measured["eval"], 1e-4)


def test_train_logits_and_loss_match_float64(measured):
    _check(measured["train"], 1e-4)


def test_train_gradients_match_float64(measured):
    assert len(measured["grads"]) == 90
    _check(measured["grads"], 1e-3)


def test_batchnorm_running_statistics_match_float64(measured):
    # every BatchNorm of the model, the frozen backbone's included
    assert len(measured["stats"]) == 2 * (104 + 20 + 5 + 1)
    _check(measured["stats"], 1e-4)
