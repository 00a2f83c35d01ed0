"""The loss that the teacher sets, as pure functions of the student's outputs (paper section 4.2)."""

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

PHI_NORMALIZATIONS = ("none", "token_mean")
LOSS_SCALES = ("cross_entropy", "paper")


def log_probs(net_output):
    """``log p(. | x, y_<r)``, in at least fp32 (fairseq casts fp64 down; tests need fp64)."""
    logits = net_output[0]
    low_precision = logits.dtype in (torch.float16, torch.bfloat16)
    return F.log_softmax(logits, dim=-1, dtype=torch.float32 if low_precision else None)


def dynamic_loss(lprobs, target, phi, padding_idx, coefficient_mean=None):
    """``-sum_r sigmoid(Phi[y_r] * log p(y_r | x, y_<r))`` over non-pad tokens.

    This is ``l_Phi = -sum_r sigma(y_r . diag(Phi) log p)`` of section 4.2:
    with a one-hot ``y_r`` the diagonal form picks one coefficient per target
    word.  With ``coefficient_mean`` the coefficients of the batch's tokens
    are rescaled to that mean (``--phi-normalization token_mean``): the
    teacher then sets only the words' *relative* weights, and the loss's
    overall scale, which a short unroll pushes toward zero, is fixed.
    Returns the summed loss and the summed negative log-likelihood.
    """
    target = target.reshape(-1)
    # padding weighs 0 rather than being indexed out: a boolean index would wait for the device at every step
    keep = target.ne(padding_idx).to(lprobs.dtype)
    # gather, not mask, lprobs: masking would copy a tokens x |V| matrix (and scatter it back in the backward pass)
    target_lprobs = lprobs.reshape(-1, lprobs.size(-1)).gather(-1, target.unsqueeze(-1)).squeeze(-1)
    coefficients = phi.to(target_lprobs.dtype)[target]
    if coefficient_mean is not None:
        coefficients = coefficients * (coefficient_mean * keep.sum() / (coefficients * keep).sum())
    loss = -(torch.sigmoid(coefficients * target_lprobs) * keep).sum()
    return loss, -(target_lprobs * keep).sum()


@dataclass(frozen=True)
class StudentLoss:
    """The student's training loss, one definition for the criterion's step and the teacher's unroll.

    ``lambda * NLL + (1 - lambda) * l_Phi`` summed over the batch's tokens
    (``nll_weight`` = lambda, 0 by default: the paper's loss alone; the
    authors' code mixes 0.5 in its last phase).  With ``scale`` s, ``l_Phi``
    is ``s * (1/2 - sigmoid(Phi log p))`` per token: the paper's loss times a
    constant, shifted to 0 where ``p = 1``.  ``s = 4 ln |V|`` (``--loss-scale
    cross_entropy``) gives a coefficient of ``1 / ln |V|`` (where every
    coefficient starts) a gradient ``-4 sigmoid'(log p / ln |V|)`` in log p,
    between 0.79 and 1 times cross-entropy's, so a learning rate tuned for
    cross-entropy fits; ``s = None`` is the paper's ``-sigmoid(Phi log p)``.
    Returns the summed loss and the summed negative log-likelihood.
    """

    padding_idx: int
    coefficient_mean: Optional[float] = None  # --phi-normalization token_mean: the mean the batch is rescaled to
    nll_weight: float = 0.0
    scale: Optional[float] = None

    def __call__(self, lprobs, target, phi):
        loss, nll = dynamic_loss(lprobs, target, phi, self.padding_idx, self.coefficient_mean)
        if self.scale is not None:
            loss = self.scale * (loss + 0.5 * target.ne(self.padding_idx).sum())
        if self.nll_weight:
            loss = self.nll_weight * nll + (1 - self.nll_weight) * loss
        return loss, nll
