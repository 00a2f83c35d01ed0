"""The student's update rule as the unroll replays it (the inner step of eq. 1).

One family covers both choices of ``--unroll-optimizer``::

    m'     = beta * m + (1 - beta) * g          (beta = 0: m' = g)
    omega' = decay * omega - lr * P * m'

- ``sgd``: the paper's eq. (1): ``P = 1``, ``beta = 0``, ``decay = 1``, ``lr =
  --unroll-lr``.
- ``adam``: the steps the student really takes under fairseq's Adam, with
  Adam's second moment frozen over the U steps: ``P = 1 / (sqrt(v) + eps)``
  from fairseq's optimizer state, ``lr`` the scheduler's current learning rate
  times Adam's bias corrections, and fairseq's decoupled weight decay
  (``decay = 1 - weight_decay * lr``).  The first moment ``m`` is carried too
  (``beta = beta1``, starting from Adam's ``exp_avg``); with
  ``--no-unroll-momentum`` the step uses the fresh gradient (``beta = 0``).
- ``auto`` (the default): ``adam`` if the student is trained with fairseq's
  Adam, ``sgd`` otherwise.

Everything here is a constant of the unroll: the hypergradient differentiates
through ``g`` only (``l2t_fairseq.hypergrad``).
"""

import math
from dataclasses import dataclass
from typing import Dict, Optional

import torch

from l2t_fairseq.errors import UsageError
from l2t_fairseq.student import master_weights, split_like_optimizer

UNROLL_OPTIMIZERS = ("auto", "sgd", "adam")


@dataclass
class UpdateRule:
    lr: float
    preconditioner: Optional[Dict[str, torch.Tensor]] = None  # P by parameter name; None: 1
    momentum: float = 0.0  # beta
    velocity: Optional[Dict[str, torch.Tensor]] = None  # m_0 (with momentum)
    decay: float = 1.0

    def precondition(self, name, tensor):
        return tensor if self.preconditioner is None else tensor * self.preconditioner[name]


def is_adam(optimizer):
    """Whether fairseq's ``optimizer`` (or the one inside its FP16Optimizer) is Adam."""
    return "betas" in optimizer.optimizer.param_groups[0]


def student_rule(model, optimizer, choice, sgd_lr, momentum=True):
    """The update rule of ``--unroll-optimizer choice`` for the student's current optimizer state."""
    if choice == "adam" or (choice == "auto" and is_adam(optimizer)):
        return adam_rule(model, optimizer, momentum)
    return UpdateRule(lr=sgd_lr)


def adam_rule(model, optimizer, momentum=False):
    """The Adam step fairseq's optimizer would take now, with its moments frozen (see the module docstring)."""
    torch_optimizer = optimizer.optimizer  # FP16Optimizer: the one stepping the fp32 master weights
    group = torch_optimizer.param_groups[0]
    if not is_adam(optimizer):
        raise UsageError(f"--unroll-optimizer adam needs fairseq's --optimizer adam, got {type(optimizer).__name__}")
    master = master_weights(optimizer)
    keys = group["params"] if master is None else master

    def state(key):
        try:
            tensors = [torch_optimizer.state[p][key] for p in keys]
        except KeyError:
            return None  # no step taken yet
        return split_like_optimizer(model, tensors)

    second_moment = state("exp_avg_sq")
    if second_moment is None:
        return UpdateRule(lr=0.0)
    (beta1, beta2), eps = group["betas"], group["eps"]
    steps = int(torch_optimizer.state[keys[0]]["step"]) + 1  # the next step's bias corrections
    lr = optimizer.get_lr() * math.sqrt(1 - beta2**steps)
    if momentum:
        lr /= 1 - beta1**steps
    return UpdateRule(
        lr=lr,
        preconditioner={name: 1 / (v.sqrt() + eps) for name, v in second_moment.items()},
        momentum=beta1 if momentum else 0.0,
        velocity=state("exp_avg") if momentum else None,
        decay=1 - group.get("weight_decay", 0.0) * optimizer.get_lr(),
    )
