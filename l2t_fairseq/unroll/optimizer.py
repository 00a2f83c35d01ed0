"""The student's update rule as the unroll replays it (the inner step of eq. 1).

One family covers every choice of ``--unroll-optimizer``::

    g'     = clip(g) + l2 * omega                 (fairseq's --clip-norm; SGD's coupled weight decay)
    m'     = beta * m + (1 - beta) * g'           (beta = 0: m' = g')
    v'     = beta2 * v + (1 - beta2) * g'^2       (Adam only)
    omega' = decay * omega - lr * P * m'          (P = 1 / (sqrt(v') + eps); without v, P = 1)

- ``sgd``: the paper's eq. (1), ``P = 1``.  For a student trained with
  fairseq's ``--optimizer sgd`` this is its own step: the scheduler's current
  learning rate, its momentum (``beta``, with ``lr / (1 - beta)`` and the
  momentum buffer as ``m / (1 - beta)``: torch's ``buf = beta buf + g'``) and
  its weight decay (``l2``).  For another student, plain SGD at the student's
  current learning rate, or ``--unroll-lr``.
- ``adam``: the steps the student really takes under fairseq's Adam: both
  moments start from fairseq's optimizer state (``exp_avg``, ``exp_avg_sq``)
  and follow the replayed gradients, ``lr`` is the scheduler's learning rate
  times Adam's bias corrections at each step, and the weight decay is
  fairseq's decoupled one (``decay = 1 - weight_decay * lr``).  With
  ``--no-unroll-momentum`` the step uses the fresh gradient instead of ``m``
  (``beta = 0``), an approximation of the student's step.
- ``auto`` (the default): ``adam`` for a student trained with fairseq's Adam,
  ``sgd`` for one trained with its SGD; any other optimizer is refused.

``clip`` is fairseq's ``--clip-norm``, ``g * min(1, c / (|g| + 1e-6))``, and it
is differentiated (:mod:`l2t_fairseq.unroll.hypergrad`).  Everything else here is a
constant of the unroll: the hypergradient differentiates through ``g`` and
the moments it enters, ``m`` and ``v``.
"""

import dataclasses
import math
from dataclasses import dataclass
from typing import Dict, NamedTuple, Optional, Sequence, Union

import torch

from l2t_fairseq.errors import UsageError
from l2t_fairseq.unroll.student import fp32_params, master_weights, split_like_optimizer

UNROLL_OPTIMIZERS = ("auto", "sgd", "adam")


class Moments(NamedTuple):
    """What the unroll carries from one step to the next besides the weights: the first moment ``m`` (with
    momentum) and Adam's second moment ``v``, by parameter name; None where the rule has none."""

    first: Optional[Dict[str, torch.Tensor]] = None
    second: Optional[Dict[str, torch.Tensor]] = None

    def detached(self):
        return Moments(*(None if m is None else {n: t.detach() for n, t in m.items()} for m in self))

    def cloned(self):
        return Moments(*(None if m is None else {n: t.clone() for n, t in m.items()} for m in self))


