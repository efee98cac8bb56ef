"""Losses: PCCE (polarity-consistent cross-entropy) and plain cross-entropy (SPEC section 4).

    criterion = get_loss(opt)          # opt.loss_func in {'pcce_ve8', 'ce'}, opt.dataset
    loss = criterion(logits, target)   # scalar
"""
import numpy as np

from core.jittor_setup import jt

# Class indices of positive emotions; every other class is negative (SPEC section 1).
POSITIVE_CLASSES = {
    "ve8": (1, 4, 6, 7),   # Anticipation, Joy, Surprise, Trust
    "ek6": (3, 5),         # joy, surprise
}


def polarity_mask(dataset, n_classes):
    """Boolean array: True where class i is positive."""
    if dataset not in POSITIVE_CLASSES:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(POSITIVE_CLASSES)}")
    mask = np.zeros(n_classes, dtype=bool)
    mask[list(POSITIVE_CLASSES[dataset])] = True
    return mask


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
        dataset = getattr(opt, "dataset", "ve8")
        return PCCELoss(polarity_mask(dataset, opt.n_classes), getattr(opt, "lambda_0", 0.5))
    raise ValueError(f"unknown --loss_func {opt.loss_func!r}; expected 'pcce_ve8' or 'ce'")
