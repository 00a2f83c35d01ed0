"""The coefficients of the student's loss, ``Phi_t = mu_theta(s_t)``: the teacher, its Adam, and the state it reads.

The task hands this object to the criterion ``l2t_dlf``, which reads
:meth:`Coefficients.phi` at every forward; :class:`l2t_fairseq.refresh.teaching.Teaching`
sets the state's features and steps the teacher.
"""

import logging

import torch
from fairseq import metrics

from l2t_fairseq.errors import UsageError
from l2t_fairseq.teacher.file import load_teacher_state
from l2t_fairseq.teacher.model import Teacher, default_phi_init

logger = logging.getLogger(__name__)

STATE_FEATURES = ("progress", "train_bleu", "dev_bleu")
# what the state's dev-BLEU feature measures: fairseq's --eval-bleu validation (its BLEU settings, the whole dev set,
# updated at validations), or the teacher's own tokenized BLEU of greedy outputs on one dev batch per refresh
DEV_BLEU_MEASURES = {True: "fairseq --eval-bleu validation", False: "greedy BLEU of one dev batch per refresh"}


class Coefficients:
    """The teacher of one run (``--teacher-path`` loaded and checked), its Adam, and ``s_t`` on the CPU: read at
    every update without waiting for the device."""

    def __init__(self, cfg, vocab_size, device, eval_bleu=False):
        self.device = device
        self.dev_bleu_measure = DEV_BLEU_MEASURES[bool(eval_bleu)]
        # where the coefficients start; the criterion takes its loss's scale from it
        self.phi_init = default_phi_init(vocab_size) if cfg.phi_init is None else cfg.phi_init
        self.teacher = Teacher(
            vocab_size, num_keys=cfg.teacher_keys, state_dim=len(STATE_FEATURES), phi_init=self.phi_init,
            parametrization=cfg.teacher_parametrization, seed=cfg.seed,
        ).to(device)
        self.optimizer = torch.optim.Adam(self.teacher.parameters(), lr=cfg.teacher_lr)
        if cfg.teacher_path:
            teacher, optimizer = load_teacher_state(
                cfg.teacher_path, vocab_size, cfg.teacher_keys, cfg.teacher_parametrization, self.dev_bleu_measure
            )
            self.teacher.load_state_dict(teacher)
            if cfg.continue_teacher:
                if optimizer is None:
                    raise UsageError(f"--continue-teacher: {cfg.teacher_path} holds no Adam state of its teacher")
                self.optimizer.load_state_dict(optimizer)
                for group in self.optimizer.param_groups:  # this run's --teacher-lr
                    group["lr"] = cfg.teacher_lr
            logger.info(f"teacher loaded from {cfg.teacher_path}")
        self.state = torch.zeros(len(STATE_FEATURES))
        self.cached = None  # Phi_t of the current state and teacher, on the device
        self.skipped_steps = 0  # teacher steps skipped for a non-finite hypergradient

    @torch.no_grad()
    def phi(self):
        """``Phi_t`` for the current state, as a constant: computed once per change of the state or the teacher,
        not at every forward."""
        if self.cached is None:
            self.cached = self.teacher(self.state.to(self.device))
        return self.cached

    def set_feature(self, name, value):
        self.state[STATE_FEATURES.index(name)] = value
        self.cached = None

    def teacher_moved(self):
        self.cached = None

    def log_metrics(self):
        """No device synchronisation: the state is on the CPU, and fairseq reads the mean coefficient's tensor only
        when it logs."""
        for name, value in zip(STATE_FEATURES, self.state.tolist()):
            metrics.log_scalar(f"s_{name}", value, round=3)
        metrics.log_scalar("phi_mean", self.phi().mean(), round=4)
        metrics.log_scalar("teacher_skipped_steps", self.skipped_steps, round=0)

    def state_dict(self):
        return {
            "teacher": self.teacher.state_dict(),
            "teacher_optimizer": self.optimizer.state_dict(),
            "dev_bleu_measure": self.dev_bleu_measure,
            "student_state": self.state.clone(),
            "skipped_steps": self.skipped_steps,
        }

    def load_state_dict(self, state):
        self.teacher.load_state_dict(state["teacher"])
        self.optimizer.load_state_dict(state["teacher_optimizer"])
        self.state.copy_(state["student_state"])
        self.cached = None
        self.skipped_steps = state.get("skipped_steps", 0)
