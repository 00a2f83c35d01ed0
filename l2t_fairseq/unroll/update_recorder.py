"""The student's updates exactly as fairseq takes them: what the teacher's unroll replays.

fairseq's trainer may *attempt* an update more than once under the same update
number: after an fp16 gradient overflow (the step is dropped, the next batches
train under the same number), under ``--amp`` (the same batches again), and after
recovering from an out-of-memory error in a micro-batch.  It clears the student's
gradients (sets them to None) at the start of every attempt and after a failed
micro-batch, so :func:`attempt_starts` tells a fresh attempt from the next
micro-batch of the same one.  An attempt's record is kept only once the update
number has moved on: that attempt was the step the student took.
"""

import dataclasses
from collections import deque
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
from fairseq import utils

from l2t_fairseq.unroll.optimizer import UpdateRule


def attempt_starts(model):
    """Whether the next micro-batch is the first of an attempt at an update: fairseq's trainer has just cleared
    the student's gradients (no collective, no device synchronisation)."""
    return all(p.grad is None for p in model.parameters())


@dataclass
class Update:
    """One update of the student: its micro-batches (``--update-freq``), the state ``s_t`` the teacher read for it,
    the trainer's dropout seed, and (replayed from the past only) its learning rate and decay."""

    samples: List[dict]
    state: torch.Tensor
    seed: int
    step: Optional[Tuple[float, float]] = None

    def fields(self):
        return self.samples, self.state, self.seed, self.step


class UpdateRecorder:
    """The latest ``unroll_steps`` updates the student took, the one being attempted, and (``--unroll-start
    past``) the window: the student's fp32 weights and update rule before the first update to replay."""

    def __init__(self, unroll_steps, device):
        self.unroll_steps, self.device = unroll_steps, device
        self.updates = deque(maxlen=unroll_steps)
        self.current = None  # the attempt being taken
        self.update = None  # its update number
        self.window = None  # (first update, (params, rule))

    def advance(self, update_num):
        """An attempt at ``update_num`` starts; returns whether it is a new update.  The previous attempt's record
        is kept if the update number has moved on since (its step was taken) and dropped otherwise (fp16
        overflow, ``--amp`` retry, out-of-memory recovery)."""
        new = update_num != self.update
        if new and self.current is not None and self.current.samples:
            self.updates.append(self.current)
        self.current, self.update = None, update_num
        return new

    def begin(self, state, seed, step=None):
        """The attempt's record: the state it trains with, its dropout seed and its step."""
        self.current = Update([], state.clone(), seed, step)

    def add(self, sample):
        """A real micro-batch of the attempt (a dummy one is no student step: never replayed)."""
        self.current.samples.append(sample)

    def open_window(self, update_num, snapshot):
        self.window = (update_num, snapshot)

    def close_window(self):
        self.window = None

    def holds_window(self, update_num, first_seed, past):
        """Whether the U updates before ``update_num`` are all here (``first_seed``: the dropout seed of the first),
        and, replayed from the ``past``, the weights before the first of them."""
        first = update_num - self.unroll_steps
        if len(self.updates) < self.unroll_steps or self.updates[0].seed != first_seed:
            return False  # a dummy batch in between, or fewer updates since the start or a resume
        return not past or (self.window is not None and self.window[0] == first)

    def replay(self):
        """The recorded updates on this device: (micro-batches, dropout seed) of each, their states, their steps."""
        batches = [([self.to_device(s) for s in u.samples], u.seed) for u in self.updates]
        return batches, [u.state.to(self.device) for u in self.updates], [u.step for u in self.updates]

    def to_device(self, value):
        return utils.apply_to_sample(lambda t: t.to(self.device), value)

    def state_dict(self):
        """On the CPU, readable on any device."""
        window = None
        if self.window is not None:
            first, (params, rule) = self.window
            window = (first, utils.move_to_cpu(params), utils.move_to_cpu(dataclasses.asdict(rule)))
        return {
            "update": self.update,
            "updates": [utils.move_to_cpu(u.fields()) for u in self.updates],
            "current": None if self.current is None else utils.move_to_cpu(self.current.fields()),
            "window": window,
        }

    def load_state_dict(self, state):
        """Everything back on this recorder's device: the teacher's replay meets its weights there."""
        to = self.to_device
        self.update = state["update"]
        self.updates.clear()
        self.updates.extend(Update(*to(list(u))) for u in state["updates"][-self.unroll_steps:])
        self.current = None if state["current"] is None else Update(*to(list(state["current"])))
        self.window = None
        # a window saved by the Adam unroll that held the second moment fixed (its rule has "preconditioner"
        # instead) is dropped: that one refresh is skipped
        if state.get("window") is not None and "preconditioner" not in state["window"][2]:
            first, params, rule = state["window"]
            self.window = (first, (to(params), UpdateRule(**{k: to(v) for k, v in rule.items()})))
