"""Train VAANet on VideoEmotion-8 or Ekman-6.

    python main.py --root_path data/ve8 --expr_name ve8_run1 \
        --resnet101_pretrained pretrained/resnet-101-kinetics.pth \
        --audio_pretrained pretrained/resnet18-f37072fd.pth
    python main.py --root_path data/ve8 --resume_path results/ve8_run1      # continue
    mpirun -np 2 python main.py ...                                         # data-parallel

Each epoch trains on the training split (shuffled), evaluates on the test split
(deterministically), appends to ``<result_path>/<expr_name>/metrics.jsonl``, writes
``save_<epoch>.npz`` (and ``best.npz``) atomically and redraws ``curves.png``.
``--resume_path`` takes a checkpoint (ours, or a release ``save_<epoch>.pth``) or an
experiment folder (its latest checkpoint) and continues exactly where it stopped.
"""
import os
import sys
import time

from opts import build_parser, finalize_opts, set_classes


def missing_dataset_message(opt):
    root = opt.root_path
    return (f"main.py: no prepared dataset found (looked for {opt.annotation_path}, "
            f"{opt.video_path} and {opt.audio_path}).\n"
            f"Prepare one from a folder of mp4 files per class with:\n"
            f"    python tools/prepare_dataset.py --src RAW_VIDEOS --dst {root} --dataset {opt.dataset}\n"
            f"or try the whole chain on synthetic videos with:  make demo")


def resolve_resume(path):
    from core.experiment import latest_checkpoint
    if os.path.isdir(path):
        found = latest_checkpoint(path)
        if found is None:
            raise FileNotFoundError(f"{path} holds no save_<epoch>.npz to resume from")
        return found
    return path


def class_problem(train_set, opt):
    """Why the annotation's classes cannot train this model, or None."""
    if len(train_set.classes) != opt.n_classes:
        return (f"{opt.annotation_path} has {len(train_set.classes)} classes, --n_classes "
                f"says {opt.n_classes}")
    if opt.loss_func == "pcce_ve8" and not train_set.classes.has_polarity:
        return (f"{opt.annotation_path} does not say which classes are positive, which the "
                f"PCCE loss needs; train with --loss_func ce")
    return None


