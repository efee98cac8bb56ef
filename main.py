"""Train VAANet on VideoEmotion-8, Ekman-6 or a dataset of your own classes.

    python main.py --root_path data/ve8 --expr_name ve8_run1 \
        --resnet101_pretrained pretrained/resnet-101-kinetics.pth \
        --audio_pretrained pretrained/resnet18-f37072fd.pth
    python main.py --root_path data/ve8 --resume_path results/ve8_run1      # continue
    python main.py --dataset custom --root_path data/mine --loss_func ce    # your own classes
    mpirun -np 2 python main.py ...                                         # data-parallel

The classes (their number, names and polarity) are the annotation's; a checkpoint carries
them on to test.py and predict.py. The PCCE loss (the default) needs the polarity, which
a custom dataset has when it was prepared with ``--positive_classes``.

Each epoch trains on the training split (shuffled), writes ``save_<epoch>.npz``, evaluates
on the test split (deterministically), appends to ``<result_path>/<expr_name>/metrics.jsonl``,
writes the evaluation's result into ``save_<epoch>.npz`` (and ``best.npz``) atomically and
redraws ``curves.png``; the same scalars, and those of every batch, go to TensorBoard
event files in that folder (``--tensorboard``; by default when tensorboardX is installed).
``--resume_path`` takes a checkpoint (ours, or a release
``save_<epoch>.pth``) or an experiment folder (its latest checkpoint) and continues exactly
where it stopped; a checkpoint whose evaluation did not finish is evaluated first.

A sample that cannot be read (a damaged frame or mp3) stops the run with a few lines naming
the video, the file, the cause and the checkpoint to resume from (exit status 1): an error
in an evaluation keeps that epoch's training, one in a training phase loses that epoch only.
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


def class_problem(classes, args, opt):
    """Why the annotation's ``classes`` cannot train this model, or None. ``args`` are the
    options as typed (``--n_classes`` given or not)."""
    if args.n_classes is not None and args.n_classes != len(classes):
        return (f"{opt.annotation_path} has {len(classes)} classes ({', '.join(classes.names)}), "
                f"--n_classes says {args.n_classes}; leave --n_classes out to use the annotation's")
    if opt.loss_func == "pcce_ve8" and not classes.has_polarity:
        return (f"{opt.annotation_path} does not say which classes are positive, which the "
                f"PCCE loss (--loss_func pcce_ve8, the default) needs: prepare the dataset with "
                f"--positive_classes A,B,... (tools/prepare_dataset.py), or train with "
                f"--loss_func ce")
    return None


def resume_problem(ckpt, path, classes):
    """Why the checkpoint ``ckpt`` (read from ``path``) cannot continue on ``classes``, or None."""
    from model import checkpoint_classes, classifier_outputs
    n = classifier_outputs(ckpt.get("state_dict"))
    if n is not None and n != len(classes):
        return (f"{path} holds a model of {n} classes, the annotation has {len(classes)} "
                f"({', '.join(classes.names)})")
    meta = ckpt.get("meta") or {}
    if meta.get("labels") and checkpoint_classes(ckpt).names != classes.names:
        return (f"{path} was trained on the classes {list(meta['labels'])}, the annotation "
                f"has {list(classes.names)}")
    return None


def data_error(error, opt, epoch, phase, checkpoint, resume_flags):
    """Report a sample that cannot be read (``datasets.errors.SampleError``) during
    ``phase`` ("training" or "evaluation") of ``epoch``, with the checkpoint to resume
    from; returns the exit status. With --debug, raises it (the traceback is shown)."""
    if opt.debug:
        print(f"where the error happened:\n{error.detail}", file=sys.stderr)
        raise error
    from core.distributed import report
    from datasets.errors import check_hint
    lines = [f"main.py: cannot read a sample during epoch {epoch}'s {phase}:"] + error.lines()
    if phase == "evaluation":
        lines.append(f"Epoch {epoch}'s training is saved in {checkpoint}.")
    elif checkpoint:
        lines.append(f"Epoch {epoch}'s training is lost; the last checkpoint is {checkpoint}.")
    else:
        lines.append(f"Epoch {epoch}'s training is lost, and no earlier epoch had finished.")
    if checkpoint:
        first = f" (it evaluates epoch {epoch} first)" if phase == "evaluation" else ""
        lines.append(f"Repair the file, then resume with --resume_path {checkpoint}"
                     f"{resume_flags}{first}.")
    else:
        lines.append("Repair the file, then start again.")
    lines.append(check_hint(opt.root_path, opt.dataset))
    report("\n".join(lines))
    return 1


def main(argv=None):
    args = build_parser().parse_args(argv)
    opt = finalize_opts(args)
    if not os.path.exists(opt.annotation_path):
        print(missing_dataset_message(opt), file=sys.stderr)
        return 2
    # The classes decide the model and the loss: checked before anything long starts.
    from core.checkpoint import CheckpointError, read_checkpoint_file
    from datasets.catalog import AnnotationError, read_annotation
    try:
        classes, _ = read_annotation(opt.annotation_path)
    except AnnotationError as e:
        print(f"main.py: {e}", file=sys.stderr)
        return 2
    problem = class_problem(classes, args, opt)
    ckpt, resume_file = None, None
    if opt.resume_path and not problem:
        try:
            resume_file = resolve_resume(opt.resume_path)
            ckpt = read_checkpoint_file(resume_file)
        except (CheckpointError, OSError) as e:
            print(f"main.py: cannot resume from {opt.resume_path}: {e}", file=sys.stderr)
            return 2
        problem = resume_problem(ckpt, resume_file, classes)
    if problem:
        print(f"main.py: the dataset under {opt.root_path} is not usable: {problem}",
              file=sys.stderr)
        return 2
    opt.n_classes = len(classes)
    set_classes(opt, classes)  # the annotation's classes, for the loss and the checkpoint

    from core import entry
    entry.choose_device(opt.no_cuda)
    from core.jittor_setup import jt
    from core import distributed
    from core.checkpoint import load_weights
    from core.evaluate import evaluate
    from core.experiment import Experiment, ExperimentExistsError, checkpoint_path
    from core.loss import get_loss
    from core.optimizer import release_adam
    from core.report import plot_curves
    from core.tensorboard import TensorBoardMissing
    from core.train import NonFiniteLossError, train_epoch
    from datasets.factory import get_training_set, get_validation_set, make_loader
    from datasets.errors import SampleError
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

    model = load_pretrained_model(generate_model(opt), opt)
    criterion = get_loss(opt)
    optimizer = release_adam(model, opt.learning_rate, opt.weight_decay)

    begin_epoch, best_acc = opt.begin_epoch, 0.0
    unevaluated = False
    if ckpt is not None:
        load_weights(model, ckpt["state_dict"])
        if ckpt.get("optimizer"):
            optimizer.load_state_dict(ckpt["optimizer"])
        meta = ckpt.get("meta") or {}
        begin_epoch = int(meta.get("epoch", begin_epoch))  # the release stores epoch + 1
        best_acc = float(meta.get("best_acc", 0.0))
        unevaluated = meta.get("evaluated") is False  # its evaluation did not finish
        if main_rank:
            print(f"resumed from {resume_file}, saved after epoch {begin_epoch - 1}: "
                  + (f"evaluating epoch {begin_epoch - 1}, then " if unevaluated else "")
                  + f"continuing at epoch {begin_epoch}")
    # Every rank starts from rank 0's weights (frozen ones and buffers included).
    distributed.broadcast_model(model)

    started = distributed.all_reduce_sum([time.time() if main_rank else 0.0])[0]  # rank 0's
    expr_name = opt.expr_name or f"{opt.dataset}_{time.strftime('%Y%m%d-%H%M%S', time.localtime(started))}"
    folder = os.path.join(opt.result_path, expr_name)
    if opt.resume_path and os.path.isdir(opt.resume_path) and not opt.expr_name:
        folder = opt.resume_path
    experiment = None
    if main_rank:
        try:
            experiment = Experiment(folder, vars(opt), resume=bool(opt.resume_path),
                                    tensorboard=opt.tensorboard)
        except (ExperimentExistsError, TensorBoardMissing) as e:
            print(f"main.py: {e}", file=sys.stderr)
            return 2
        experiment.drop_metrics_after(begin_epoch - 1)
        print(f"training {opt.n_epochs - begin_epoch + 1} epoch(s): "
              f"{train_set.n_samples} training / {val_set.n_samples} test videos, "
              f"results in {folder}")

    def validate(epoch):
        """Evaluate the model trained for ``epoch`` epochs; log the result and write it
        into save_<epoch>.npz (and best.npz when it is the best so far)."""
        nonlocal best_acc
        val = evaluate(model, val_set, criterion, desc=f"epoch {epoch} val", progress=main_rank)
        best = val.accuracy > best_acc
        best_acc = max(best_acc, val.accuracy)
        if main_rank:
            experiment.log({"epoch": epoch, "split": "val", "loss": val.loss,
                            "acc": val.accuracy})
            meta = checkpoint_meta(epoch, args, classes, best_acc=best_acc,
                                   val_acc=val.accuracy, evaluated=True)
            experiment.save(epoch, model, optimizer, meta, best=best)
            plot_curves(experiment.metrics_path, os.path.join(folder, "curves.png"))
        return val, best

    # The checkpoint to resume from after a failure: the latest one written (or read).
    last_checkpoint = resume_file
    resume_flags = "" if opt.expr_name or folder == opt.resume_path else f" --expr_name {expr_name}"
    if unevaluated:
        try:
            val, best = validate(begin_epoch - 1)
        except SampleError as e:
            return data_error(e, opt, begin_epoch - 1, "evaluation", last_checkpoint,
                              resume_flags)
        if main_rank:
            print(f"epoch {begin_epoch - 1}/{opt.n_epochs} val loss {val.loss:.4f} acc "
                  f"{val.accuracy:.3f}{'  (best)' if best else ''}", flush=True)
    for epoch in range(begin_epoch, opt.n_epochs + 1):
        train_set.set_epoch(epoch)
        try:
            tr = train_epoch(epoch, train_set, model, criterion, optimizer, progress=main_rank,
                             on_batch=experiment.log_batch if main_rank else None)
        except NonFiniteLossError as e:
            if main_rank:
                kept = last_checkpoint or "none: no epoch had finished"
                print(f"main.py: {e}. Training stopped; the last good checkpoint is {kept}. "
                      f"Try a lower --learning_rate.", file=sys.stderr)
            return 1
        except SampleError as e:
            return data_error(e, opt, epoch, "training", last_checkpoint, resume_flags)
        tr = distributed.average_metrics(tr)
        # The epoch's training is saved before its evaluation, which may fail on bad data.
        if main_rank:
            experiment.log({"epoch": epoch, "split": "train", "loss": tr["loss"],
                            "acc": tr["acc"], "time": tr["time"], "lr": opt.learning_rate})
            meta = checkpoint_meta(epoch, args, classes, best_acc=best_acc,
                                   val_acc=None, evaluated=False)
            experiment.save(epoch, model, optimizer, meta)
        last_checkpoint = checkpoint_path(folder, epoch)
        distributed.barrier()  # it is on disk before any rank can fail in the evaluation
        try:
            val, best = validate(epoch)
        except SampleError as e:
            return data_error(e, opt, epoch, "evaluation", last_checkpoint, resume_flags)
        if main_rank:
            print(f"epoch {epoch}/{opt.n_epochs} {tr['time']:.0f}s  train loss {tr['loss']:.4f} "
                  f"acc {tr['acc']:.3f} | val loss {val.loss:.4f} acc {val.accuracy:.3f}"
                  f"{'  (best)' if best else ''}", flush=True)
    if main_rank:
        experiment.close()
        print(f"done: best validation accuracy {best_acc:.3f}; checkpoints in {folder}")
    return 0


if __name__ == "__main__":
    from core import entry
    sys.exit(entry.run(main))
