"""The loss that the teacher sets, as pure functions of the student's outputs (paper section 4.2)."""

import torch
import torch.nn.functional as F

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
    keep = target.ne(padding_idx)
    # gather before masking: masking lprobs first would copy a tokens x |V| matrix (and scatter it back in the
    # backward pass), a third of a toy student's step
    target_lprobs = lprobs.reshape(-1, lprobs.size(-1)).gather(-1, target.unsqueeze(-1)).squeeze(-1)[keep]
    coefficients = phi.to(target_lprobs.dtype)[target[keep]]
    if coefficient_mean is not None:
        coefficients = coefficients * (coefficient_mean / coefficients.mean())
    loss = -torch.sigmoid(coefficients * target_lprobs).sum()
    return loss, -target_lprobs.sum()
