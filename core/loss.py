"""Losses: PCCE (polarity-consistent cross-entropy) and plain cross-entropy, as in the
release (docs/release.md, "The loss").

    criterion = get_loss(opt)          # opt.loss_func in {'pcce_ve8', 'ce'}
    loss = criterion(logits, target)   # scalar

PCCE needs the polarity of every class: ``opt.class_names`` and ``opt.positive_classes``
(names), which ``opts.parse_opts`` fills from the dataset table and main.py from the
annotation.
"""
import numpy as np

from core.classes import Classes
from core.jittor_setup import jt


def positive_mask(opt):
    """Boolean array over ``opt.class_names``: True where the class is positive."""
    names = getattr(opt, "class_names", None)
    positive = getattr(opt, "positive_classes", None)
    if names is None or positive is None:
        raise ValueError("the PCCE loss needs the polarity of every class, and the classes of "
                         f"{getattr(opt, 'dataset', 'this dataset')!r} have none: prepare the "
                         "dataset with --positive_classes A,B,... or use --loss_func ce")
    if len(names) != opt.n_classes:
        raise ValueError(f"{len(names)} class names for a model of {opt.n_classes} classes")
    return Classes(tuple(names), tuple(positive)).positive_mask()


def cross_entropy_per_sample(logits, target):
    m = logits.max(dim=1, keepdims=True).stop_grad()
    lse = (logits - m).exp().sum(dim=1).log() + m[:, 0]
    picked = (logits * jt.nn.one_hot(target, logits.shape[1])).sum(dim=1)
    return lse - picked


class CELoss:
    def __call__(self, logits, target):
        return cross_entropy_per_sample(logits, target).mean()


class PCCELoss:
    """Cross-entropy weighted by 1 + lambda_0 where argmax and target differ in polarity."""

    def __init__(self, positive_mask, lambda_0=0.5):
        self.positive = jt.array(positive_mask.astype(np.float32)).stop_grad()
        self.lambda_0 = lambda_0

    def __call__(self, logits, target):
        pred = jt.argmax(logits, dim=1)[0]
        flipped = (self.positive[pred] != self.positive[target]).float32().stop_grad()
        return (cross_entropy_per_sample(logits, target) * (1.0 + self.lambda_0 * flipped)).mean()


def get_loss(opt):
    if opt.loss_func == "ce":
        return CELoss()
    if opt.loss_func == "pcce_ve8":
        return PCCELoss(positive_mask(opt), getattr(opt, "lambda_0", 0.5))
    raise ValueError(f"unknown --loss_func {opt.loss_func!r}; expected 'pcce_ve8' or 'ce'")
