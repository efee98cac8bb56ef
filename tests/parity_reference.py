"""The PyTorch side of tests/test_parity.py: for each draw (a seed), a reference VAANet
(tests/torch_reference.py) with random weights and calibrated BatchNorm statistics, its
float64 results and its own float32 distance to them. Runs in its own process, so that
PyTorch's oneDNN never shares a process with Jittor's, and its memory goes with it.

    python tests/parity_reference.py OUT_DIR SEED [SEED ...]

writes, per seed, ``OUT_DIR/draw<seed>.pth`` (the weights, a release-style checkpoint) and
``OUT_DIR/draw<seed>.npz``: the inputs (``visual``, ``audio``, ``target``), the float64
results (``eval/<name>``, ``train/<name>``, ``grads/<param>``, ``stats/<buffer>``) and, for
each, the float32 reference's distance to them (``ref32/<group>/<name>``), with PyTorch's
default CPU backend (oneDNN), as the release's users run it: the largest over its plain run
and ``PERTURBED`` runs from the same weights moved by one unit in the last place. A
gradient of the audio stream is one sample of a lottery: a value near zero after a
train-mode BatchNorm lands on either side of its ReLU by a rounding, and a couple of such
flips move the gradients before it by about 1e-3 (docs/faithfulness.md): one run says
little about how often the release's own float32 meets them. The draws in ``MFCC_DRAWS``
feed the audio stream MFCC-scale values (standard deviation 50) rather than 20.

Distances (``distance(kind, x, ref)``): outputs, loss and BatchNorm statistics as the
max abs error over the max abs value; gradients as relative L2, whose denominator has a
floor at ``GRAD_FLOOR`` of the largest gradient norm (a bias feeding a train-mode
BatchNorm has a true gradient of 0).
"""
import copy
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from datasets.catalog import DATASETS  # noqa: E402  (Jittor-free)

CONFIG = dict(snippet_duration=16, sample_size=112, seq_len=2, resnet_depth=101)
BATCH = 2
TARGET = (1, 2)
POSITIVE = tuple(np.flatnonzero(DATASETS["ve8"].classes.positive_mask()))  # for PCCE
CALIBRATION_BATCHES = 3
GRAD_FLOOR = 1e-4
EVAL_OUTPUTS = ("logits", "alpha", "beta", "gamma")
SMALL = 8  # gradients of fewer elements (visual head): judged against backbone_noise too
PERTURBED = 2  # float32 runs from the weights in other rounding patterns, beside the plain one
HEAD = ("sa_net.", "cwa_net.", "ta_net.")
PATTERNS = 8


MFCC_DRAWS = (3,)


def inputs(rng, audio_scale=20.0):
    t, s, n = CONFIG["snippet_duration"], CONFIG["sample_size"], CONFIG["seq_len"]
    visual = rng.integers(0, 256, (BATCH, n, 3, t, s, s), dtype=np.uint8)
    audio = (rng.standard_normal((BATCH, 4096, 32)) * audio_scale).astype(np.float32)
    return visual, audio


def max_rel(x, ref):
    return float(np.abs(x - ref).max() / max(np.abs(ref).max(), 1e-30))


def rel_l2(x, ref, floor):
    return float(np.linalg.norm(x - ref) / max(np.linalg.norm(ref), floor))


def grad_floor(grads64):
    return GRAD_FLOOR * max(np.linalg.norm(g) for g in grads64.values())


def distances(results, ref64):
    """``{group: {name: distance}}`` of ``results`` (one run) to the float64 ``ref64``."""
    floor = grad_floor(ref64["grads"])
    out = {}
    for group, items in ref64.items():
        if group == "grads":
            out[group] = {k: rel_l2(results[group][k], g, floor) for k, g in items.items()}
        else:
            out[group] = {k: max_rel(results[group][k], v) for k, v in items.items()}
    return out


def torch_passes(model, visual, audio, target):
    """Eval-mode outputs, then one training pass: logits, loss, every trainable
    parameter's gradient and every BatchNorm running statistic after it."""
    import torch
    from tests.torch_reference import pcce_loss

    v, a = torch.as_tensor(visual), torch.as_tensor(audio)
    model.eval()
    with torch.no_grad():
        out = [o.double().numpy() for o in model(v, a)]
    model.train()
    model.zero_grad()
    logits, *_ = model(v, a)
    loss = pcce_loss(logits, torch.as_tensor(np.asarray(target, np.int64)), POSITIVE)
    loss.backward()
    # copies: in a float64 model .double() is the tensor itself, which later passes change
    grads = {k: (p.grad.double().numpy().copy() if p.grad is not None
                 else np.zeros(tuple(p.shape)))
             for k, p in model.named_parameters() if p.requires_grad}
    stats = {k: v.double().numpy().copy() for k, v in model.state_dict().items()
             if "running_" in k}
    return {"eval": dict(zip(EVAL_OUTPUTS, out)),
            "train": {"logits": logits.detach().double().numpy(),
                      "loss": np.array([loss.item()])},
            "grads": grads, "stats": stats}


def _keeping_features(model, kept):
    """``model``, its backbone's output of each pass appended to ``kept``."""
    model.resnet.register_forward_hook(lambda module, x, out: kept.append(out.flatten(2)))
    return model