@dataclass
class UpdateRule:
    lr: Union[float, Sequence[float]]  # one for every step, or one per step
    momentum: float = 0.0  # beta
    velocity: Optional[Dict[str, torch.Tensor]] = None  # m_0 (with momentum)
    second_moment: Optional[Dict[str, torch.Tensor]] = None  # Adam's v_0; None: P = 1
    beta2: float = 0.999  # Adam's
    eps: float = 1e-8  # Adam's
    decay: Union[float, Sequence[float]] = 1.0  # one for every step, or one per step
    l2: float = 0.0  # coupled weight decay (torch's SGD)
    clip_norm: float = 0.0  # fairseq's --clip-norm; 0: none

    def at(self, t):
        """The rule of step ``t``: its own learning rate and decay where they are given per step."""
        if isinstance(self.lr, (int, float)) and isinstance(self.decay, (int, float)):
            return self
        return dataclasses.replace(
            self,
            lr=self.lr if isinstance(self.lr, (int, float)) else self.lr[t],
            decay=self.decay if isinstance(self.decay, (int, float)) else self.decay[t],
        )

    def moments(self):
        """``(m_0, v_0)``: the moments the unroll starts from."""
        return Moments(self.velocity, self.second_moment)

    def moved_first_moment(self, first_moment, grads):
        """``m' = beta m + (1 - beta) g'`` after this step's direction ``grads`` (``m = 0`` where None); without
        momentum, ``g'`` itself."""
        if not self.momentum:
            return grads
        return {name: (self.momentum * first_moment[name] if first_moment is not None else 0)
                + (1 - self.momentum) * g for name, g in grads.items()}

    def moved_second_moment(self, second_moment, grads):
        """Adam's ``v' = beta2 v + (1 - beta2) g'^2`` after this step's direction ``grads`` (differentiable in
        them); None without a second moment."""
        if second_moment is None:
            return None
        return {name: self.beta2 * second_moment[name] + (1 - self.beta2) * g**2 for name, g in grads.items()}

    def precondition(self, name, tensor, second_moment):
        """``P * tensor``, with ``P = 1 / (sqrt(v') + eps)`` from the step's second moment ``v'``, or 1."""
        return tensor if second_moment is None else tensor / (second_moment[name].sqrt() + self.eps)

    def precondition_slope(self, name, tensor, second_moment):
        """``d(P * tensor) / dv'`` (elementwise): ``-tensor / (2 sqrt(v') (sqrt(v') + eps)^2)``, 0 where
        ``v' = 0`` (there the gradient and ``tensor`` have been 0 so far)."""
        root = second_moment[name].sqrt()
        slope = -tensor / (2 * root * (root + self.eps) ** 2)
        return torch.where(root > 0, slope, torch.zeros_like(slope))

    def direction(self, grads, params):
        """``g'``: the clipped gradient plus the coupled weight decay (differentiable in ``grads`` and ``params``)."""
        if self.clip_norm > 0:
            norm = torch.sqrt(sum((g**2).sum() for g in grads.values()))
            scale = (self.clip_norm / (norm + 1e-6)).clamp(max=1)
            grads = {name: g * scale for name, g in grads.items()}
        if self.l2:
            grads = {name: g + self.l2 * params[name] for name, g in grads.items()}
        return grads

def optimizer_name(optimizer):
    """``adam``, ``sgd`` or the torch optimizer's class name, for fairseq's ``optimizer`` (or its FP16Optimizer)."""
    torch_optimizer = optimizer.optimizer
    if "betas" in torch_optimizer.param_groups[0]:
        return "adam"
    if type(torch_optimizer) is torch.optim.SGD:
        return "sgd"
    return type(torch_optimizer).__name__


def check_optimizer(optimizer, choice):
    """One line, before the first update, for an ``--unroll-optimizer`` that cannot replay the student's steps."""
    name = optimizer_name(optimizer)
    if choice == "adam" and name != "adam":
        raise UsageError(f"--unroll-optimizer adam needs fairseq's --optimizer adam, got {name}")
    if choice == "auto" and name not in ("adam", "sgd"):
        raise UsageError(
            f"--unroll-optimizer auto replays fairseq's adam or sgd steps, the student uses {name}: "
            "choose --unroll-optimizer sgd (plain SGD at the student's learning rate)"
        )


def student_rule(model, optimizer, choice, unroll_lr=None, momentum=True, clip_norm=0.0):
    """The update rule of ``--unroll-optimizer choice`` for the student's current optimizer state."""
    check_optimizer(optimizer, choice)
    if choice == "adam" or (choice == "auto" and optimizer_name(optimizer) == "adam"):
        rule = adam_rule(model, optimizer, momentum)
    else:
        rule = sgd_rule(model, optimizer, unroll_lr)
    rule.clip_norm = clip_norm
    return rule


