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

from l2t_fairseq.errors import UsageError
from l2t_fairseq.unroll.loss import log_probs


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


def split_like_optimizer(model, tensors):
    """Per-parameter views, by name, of tensors in the trainer's optimizer order.

    ``tensors`` is one tensor per trainable parameter of the model (then
    possibly the criterion's), or a single flat buffer holding them all one
    after the other, as fairseq's ``FP16Optimizer`` keeps its fp32 copies.
    """
    params = trainable_params(model)
    if len(tensors) == 1 and len(params) > 1:
        sizes = [p.numel() for p in params.values()]
        tensors = tensors[0][: sum(sizes)].split(sizes)
    return {name: t.view(p.shape) for (name, p), t in zip(params.items(), tensors)}


def master_weights(optimizer):
    """fairseq ``FP16Optimizer``'s fp32 master weights, as a list in the trainer's parameter order (one flat
    buffer, or one tensor per parameter with ``--fp16-no-flatten-grads``); ``None`` for an optimizer that steps
    the model's own weights."""
    master = getattr(optimizer, "fp32_params", None)
    if isinstance(master, dict):  # flattened: {device: one flat buffer}
        if len(master) != 1:
            raise UsageError(
                "--pipeline-model-parallel with --fp16/--bf16: the teacher needs the student on one device"
            )
        return list(master.values())
    return master


def fp32_params(model, optimizer):
    """The student's trainable weights in fp32, detached: ``omega_0`` of the unroll.

    Under ``--fp16``/``--bf16`` the model holds half-precision weights and
    fairseq's ``FP16Optimizer`` the fp32 master weights (``fp32_params``: one
    flat buffer, or one tensor per parameter with ``--fp16-no-flatten-grads``,
    in the order of the trainer's parameter list: the model's trainable
    parameters, then the criterion's).  The unroll starts from a *copy* of
    them: the optimizer updates that buffer in place.
    """
    master = master_weights(optimizer)
    if master is None:
        return {name: p.detach() for name, p in trainable_params(model).items()}
    return {name: t.detach().clone() for name, t in split_like_optimizer(model, master).items()}


def functional_log_probs(model, params, sample):
    return log_probs(functional_call(model, params, kwargs=sample["net_input"]))


def make_step_loss(model, loss, sample_size=lambda sample: sample["ntokens"]):
    """``step_loss(params, phi, (samples, seed))``: the loss of one student update, eq. (1), as the trainer
    takes it.

    ``loss`` is the criterion's :class:`l2t_fairseq.unroll.loss.StudentLoss` and
    ``sample_size`` its normalizer (tokens, or sentences with
    ``--sentence-avg``).  An update is the list of its micro-batches
    (``--update-freq``): fairseq sums their losses and divides the gradient by
    their total sample size.  Dropout masks come from ``seed``, set once per
    update as fairseq's trainer does, so the replay and the reverse loop's
    recomputation see exactly the student's masks; the global RNG is left as
    it was.
    """

    def step_loss(params, phi, batch):
        samples, seed = batch
        total = 0.0
        with utils.set_torch_seed(seed):
            for sample in samples:
                total = total + loss(functional_log_probs(model, params, sample), sample["target"], phi)[0]
        return total / sum(sample_size(sample) for sample in samples)

    return step_loss