def reference_noise(ref, visual, audio, target, features=None):
    """``(float64 results, {group: {name: distance}})``: the float64 results of the float32
    reference ``ref`` (left unchanged), and the float32 reference's own distance to them
    with PyTorch's default CPU backend. With a dict ``features``, also keeps there the
    training pass's float64 model (``model64``) and its backbone features in float64 and
    float32 (``f64``, ``f32``)."""
    import torch

    kept = []
    model64 = _keeping_features(copy.deepcopy(ref).double(), kept)
    ref64 = torch_passes(model64, visual, audio, target)
    if features is not None:
        features.update(model64=model64, f64=kept[-1])
    model32 = _keeping_features(copy.deepcopy(ref), kept)
    ref32 = distances(torch_passes(model32, visual, audio, target), ref64)
    if features is not None:
        features["f32"] = kept[-1].double()
    rng = np.random.default_rng(0)
    for _ in range(PERTURBED):
        d = distances(torch_passes(perturbed(ref, rng), visual, audio, target), ref64)
        ref32 = worst_of(ref32, d)
    return ref64, ref32


def worst_of(a, b):
    """``{group: {name: distance}}``, each the larger of ``a``'s and ``b``'s."""
    return {g: {k: max(v, b[g][k]) for k, v in items.items()} for g, items in a.items()}


def perturbed(model, rng):
    """A copy of ``model`` whose parameters are each moved by one float32 unit in the last
    place, up or down at random: the same weights in another rounding pattern."""
    import torch

    model = copy.deepcopy(model)
    with torch.no_grad():
        for p in model.parameters():
            signs = rng.choice([-1.0, 1.0], size=tuple(p.shape)).astype(np.float32)
            p.copy_(torch.from_numpy(np.nextafter(p.numpy(), signs * np.inf)))
    return model


def backbone_noise(features, audio, target, ref64, names):
    """The float64 reference's distance, for each gradient in ``names``, when the frozen
    backbone's features carry the float32 reference's own error in ``PATTERNS`` other
    patterns (the same error, each element's sign drawn at random), everything after the
    backbone in float64: the largest over the patterns.

    The float32 distance of a gradient a few elements long is one sample of how the
    backbone's float32 error projects onto it: the same error in another pattern moves it
    by several times more or less (see tests/test_parity.py)."""
    import torch
    from tests.torch_reference import pcce_loss

    model, f64, err = features["model64"], features["f64"], features["f32"] - features["f64"]
    model.train()
    with torch.no_grad():
        fA = model.audio_stream(torch.as_tensor(audio))
    params = dict(model.named_parameters())
    floor = grad_floor(ref64["grads"])
    rng = np.random.default_rng(0)
    worst = dict.fromkeys(names, 0.0)
    for _ in range(PATTERNS):
        signs = torch.from_numpy(rng.choice([-1.0, 1.0], size=tuple(err.shape)))
        fSCT = model.visual_head(f64 + signs * err)[0]
        logits = model.av_fc(torch.cat([fSCT, fA], dim=1))
        loss = pcce_loss(logits, torch.as_tensor(np.asarray(target, np.int64)), POSITIVE)
        grads = torch.autograd.grad(loss, [params[k] for k in names])
        for k, g in zip(names, grads):
            worst[k] = max(worst[k], rel_l2(g.numpy(), ref64["grads"][k], floor))
    return worst


def make_draw(seed, out_dir):
    import torch
    from tests.torch_reference import TorchVAANet

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    audio_scale = 50.0 if seed in MFCC_DRAWS else 20.0
    ref = TorchVAANet(**CONFIG)
    bns = [m for m in ref.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.momentum = None  # cumulative average over the calibration batches
    ref.train()
    with torch.no_grad():
        for _ in range(CALIBRATION_BATCHES):
            visual, audio = inputs(rng, audio_scale)
            ref(torch.from_numpy(visual), torch.from_numpy(audio))
    for bn in bns:
        bn.momentum = 0.1
    torch.save({"epoch": 1, "state_dict": ref.state_dict()},
               os.path.join(out_dir, f"draw{seed}.pth"))
    visual, audio = inputs(rng, audio_scale)
    target = np.array(TARGET)
    features = {}
    ref64, ref32 = reference_noise(ref, visual, audio, target, features)
    small = [k for k, g in ref64["grads"].items() if g.size < SMALL and k.startswith(HEAD)]
    spread = backbone_noise(features, audio, target, ref64, small)
    arrays = {"visual": visual, "audio": audio, "target": target}
    arrays.update({f"{g}/{k}": v for g, items in ref64.items() for k, v in items.items()})
    arrays.update({f"ref32/{g}/{k}": np.array(v) for g, items in ref32.items()
                   for k, v in items.items()})
    arrays.update({f"spread/grads/{k}": np.array(v) for k, v in spread.items()})
    np.savez(os.path.join(out_dir, f"draw{seed}.npz"), **arrays)


def load_draw(out_dir, seed):
    """``(pth path, inputs dict, float64 results {group: {name}}, ref32 {group: {name}},
    spread {name})``: ``spread`` holds ``backbone_noise`` for the small head gradients."""
    data = np.load(os.path.join(out_dir, f"draw{seed}.npz"))
    ref64, ref32, spread = {}, {}, {}
    for key in data.files:
        if key in ("visual", "audio", "target"):
            continue
        parts = key.split("/", 2)
        if parts[0] == "ref32":
            ref32.setdefault(parts[1], {})[parts[2]] = float(data[key])
        elif parts[0] == "spread":
            spread[parts[2]] = float(data[key])
        else:
            ref64.setdefault(parts[0], {})[parts[1]] = data[key]
    batch = {k: data[k] for k in ("visual", "audio", "target")}
    return os.path.join(out_dir, f"draw{seed}.pth"), batch, ref64, ref32, spread


def main(argv):
    out_dir, seeds = argv[0], [int(s) for s in argv[1:]]
    os.makedirs(out_dir, exist_ok=True)
    for seed in seeds:
        start = time.time()
        make_draw(seed, out_dir)
        print(f"draw {seed}: reference in {time.time() - start:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
