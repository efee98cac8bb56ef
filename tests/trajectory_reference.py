"""The PyTorch side of tests/test_trajectory.py: ``STEPS`` training steps of the reference
VAANet (tests/torch_reference.py) from one set of weights, as the release trains (PCCE,
``torch.optim.Adam`` with weight decay, the frozen backbone's BatchNorms in train mode), in
float64 (the yardstick) and in float32 with PyTorch's default CPU backend (the release as
its users run it). Runs in its own process, as tests/parity_reference.py does.

    python tests/trajectory_reference.py OUT_DIR

writes ``OUT_DIR/start.pth`` (the weights, BatchNorm statistics calibrated), ``OUT_DIR/
resume.pth`` (the float32 run after ``RESUME_AT`` steps, with its optimizer: a release
``save_<e>.pth``) and ``OUT_DIR/trajectory.npz``: the batches (``visual<k>``, ``audio<k>``,
``target<k>``), the float64 run's loss at each step (``loss``), each trained tensor's update
(``update/<name>``: end minus start), every BatchNorm statistic at the end (``stats/<name>``),
and the float32 release's distance to each (``ref32/<group>/<name>``).

That distance is the largest over ``1 + PERTURBED`` float32 runs: the plain one and runs
whose starting weights carry another rounding pattern (each value moved by one unit in the
last place, up or down at random). Over several steps float32 noise is chaotic: Adam turns
the noise of near-zero gradients into steps of a full learning rate, and a BatchNorm over
32 values amplifies what reaches it. One run is one sample of that noise, and samples
spread by 10x or more (the audio attention's BatchNorm(1) running variance: 1e-4 in one
run, 1.7e-3 to 3.5e-3 in four others; on an AVX2 CPU the update of that BatchNorm's
weight, one value: 4.2e-3 in the plain run and three others, 7.6e-3 to 3.6e-2 in seven of
ten more; the port's own runs from such weights give 4.2e-3 to 3.8e-2). So the largest of
ten samples.
"""
import copy
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.parity_reference import (POSITIVE, max_rel, perturbed, rel_l2,  # noqa: E402
                                     worst_of)

CONFIG = dict(snippet_duration=8, sample_size=64, seq_len=2, resnet_depth=10)
BATCH = 2
STEPS = 6
RESUME_AT = 3
LR = 2e-4
WEIGHT_DECAY = 5e-4
UPDATE_FLOOR = 1e-6  # of the largest update's norm, as parity's gradient floor
PERTURBED = 9


def batches(rng):
    """Two batches, alternated over the steps: uint8 clips, MFCC-scale audio."""
    t, s, n = CONFIG["snippet_duration"], CONFIG["sample_size"], CONFIG["seq_len"]
    out = []
    for target in ((1, 2), (5, 0)):
        visual = rng.integers(0, 256, (BATCH, n, 3, t, s, s), dtype=np.uint8)
        audio = (rng.standard_normal((BATCH, 4096, 32)) * 50).astype(np.float32)
        out.append((visual, audio, np.array(target)))
    return out


def calibrated_reference(seed):
    """A reference VAANet with random weights and BatchNorm statistics averaged over a few
    random batches (left at 0 and 1 they blow the activations up)."""
    import torch
    from tests.torch_reference import TorchVAANet

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = TorchVAANet(**CONFIG)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.momentum = None
    model.train()
    with torch.no_grad():
        for visual, audio, _ in batches(rng):
            model(torch.from_numpy(visual), torch.from_numpy(audio))
    for bn in bns:
        bn.momentum = 0.1
    return model


def train(model, data, steps, save_at=None, save_path=None):
    """``steps`` Adam steps over ``data`` alternating; the loss of each step."""
    import torch
    from tests.torch_reference import pcce_loss

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=LR, weight_decay=WEIGHT_DECAY)
    dtype = model.av_fc.weight.dtype
    model.train()
    losses = []
    for k in range(steps):
        visual, audio, target = data[k % len(data)]
        optimizer.zero_grad()
        logits = model(torch.from_numpy(visual), torch.from_numpy(audio).to(dtype))[0]
        loss = pcce_loss(logits, torch.from_numpy(target), POSITIVE)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if k + 1 == save_at:
            torch.save({"epoch": k + 1, "state_dict": model.state_dict(),
                        "optimizer": optimizer.state_dict()}, save_path)
    return np.array(losses)


