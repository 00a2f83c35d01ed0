"""The student as a pure function of its parameters, for the teacher's unroll.

``torch.func.functional_call`` runs any fairseq model with an explicit
parameter dict, so the same model object serves the ordinary student steps
and the differentiable SGD steps of the unroll.
"""

import contextlib

import torch
from fairseq import utils
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from l2t_fairseq.loss import dynamic_loss, log_probs


@contextlib.contextmanager
def double_backward_safe(device_type):
    """Kernels that support the second derivative of the student's loss.

    Hessian-vector products differentiate a gradient; PyTorch's fused
    attention kernels and cuDNN's RNNs have no double backward, so force the
    math attention path and native RNNs.  Autocast is off: the unroll runs in
    fp32 (or whatever dtype the parameters have).
    """
    with sdpa_kernel(SDPBackend.MATH), torch.backends.cudnn.flags(enabled=False), torch.autocast(
        device_type, enabled=False
    ):
        yield


@contextlib.contextmanager
def evaluation(model):
    """Dropout off for measuring the student, restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def trainable_params(model):
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def functional_log_probs(model, params, sample):
    return log_probs(functional_call(model, params, kwargs=sample["net_input"]))


def make_step_loss(model, padding_idx):
    """``step_loss(params, phi, (sample, seed))``: the per-token L2T-DLF loss of eq. (1).

    Dropout masks come from ``seed``, so the reverse loop's recomputation of a
    step sees exactly the masks of the forward unroll; the global RNG is left
    as it was.
    """

    def step_loss(params, phi, batch):
        sample, seed = batch
        with utils.set_torch_seed(seed):
            lprobs = functional_log_probs(model, params, sample)
        loss, _ = dynamic_loss(lprobs, sample["target"], phi, padding_idx)
        return loss / sample["ntokens"]

    return step_loss
