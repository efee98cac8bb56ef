"""Driver for tests/test_mpi.py: train a tiny VAANet for one epoch (single process or under
``mpirun``) and dump every rank's parameters and step times.

    python tests/mpi_train_driver.py OUT_PREFIX -- <main.py options>

writes ``OUT_PREFIX.rank<k>.npz`` (parameters and BatchNorm buffers by name, plus
``__step_times__``: seconds per training step, the first one with Jittor's compilation).
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(argv):
    out_prefix, rest = argv[0], argv[argv.index("--") + 1:]
    import numpy as np
    from opts import parse_opts
    from core.jittor_setup import jt
    from core import distributed
    from datasets.factory import get_training_set, make_loader
    from core.loss import get_loss
    from core.optimizer import Adam
    from model import generate_model

    opt = parse_opts(rest)
    jt.set_global_seed(opt.manual_seed)
    loader = make_loader(get_training_set(opt), opt, shuffle=True)
    model = generate_model(opt)
    distributed.broadcast_model(model)
    criterion = get_loss(opt)
    optimizer = Adam([p for p in model.parameters() if p.requires_grad],
                     lr=opt.learning_rate, weight_decay=opt.weight_decay)
    model.train()
    loader.set_epoch(1)
    times = []
    start = time.time()
    max_steps = int(os.environ.get("MPI_DRIVER_STEPS", "1000000"))
    for step, (visual, target, audio, _) in enumerate(loader):
        if step >= max_steps:
            break
        logits, *_ = model(visual, audio)
        loss = criterion(logits, target)
        optimizer.step(loss)
        jt.sync_all(True)
        times.append(time.time() - start)
        start = time.time()
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    state["__step_times__"] = np.array(times)
    np.savez(f"{out_prefix}.rank{distributed.rank()}.npz", **state)
    return 0


if __name__ == "__main__":
    from core.distributed import run_entry_point
    sys.exit(run_entry_point(run, sys.argv[1:]))
