"""The teacher's optimization step (Algorithm 1's loop body), shared by all data-parallel workers.

Each worker computes ``dJ/dPhi_t`` on its own latest batches and dev batch
(:func:`l2t_fairseq.unroll.hypergrad.hypergradient`); :func:`teacher_step` chains
it through the teacher (eq. 5), averages the result over the workers that
have one, and takes one Adam step, the same on every worker.  A non-finite
hypergradient or dev objective on any worker skips the step on all of them,
so the teacher and its Adam state stay finite.
"""

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch
from fairseq import metrics

from l2t_fairseq.dev_measure.expected_bleu import DevExpectedBleu
from l2t_fairseq.distributed import all_reduce_sum, mean_over_workers
from l2t_fairseq.unroll.hypergrad import final_weights, hypergradient
from l2t_fairseq.unroll.optimizer import UpdateRule
from l2t_fairseq.unroll.student import double_backward_safe

KEEP_ALL_BYTES = 2**30  # --unroll-keep-every 0 keeps every snapshot of the unroll where they fit in this


def keep_every(requested, unroll_steps, params, rule):
    """k: ``requested`` if given (``--unroll-keep-every``), else every snapshot where the U of them fit in
    KEEP_ALL_BYTES (no forward step recomputed), else about sqrt(U) (memory about 2 sqrt(U) x the student).  A
    snapshot holds the optimizer's moments too: SGD's velocity, Adam's first and second moments."""
    if requested:
        return requested
    copies = 1 + (rule.velocity is not None) + (rule.second_moment is not None)
    snapshots = copies * unroll_steps * sum(p.numel() * p.element_size() for p in params.values())
    return 1 if snapshots <= KEEP_ALL_BYTES else math.ceil(math.sqrt(unroll_steps))


@dataclass
class TeacherStep:
    workers: int  # how many workers contributed a hypergradient
    dev_expected_bleu: Optional[float]  # M~ averaged over those workers (None if none, or not finite)
    hypergrad_norm: Optional[float]  # norm of the averaged hypergradient (None if none, or not finite)
    skipped: bool  # True if the step was skipped for a non-finite value
    # M~ of a held-out dev batch at omega_U, after the step minus before (mean over the workers)
    lookahead_gain: Optional[float] = None
    # --unroll-start past: how far this worker's replay ends from the student's real weights, relative to how far
    # the student moved over the window (0 where the replay is the real steps)
    replay_gap: Optional[float] = None

    @property
    def taken(self):
        return self.workers > 0 and not self.skipped

    def record(self):
        return {name: value for name, value in vars(self).items() if value is not None}

    def log_metrics(self):
        for name in ("dev_expected_bleu", "hypergrad_norm", "lookahead_gain"):
            if getattr(self, name) is not None:
                metrics.log_scalar(f"teacher_{name}", getattr(self, name), round=6)


def teacher_step(teacher, optimizer, phis=None, d_phis=None, dev_objective=0.0):
    """Averages the hypergradient over the data-parallel workers and steps the teacher.

    ``phis``/``d_phis``: this worker's ``Phi_t`` (with their graph to the
    teacher) and ``dJ/dPhi_t``; ``None`` for a worker without a hypergradient
    this time (a dummy batch at an uneven epoch end, or fewer than U batches
    seen since a resume), which takes part with weight 0.  ``dev_objective``
    is this worker's ``J = -M~``.  Every worker must call this at the same
    update, with or without a hypergradient.
    """
    params = list(teacher.parameters())
    optimizer.zero_grad(set_to_none=True)
    contributes = phis is not None
    if contributes:
        torch.autograd.backward(phis, d_phis)  # eq. (5), chained through Phi_t = mu_theta(s_t)
    flat = torch.cat(
        [p.grad.flatten() if p.grad is not None else p.new_zeros(p.numel()) for p in params]
        + [params[0].new_tensor([float(contributes), -dev_objective if contributes else 0.0])]
    )
    all_reduce_sum(flat)
    workers = int(flat[-2].item())
    if workers == 0:
        optimizer.zero_grad(set_to_none=True)
        return TeacherStep(0, None, None, skipped=False)
    mean = flat / workers
    if not torch.isfinite(mean).all():  # the same sum on every worker: all skip alike
        optimizer.zero_grad(set_to_none=True)
        dev = mean[-1].item()
        return TeacherStep(workers, dev if torch.isfinite(mean[-1]) else None, None, skipped=True)
    grads = mean[:-2].split([p.numel() for p in params])
    for p, g in zip(params, grads):
        p.grad = g.view_as(p).clone()
    optimizer.step()
    return TeacherStep(workers, mean[-1].item(), mean[:-2].norm().item(), skipped=False)


def teach_once(teacher, optimizer, unrolled, lookahead=True):
    """Algorithm 1's loop body, truncated to U steps, on every worker: ``unrolled`` is this worker's
    :class:`Unrolled` (None for a worker without a hypergradient this time).

    RMD through the U replayed steps gives ``dJ/dPhi_t``; :func:`teacher_step`
    averages and applies it.  The lookahead gain is ``M~(omega_U)`` of a
    *held-out* dev batch and its candidates, which the step did not see, after
    the step minus before, on the same U batches and dropout masks (a mean over
    the workers): whether the step generalizes beyond what it optimized.
    """
    if unrolled is None:
        step = teacher_step(teacher, optimizer)
        if step.taken and lookahead:
            step.lookahead_gain = mean_over_workers(None, teacher.V.device)
        return step
    u = unrolled
    with torch.enable_grad():
        phis = [teacher(state) for state in u.states]
    with double_backward_safe(u.device_type):
        dev_loss, d_phis, final = hypergradient(
            u.step_loss, u.dev_objective.value_and_grad, u.params, phis, u.batches, u.rule, u.keep_every
        )
    step = teacher_step(teacher, optimizer, phis, d_phis, dev_loss.item())
    if u.student is not None:
        step.replay_gap = replay_gap(u.params, final, u.student)
    if step.taken and lookahead:  # a collective: every worker calls it, with a gain or without
        gain = None
        if u.heldout is not None:
            with torch.no_grad():
                new_phis = [teacher(state) for state in u.states]
            with double_backward_safe(u.device_type):
                before = u.heldout.value(final)
                after = u.heldout.value(final_weights(u.step_loss, u.params, new_phis, u.batches, u.rule))
            gain = (before - after).item()
        step.lookahead_gain = mean_over_workers(gain, teacher.V.device)
    return step


def replay_gap(start, replayed, student):
    """``|replayed - student| / |student - start|`` over all the student's weights."""
    gap = sum(((replayed[n].detach() - w) ** 2).sum() for n, w in student.items())
    moved = sum(((w - start[n]) ** 2).sum() for n, w in student.items())
    return (gap / moved).sqrt().item() if moved > 0 else None


@dataclass
class Unrolled:
    """What one worker replays: the student's step loss, its fp32 weights, the U (micro-batches, dropout seed)
    updates and the states they were trained with, the update rule, the dev objective on fixed candidates, and
    the held-out one of the lookahead gain (None: not measured)."""

    step_loss: Callable
    params: Dict[str, torch.Tensor]
    batches: List
    states: List[torch.Tensor]
    rule: UpdateRule
    dev_objective: DevExpectedBleu
    device_type: str
    heldout: Optional[DevExpectedBleu] = None
    keep_every: int = 1  # the reverse loop keeps every k-th snapshot (l2t_fairseq.unroll.hypergrad.unroll)
    student: Optional[Dict[str, torch.Tensor]] = None  # --unroll-start past: the weights the replay should end at