def main(argv=None):
    args = build_parser().parse_args(argv)
    opt = finalize_opts(args)
    if not os.path.exists(opt.annotation_path):
        print(missing_dataset_message(opt), file=sys.stderr)
        return 2

    from core import entry
    entry.choose_device(opt.no_cuda)
    from core.jittor_setup import jt
    from core import distributed
    from core.checkpoint import load_weights, read_checkpoint_file
    from core.evaluate import evaluate
    from core.experiment import Experiment, ExperimentExistsError
    from core.loss import get_loss
    from core.optimizer import Adam
    from core.report import plot_curves
    from core.train import NonFiniteLossError, train_epoch
    from datasets.factory import get_training_set, get_validation_set, make_loader
    from datasets.ve8 import DatasetError
    from model import checkpoint_meta, generate_model, load_pretrained_model

    main_rank = distributed.is_main_process()
    if distributed.world_size() > 1 and opt.batch_size % distributed.world_size():
        print(f"main.py: --batch_size {opt.batch_size} (the global batch) must be a multiple of "
              f"the number of processes ({distributed.world_size()})", file=sys.stderr)
        return 2
    jt.set_global_seed(opt.manual_seed)
    try:
        train_set = make_loader(get_training_set(opt), opt, shuffle=True)
        val_set = make_loader(get_validation_set(opt), opt, shuffle=False)
    except DatasetError as e:
        print(f"main.py: the dataset under {opt.root_path} is not usable:\n{e}", file=sys.stderr)
        return 2
    problem = class_problem(train_set, opt)
    if problem:
        print(f"main.py: the dataset under {opt.root_path} is not usable: {problem}",
              file=sys.stderr)
        return 2
    set_classes(opt, train_set.classes)  # the annotation's classes, for the loss and the checkpoint

    model = load_pretrained_model(generate_model(opt), opt)
    criterion = get_loss(opt)
    optimizer = Adam([p for p in model.parameters() if p.requires_grad],
                     lr=opt.learning_rate, weight_decay=opt.weight_decay)

    begin_epoch, best_acc = opt.begin_epoch, 0.0
    if opt.resume_path:
        resume_file = resolve_resume(opt.resume_path)
        ckpt = read_checkpoint_file(resume_file)
        load_weights(model, ckpt["state_dict"])
        if ckpt.get("optimizer"):
            optimizer.load_state_dict(ckpt["optimizer"])
        meta = ckpt.get("meta") or {}
        begin_epoch = int(meta.get("epoch", begin_epoch))  # the release stores epoch + 1
        best_acc = float(meta.get("best_acc", 0.0))
        if main_rank:
            print(f"resumed from {resume_file}, saved after epoch {begin_epoch - 1}: "
                  f"continuing at epoch {begin_epoch}")
    # Every rank starts from rank 0's weights (frozen ones and buffers included).
    distributed.broadcast_model(model)

    expr_name = opt.expr_name or f"{opt.dataset}_{time.strftime('%Y%m%d-%H%M%S')}"
    folder = os.path.join(opt.result_path, expr_name)
    if opt.resume_path and os.path.isdir(opt.resume_path) and not opt.expr_name:
        folder = opt.resume_path
    experiment = None
    if main_rank:
        try:
            experiment = Experiment(folder, vars(opt), resume=bool(opt.resume_path))
        except ExperimentExistsError as e:
            print(f"main.py: {e}", file=sys.stderr)
            return 2
        experiment.drop_metrics_after(begin_epoch - 1)
        print(f"training {opt.n_epochs - begin_epoch + 1} epoch(s): "
              f"{train_set.n_samples} training / {val_set.n_samples} test videos, "
              f"results in {folder}")

    last_saved = None
    for epoch in range(begin_epoch, opt.n_epochs + 1):
        train_set.set_epoch(epoch)
        try:
            tr = train_epoch(epoch, train_set, model, criterion, optimizer, progress=main_rank)
        except NonFiniteLossError as e:
            if main_rank:
                kept = last_saved or (opt.resume_path or "none: no epoch had finished")
                print(f"main.py: {e}. Training stopped; the last good checkpoint is {kept}. "
                      f"Try a lower --learning_rate.", file=sys.stderr)
            return 1
        tr = distributed.average_metrics(tr)
        val = evaluate(model, val_set, criterion, desc=f"epoch {epoch} val", progress=main_rank)
        if main_rank:
            best = val.accuracy > best_acc
            best_acc = max(best_acc, val.accuracy)
            experiment.log({"epoch": epoch, "split": "train", "loss": tr["loss"],
                            "acc": tr["acc"], "time": tr["time"], "lr": opt.learning_rate})
            experiment.log({"epoch": epoch, "split": "val", "loss": val.loss,
                            "acc": val.accuracy})
            meta = checkpoint_meta(epoch, args, train_set.classes, best_acc=best_acc,
                                   val_acc=val.accuracy)
            last_saved = experiment.save(epoch, model, optimizer, meta, best=best)
            plot_curves(experiment.metrics_path, os.path.join(folder, "curves.png"))
            print(f"epoch {epoch}/{opt.n_epochs} {tr['time']:.0f}s  train loss {tr['loss']:.4f} "
                  f"acc {tr['acc']:.3f} | val loss {val.loss:.4f} acc {val.accuracy:.3f}"
                  f"{'  (best)' if best else ''}", flush=True)
    if main_rank:
        print(f"done: best validation accuracy {best_acc:.3f}; checkpoints in {folder}")
    return 0


if __name__ == "__main__":
    from core import entry
    sys.exit(entry.run(main))