def end_state(model, start):
    """``(updates, stats)``: each trained tensor's end minus ``start``; every BatchNorm
    running statistic."""
    sd = {k: v.detach().double().numpy() for k, v in model.state_dict().items()}
    trained = {k for k, p in model.named_parameters() if p.requires_grad}
    updates = {k: sd[k] - start[k] for k in trained if k not in UNUSED}
    stats = {k: v for k, v in sd.items() if "running_" in k}
    return updates, stats


UNUSED = ("fc.weight", "fc.bias")  # never in the forward: Adam leaves them


def distances(loss, updates, stats, ref):
    """``{group: {name: distance}}`` of one run to the float64 run ``ref``."""
    floor = UPDATE_FLOOR * max(np.linalg.norm(u) for u in ref["update"].values())
    return {"loss": {str(k): abs(a - b) / abs(b) for k, (a, b) in enumerate(zip(loss, ref["loss"]))},
            "update": {k: rel_l2(u, ref["update"][k], floor) for k, u in updates.items()},
            "stats": {k: max_rel(v, ref["stats"][k]) for k, v in stats.items()}}


def main(out_dir, seed=0):
    import torch

    os.makedirs(out_dir, exist_ok=True)
    model = calibrated_reference(seed)
    torch.save({"epoch": 0, "state_dict": model.state_dict()}, os.path.join(out_dir, "start.pth"))
    start = {k: v.detach().double().numpy().copy() for k, v in model.state_dict().items()}
    data = batches(np.random.default_rng(seed + 100))

    model64 = copy.deepcopy(model).double()
    loss64 = train(model64, data, STEPS)
    update64, stats64 = end_state(model64, start)
    ref = {"loss": loss64, "update": update64, "stats": stats64}
    model32 = copy.deepcopy(model)
    loss32 = train(model32, data, STEPS, RESUME_AT, os.path.join(out_dir, "resume.pth"))
    ref32 = distances(loss32, *end_state(model32, start), ref)
    rng = np.random.default_rng(seed + 200)
    for _ in range(PERTURBED):
        model32 = perturbed(model, rng)
        d = distances(train(model32, data, STEPS), *end_state(model32, start), ref)
        ref32 = worst_of(ref32, d)

    arrays = {}
    for k, (visual, audio, target) in enumerate(data):
        arrays.update({f"visual{k}": visual, f"audio{k}": audio, f"target{k}": target})
    arrays["loss"] = loss64
    arrays.update({f"update/{k}": v.astype(np.float32) for k, v in update64.items()})
    arrays.update({f"stats/{k}": v for k, v in stats64.items()})
    arrays.update({f"ref32/{g}/{k}": np.array(v) for g, items in ref32.items()
                   for k, v in items.items()})
    np.savez(os.path.join(out_dir, "trajectory.npz"), **arrays)


def load(out_dir):
    """``(data, ref, ref32)`` as ``main`` wrote them: the batches, the float64 run
    (``loss``, ``update``, ``stats``) and the float32 run's distances."""
    f = np.load(os.path.join(out_dir, "trajectory.npz"))
    n = sum(1 for k in f.files if k.startswith("visual"))
    data = [(f[f"visual{k}"], f[f"audio{k}"], f[f"target{k}"]) for k in range(n)]
    ref = {"loss": f["loss"], "update": {}, "stats": {}}
    ref32 = {}
    for key in f.files:
        parts = key.split("/", 2)
        if parts[0] in ("update", "stats"):
            ref[parts[0]][parts[1]] = f[key].astype(np.float64)
        elif parts[0] == "ref32":
            ref32.setdefault(parts[1], {})[parts[2]] = float(f[key])
    return data, ref, ref32


if __name__ == "__main__":
    main(sys.argv[1])
