"""Driver for tests/test_mpi.py: the gradient of one training batch and one optimizer step
of a tiny VAANet from given weights, in one process or under ``mpirun``, through the
training code: the loader's per-rank shards of the global batch, BatchNorm over the global
batch, the optimizer's MPI gradient averaging and Adam.

    python tests/mpi_train_driver.py OUT_PREFIX WEIGHTS -- <main.py options>

Every process loads WEIGHTS (a .pth), takes the first global batch of the training loader
(its own shard of it under MPI) and

1. computes the gradient of the loss with ``optimizer.backward`` (under MPI: averaged over
   the ranks), then takes one Adam step with it from a loaded state (first moments 0,
   second moments ``STATE_SQ``) whose bias-corrected second moment is ``1 + g^2``: the
   update is ``lr * g / sqrt(1 + g^2)``, an SGD step of size ``lr`` where ``|g| << 1``.
   (Adam's first step from a zero state moves every weight by about ``lr`` whatever its
   gradient, and would hide a wrong one.)
2. under MPI only, the positive control: from WEIGHTS again, the same averaged gradient with
   a deliberately wrong BatchNorm that normalises each rank's shard by its own statistics.

Writes ``OUT_PREFIX.rank<k>.npz``: ``grad/<param>``, ``control/<param>`` (MPI only),
``init/<key>`` and ``after/<key>`` (parameters and BatchNorm buffers before and after the
step) and the rank's batch (``batch/visual``, ``batch/audio``, ``batch/target``).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BETAS = (0.9, 0.999)
STATE_SQ = (1 - BETAS[1]) / BETAS[1]


def _per_rank_statistics():
    """models.backend's device answers with BatchNorm's sums over the processes replaced by
    each process's own: every rank normalises its shard by the shard's statistics."""
    from models import backend

    class PerRank(type(backend.device)):
        @staticmethod
        def all_reduce(x):
            return x

    return PerRank()


def _gradients(model, optimizer, criterion, batch):
    """The optimizer's (MPI-averaged) gradient of the batch's loss, by parameter name."""
    visual, target, audio = batch
    logits, *_ = model(visual, audio)
    optimizer.backward(criterion(logits, target))
    names = {id(v): k for k, v in model.state_dict().items()}
    group = optimizer.param_groups[0]  # the parameters that take a gradient (not fc's)
    return {names[id(p)]: g.numpy().copy() for p, g in zip(group["params"], group["grads"])}


def run(argv):
    out_prefix, weights, rest = argv[0], argv[1], argv[argv.index("--") + 1:]
    import numpy as np
    from opts import parse_opts
    from core.checkpoint import load_weights
    from core.jittor_setup import jt
    from core import distributed
    from datasets.factory import get_training_set, make_loader
    from core.loss import get_loss
    from core.optimizer import release_adam
    from model import generate_model
    from models import backend

    opt = parse_opts(rest)
    jt.set_global_seed(opt.manual_seed)
    loader = make_loader(get_training_set(opt), opt, shuffle=True)
    loader.set_epoch(1)
    visual, target, audio, _ = next(iter(loader))
    batch = (visual, target, audio)
    model = generate_model(opt)
    load_weights(model, weights)
    distributed.broadcast_model(model)
    model.train()
    criterion = get_loss(opt)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = release_adam(model, opt.learning_rate)
    optimizer.load_state_dict({
        "state": {i: {"step": 0, "exp_avg": np.zeros(p.shape, np.float32),
                      "exp_avg_sq": np.full(p.shape, STATE_SQ, np.float32)}
                  for i, p in enumerate(params)},
        "param_groups": [{"lr": opt.learning_rate, "betas": list(BETAS), "eps": 1e-8,
                          "weight_decay": 0.0, "params": list(range(len(params)))}]})

    out = {f"init/{k}": v.numpy().copy() for k, v in model.state_dict().items()}
    out.update({"batch/visual": visual.numpy(), "batch/audio": audio.numpy(),
                "batch/target": target.numpy()})
    grads = _gradients(model, optimizer, criterion, batch)
    optimizer.step()  # with the gradient just computed
    out.update({f"grad/{k}": g for k, g in grads.items()})
    out.update({f"after/{k}": v.numpy().copy() for k, v in model.state_dict().items()})

    if distributed.in_mpi():
        load_weights(model, weights)
        optimizer.zero_grad()
        device = backend.device
        backend.device = _per_rank_statistics()  # the deliberate error
        try:
            control = _gradients(model, optimizer, criterion, batch)
        finally:
            backend.device = device
        out.update({f"control/{k}": g for k, g in control.items()})
    np.savez(f"{out_prefix}.rank{distributed.rank()}.npz", **out)
    return 0


if __name__ == "__main__":
    from core.distributed import run_entry_point
    sys.exit(run_entry_point(run, sys.argv[1:]))
