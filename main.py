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

A run that stops early says why in a few lines, names the last complete checkpoint and
prints the command that resumes from it (``--debug`` adds the traceback):

- a sample that cannot be read (a damaged frame or mp3): the video, the file, the cause;
  exit status 1. An error in an evaluation keeps that epoch's training, one in a training
  phase loses that epoch only;
- a file that cannot be written (a full disk, a quota, a read-only or foreign folder):
  the file, the cause, the free space; exit status 1. Every file is written atomically,
  so what was written before stays complete;
- Ctrl-C (SIGINT) or SIGTERM: the run stops within a batch, exit status 130 or 143; the
  epoch in progress is dropped (its training is redone on resume, exactly; an epoch whose
  training was saved is evaluated on resume);
- under mpirun, a rank that dies (killed, out of memory) ends the whole job within
  seconds (``core.watchdog``).

Before anything long starts, a results folder that cannot be written, has less free space
than two checkpoints of the model, or is in use by another run refuses the run (exit 2).
"""
import os
import shlex
import sys
import time

from core import entry
from core.entry import UsageError
from opts import build_parser, finalize_opts, set_classes


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


def preflight(args, opt):
    """``(classes, checkpoint, its path)`` of a run whose dataset and resume checkpoint
    fit together (checkpoint None without --resume_path); UsageError otherwise. Runs before
    Jittor starts: the classes decide the model and the loss."""
    from core.checkpoint import CheckpointError, read_checkpoint_file
    from datasets.catalog import AnnotationError, dataset_classes
    from model import check_classes
    try:
        classes = dataset_classes(opt)
    except AnnotationError as e:
        raise UsageError(str(e)) from None
    problem = class_problem(classes, args, opt)
    if problem:
        raise UsageError(f"the dataset under {opt.root_path} is not usable: {problem}")
    ckpt, resume_file = None, None
    if opt.resume_path:
        try:
            resume_file = resolve_resume(opt.resume_path)
            ckpt = read_checkpoint_file(resume_file)
        except (CheckpointError, OSError) as e:
            raise UsageError(f"cannot resume from {opt.resume_path}: {e}") from None
        check_classes(ckpt, resume_file, classes, opt.annotation_path)
    return classes, ckpt, resume_file


def resume_command(argv, opt, folder, checkpoint, n_processes):
    """The command that continues this run from ``checkpoint`` in ``folder``: the options
    as given, with ``--resume_path`` (and, where the folder's name was not given, the
    ``--expr_name`` that finds it again)."""
    kept, skip = [], False
    for a in argv:
        if skip or a.startswith("--resume_path="):
            skip = False
            continue
        skip = a == "--resume_path"
        if not skip:
            kept.append(a)
    folder = os.path.normpath(folder)
    if opt.expr_name:
        kept += ["--resume_path", checkpoint]
    elif os.path.dirname(folder) == os.path.normpath(opt.result_path):
        kept += ["--expr_name", os.path.basename(folder), "--resume_path", checkpoint]
    else:  # a folder given as --resume_path, outside --result_path: its latest checkpoint
        kept += ["--resume_path", folder]
    launcher = ["mpirun", "-np", str(n_processes)] if n_processes > 1 else []
    return shlex.join(launcher + ["python", "main.py"] + kept)


def _capitalized(text):
    return text[:1].upper() + text[1:]


class Training:
    """One run of main.py once its options are checked and Jittor runs: ``start`` builds
    the loaders, the experiment folder, the model and the optimizer (restored from the
    checkpoint), ``run`` trains the epochs and reports any early stop."""

    def __init__(self, argv, args, opt, classes):
        from core import distributed
        self.argv, self.args, self.opt, self.classes = argv, args, opt, classes
        self.main_rank = distributed.is_main_process()
        self.n_processes = distributed.world_size()
        self.experiment = None
        self.last_checkpoint = None  # the latest complete checkpoint written (or read)
        self.epoch, self.phase = None, "start"
        self.begin_epoch, self.best_acc, self.unevaluated = opt.begin_epoch, 0.0, False

    # ---- start -----------------------------------------------------------------------
    def start(self, ckpt, resume_file):
        """Everything before the first epoch; UsageError when the run cannot start."""
        from core.jittor_setup import jt
        from core import distributed, watchdog
        from core.atomic_file import WriteError
        from core.loss import get_loss
        from core.optimizer import release_adam
        from core.tensorboard import TensorBoardMissing
        from model import generate_model, load_pretrained_model
        opt = self.opt
        if self.n_processes > 1 and opt.batch_size % self.n_processes:
            raise UsageError(f"--batch_size {opt.batch_size} (the global batch) must be a "
                             f"multiple of the number of processes ({self.n_processes})")
        jt.set_global_seed(opt.manual_seed)
        self.make_loaders()
        self.open_folder()
        self.model = load_pretrained_model(generate_model(opt), opt)
        self.criterion = get_loss(opt)
        self.optimizer = release_adam(self.model, opt.learning_rate, opt.weight_decay)
        self.check_space()
        if ckpt is not None:
            self.restore(ckpt, resume_file)
        # Every rank starts from rank 0's weights (frozen ones and buffers included).
        distributed.broadcast_model(self.model)
        if self.main_rank:
            try:
                self.experiment.start(vars(opt))
                self.experiment.drop_metrics_after(self.begin_epoch - 1)
            except WriteError as e:
                raise UsageError(entry.write_error_text(e)) from None
            except TensorBoardMissing as e:
                raise UsageError(str(e)) from None
            print(f"training {opt.n_epochs - self.begin_epoch + 1} epoch(s): "
                  f"{self.train_set.n_samples} training / {self.val_set.n_samples} test "
                  f"videos, results in {self.folder}")
        distributed.watch_ranks(self.folder, resume_command(
            self.argv, opt, self.folder, watchdog.PLACEHOLDER, self.n_processes))

    def make_loaders(self):
        from datasets.factory import get_training_set, get_validation_set, make_loader
        from datasets.ve8 import DatasetError
        opt = self.opt
        try:
            self.train_set = make_loader(get_training_set(opt), opt, shuffle=True)
            self.val_set = make_loader(get_validation_set(opt), opt, shuffle=False)
        except DatasetError as e:
            raise UsageError(f"the dataset under {opt.root_path} is not usable:\n{e}") from None

    def open_folder(self):
        """Name the experiment folder (rank 0's clock for a default name); on rank 0 lock
        it, refusing one that holds another experiment, another run or cannot be written."""
        from core import distributed
        from core.atomic_file import WriteError
        from core.experiment import Experiment, ExperimentExistsError
        opt = self.opt
        started = distributed.all_reduce_sum([time.time() if self.main_rank else 0.0])[0]
        name = opt.expr_name or f"{opt.dataset}_{time.strftime('%Y%m%d-%H%M%S', time.localtime(started))}"
        self.folder = os.path.join(opt.result_path, name)
        if opt.resume_path and os.path.isdir(opt.resume_path) and not opt.expr_name:
            self.folder = opt.resume_path
        if self.main_rank:
            try:
                self.experiment = Experiment(self.folder, resume=bool(opt.resume_path),
                                             tensorboard=opt.tensorboard)
            except ExperimentExistsError as e:
                raise UsageError(str(e)) from None
            except WriteError as e:
                raise UsageError(entry.write_error_text(e)) from None

    def check_space(self):
        from core.experiment import ExperimentExistsError, checkpoint_size
        if self.main_rank:
            try:
                self.experiment.check_space(2 * checkpoint_size(self.model))
            except ExperimentExistsError as e:
                raise UsageError(str(e)) from None

    def restore(self, ckpt, resume_file):
        from core.checkpoint import load_weights
        load_weights(self.model, ckpt["state_dict"])
        if ckpt.get("optimizer"):
            self.optimizer.load_state_dict(ckpt["optimizer"])
        meta = ckpt.get("meta") or {}
        self.begin_epoch = int(meta.get("epoch", self.begin_epoch))  # the release: epoch + 1
        self.best_acc = float(meta.get("best_acc", 0.0))
        self.unevaluated = meta.get("evaluated") is False  # its evaluation did not finish
        self.last_checkpoint = resume_file
        if self.main_rank:
            print(f"resumed from {resume_file}, saved after epoch {self.begin_epoch - 1}: "
                  + (f"evaluating epoch {self.begin_epoch - 1}, then " if self.unevaluated
                     else "") + f"continuing at epoch {self.begin_epoch}")

    # ---- the epochs --------------------------------------------------------------------
    def validate(self, epoch):
        """Evaluate the model trained for ``epoch`` epochs; log the result, write it into
        save_<epoch>.npz (and best.npz when it is the best so far) and print it."""
        from core.evaluate import evaluate
        from core.report import plot_curves
        from model import checkpoint_meta
        self.epoch, self.phase = epoch, "evaluation"
        val = evaluate(self.model, self.val_set, self.criterion, desc=f"epoch {epoch} val",
                       progress=self.main_rank)
        best = val.accuracy > self.best_acc
        self.best_acc = max(self.best_acc, val.accuracy)
        if self.main_rank:
            self.experiment.log({"epoch": epoch, "split": "val", "loss": val.loss,
                                 "acc": val.accuracy})
            meta = checkpoint_meta(epoch, self.args, self.classes, best_acc=self.best_acc,
                                   val_acc=val.accuracy, evaluated=True)
            self.experiment.save(epoch, self.model, self.optimizer, meta, best=best)
            plot_curves(self.experiment.metrics_path, os.path.join(self.folder, "curves.png"))
            print(f"epoch {epoch}/{self.opt.n_epochs} {self.train_summary}val loss "
                  f"{val.loss:.4f} acc {val.accuracy:.3f}{'  (best)' if best else ''}",
                  flush=True)

    def train(self, epoch):
        """Train epoch ``epoch`` and save it (save_<epoch>.npz, not yet evaluated)."""
        from core import distributed
        from core.experiment import checkpoint_path
        from core.stopping import deferred
        from core.train import train_epoch
        from model import checkpoint_meta
        self.epoch, self.phase = epoch, "training"
        self.train_set.set_epoch(epoch)
        tr = train_epoch(epoch, self.train_set, self.model, self.criterion, self.optimizer,
                         progress=self.main_rank,
                         on_batch=self.experiment.log_batch if self.main_rank else None)
        tr = distributed.average_metrics(tr)
        # The epoch's training is saved before its evaluation, which may fail on bad data;
        # a stop signal waits until the file and the record of it agree.
        with deferred():
            if self.main_rank:
                self.experiment.log({"epoch": epoch, "split": "train", "loss": tr["loss"],
                                     "acc": tr["acc"], "time": tr["time"],
                                     "lr": self.opt.learning_rate})
                meta = checkpoint_meta(epoch, self.args, self.classes,
                                       best_acc=self.best_acc, val_acc=None, evaluated=False)
                self.experiment.save(epoch, self.model, self.optimizer, meta)
            self.last_checkpoint = checkpoint_path(self.folder, epoch)
            self.phase = "evaluation"  # what is left of the epoch
        self.train_summary = (f"{tr['time']:.0f}s  train loss {tr['loss']:.4f} "
                              f"acc {tr['acc']:.3f} | ")
        distributed.barrier()  # it is on disk before any rank can fail in the evaluation

    def run(self):
        """Train (and evaluate) the remaining epochs; the exit status."""
        from core import stopping
        from core.atomic_file import WriteError
        from core.stopping import Interrupted
        from core.train import NonFiniteLossError
        from datasets.errors import SampleError
        try:
            if self.unevaluated:
                self.train_summary = ""
                self.validate(self.begin_epoch - 1)
            for epoch in range(self.begin_epoch, self.opt.n_epochs + 1):
                self.train(epoch)
                if epoch < self.opt.n_epochs:  # its first batches load during the evaluation
                    self.train_set.set_epoch(epoch + 1).start_pass()
                self.validate(epoch)
        except NonFiniteLossError as e:
            if self.main_rank:
                kept = self.last_checkpoint or "none: no epoch had finished"
                print(f"main.py: {e}. Training stopped; the last good checkpoint is {kept}. "
                      f"Try a lower --learning_rate.", file=sys.stderr)
            return 1
        except SampleError as e:
            raise self.data_error(e) from None
        except WriteError as e:
            if self.opt.debug:
                raise
            return self.stopped([f"main.py: {e}."], e.remedy)
        except (Interrupted, Exception) as e:
            # an error after a stop signal (a kernel compile it cut short) is that stop
            stop = e if isinstance(e, Interrupted) else stopping.underway()
            if stop is None:
                raise
            return self.stopped([f"main.py: stopped by {stop.name}."], status=stop.status)
        if self.main_rank:
            print(f"done: best validation accuracy {self.best_acc:.3f}; checkpoints in "
                  f"{self.folder}")
        return 0

    # ---- early stops -----------------------------------------------------------------
    def stopped(self, lines, todo=None, status=1):
        """Report (on rank 0) a run that stops in the epoch in progress: ``lines``, what
        became of that epoch, the last complete checkpoint and the command that resumes
        from it (after ``todo``, e.g. "Free some space there"); returns ``status``."""
        from core import distributed
        if self.main_rank:
            distributed.report("\n".join([*lines, *self.resume_advice(todo)]))
        return status

    def resume_advice(self, todo):
        """What became of the epoch in progress and how to go on, as lines."""
        n, ckpt = self.epoch, self.last_checkpoint
        if self.phase == "evaluation":
            lines = [f"Epoch {n}'s training is saved in {ckpt}."]
        elif ckpt:
            lines = [f"Epoch {n}'s training is lost; the last checkpoint is {ckpt}."]
        else:
            lines = [f"Epoch {n}'s training is lost, and no earlier epoch had finished."]
        then = f"{todo}, then " if todo else ""
        if not ckpt:
            return lines + [_capitalized(f"{then}start again (in a new --expr_name, or "
                                         f"once {self.folder} is removed).")]
        first = f" (it evaluates epoch {n} first)" if self.phase == "evaluation" else ""
        command = resume_command(self.argv, self.opt, self.folder, ckpt, self.n_processes)
        return lines + [_capitalized(f"{then}resume with{first}:"), f"    {command}"]

    def data_error(self, error):
        """A sample that cannot be read (``datasets.errors.SampleError``), with the
        checkpoint to resume from, as ``entry.RunFailed`` (reported by the rank that met it)."""
        from datasets.errors import check_hint
        lines = ([f"main.py: cannot read a sample during epoch {self.epoch}'s {self.phase}:"]
                 + error.lines() + self.resume_advice("Repair the file")
                 + [check_hint(self.opt.root_path, self.opt.dataset)])
        return entry.unreadable_sample(error, self.opt.debug, lines)

    def close(self):
        if self.experiment is not None:
            self.experiment.close()


def run(argv):
    """Check, then train; the run's exit status (UsageError: it cannot start)."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    args = build_parser().parse_args(argv)
    opt = finalize_opts(args)
    classes, ckpt, resume_file = preflight(args, opt)
    opt.n_classes = len(classes)
    set_classes(opt, classes)  # the annotation's classes, for the loss and the checkpoint
    entry.choose_device(opt.no_cuda)
    from core import distributed  # starts Jittor, whose SIGINT handler is replaced next
    from core.stopping import Interrupted, stop_on_signals
    with stop_on_signals(on_signal=distributed.say_ending):
        training = Training(argv, args, opt, classes)
        try:
            training.start(ckpt, resume_file)
            return training.run()
        except Interrupted as e:
            print(f"main.py: stopped by {e.name} before the first epoch; nothing to resume.",
                  file=sys.stderr)
            return e.status
        finally:
            training.close()


def main(argv=None):
    return entry.exit_status("main.py", run, argv)


if __name__ == "__main__":
    sys.exit(entry.run(main))