def snapshot(model, optimizer, cfg, copy=True):
    """The student's fp32 weights and its update rule under ``cfg``'s unroll flags now (``copy``: kept while the
    student trains on)."""
    rule = student_rule(model, optimizer, cfg.unroll_optimizer, cfg.unroll_lr,
                        momentum=not cfg.no_unroll_momentum, clip_norm=cfg.clip_norm)
    params = fp32_params(model, optimizer)
    if copy:
        params = {name: p.clone() for name, p in params.items()}
        # the optimizer's own state tensors, which its next steps change in place
        rule.velocity, rule.second_moment = rule.moments().cloned()
    return params, rule


def optimizer_state(model, optimizer, key):
    """One entry of the torch optimizer's per-parameter state by parameter name (of the fp32 master weights
    under FP16Optimizer); None before the first step."""
    torch_optimizer = optimizer.optimizer  # FP16Optimizer: the one stepping the fp32 master weights
    try:
        tensors = [torch_optimizer.state[p][key] for p in stepped_params(optimizer)]
    except KeyError:
        return None
    if any(t is None for t in tensors):
        return None
    return split_like_optimizer(model, tensors)


def step_size(optimizer, choice, unroll_lr=None, momentum=True):
    """``(lr, decay)`` of the student's next step under ``--unroll-optimizer choice``: what changes from one update
    to the next (the scheduler's learning rate, Adam's bias corrections), cheap to record at every update."""
    name = optimizer_name(optimizer)
    group = optimizer.optimizer.param_groups[0]
    lr = optimizer.get_lr()
    if choice == "adam" or (choice == "auto" and name == "adam"):
        state = optimizer.optimizer.state.get(stepped_params(optimizer)[0], {})
        if "exp_avg_sq" not in state:
            return 0.0, 1.0  # no step taken yet: no second moment to precondition with
        (beta1, beta2), steps = group["betas"], int(state["step"]) + 1  # the next step's bias corrections
        scale = math.sqrt(1 - beta2**steps) / ((1 - beta1**steps) if momentum else 1.0)
        return lr * scale, 1 - group.get("weight_decay", 0.0) * lr
    lr = lr if unroll_lr is None else unroll_lr
    return lr / (1 - group.get("momentum", 0.0)) if name == "sgd" else lr, 1.0


def stepped_params(optimizer):
    """The tensors the torch optimizer steps, which key its state: the model's, or FP16Optimizer's fp32 master
    weights."""
    master = master_weights(optimizer)
    return optimizer.optimizer.param_groups[0]["params"] if master is None else master


def sgd_rule(model, optimizer, unroll_lr=None):
    """Fairseq's SGD step as it would be taken now (see the module docstring); plain SGD for another optimizer."""
    lr, _ = step_size(optimizer, "sgd", unroll_lr)
    if optimizer_name(optimizer) != "sgd":
        return UpdateRule(lr=lr)
    group = optimizer.optimizer.param_groups[0]
    beta = group["momentum"]
    if group.get("nesterov") or group.get("dampening"):
        raise UsageError("--unroll-optimizer sgd replays SGD without Nesterov momentum or dampening")
    if not beta:
        return UpdateRule(lr=lr, l2=group["weight_decay"])
    buffers = optimizer_state(model, optimizer, "momentum_buffer")
    return UpdateRule(
        lr=lr, momentum=beta, l2=group["weight_decay"],
        velocity=None if buffers is None else {name: (1 - beta) * b for name, b in buffers.items()},
    )


def adam_rule(model, optimizer, momentum=False):
    """The Adam steps fairseq's optimizer would take from now (see the module docstring)."""
    check_optimizer(optimizer, "adam")
    group = optimizer.optimizer.param_groups[0]
    second_moment = optimizer_state(model, optimizer, "exp_avg_sq")
    if second_moment is None:
        return UpdateRule(lr=0.0)
    lr, decay = step_size(optimizer, "adam", momentum=momentum)
    return UpdateRule(
        lr=lr,
        momentum=group["betas"][0] if momentum else 0.0,
        velocity=optimizer_state(model, optimizer, "exp_avg") if momentum else None,
        second_moment=second_moment,
        beta2=group["betas"][1],
        eps=group["eps"],
        decay=decay,
    )
