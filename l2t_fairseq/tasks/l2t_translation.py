"""Task ``l2t_translation``: translation whose loss is set, and learned, by a teacher.

Ordinary student steps are fairseq's own (its optimizer, its schedule).  Every
``--teacher-interval`` updates the task refreshes the student's state ``s_t``
and, unless the teacher is frozen, takes one teacher optimization step: RMD
through ``--unroll-steps`` differentiable SGD steps replayed from the current
student on the most recent training batches (paper eqs. 1, 3-5, Algorithm 1),
with the dev loss measured on a batch of the valid subset.
"""

import logging
import os
from argparse import Namespace
from collections import deque
from dataclasses import dataclass, field
from typing import Optional

import torch
from fairseq import checkpoint_utils, metrics, utils
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask
from omegaconf import II
from sacrebleu.metrics import BLEU

from l2t_fairseq.criterions.l2t_dlf import L2TDLFCriterion
from l2t_fairseq.errors import UsageError
from l2t_fairseq.hypergrad import hypergradient
from l2t_fairseq.student import (
    double_backward_safe,
    evaluation,
    make_dev_nll,
    make_step_loss,
    trainable_params,
)
from l2t_fairseq.teacher import Teacher

logger = logging.getLogger(__name__)

STATE_FEATURES = ("progress", "train_bleu", "dev_bleu")


@dataclass
class L2TTranslationConfig(TranslationConfig):
    teacher_interval: int = field(
        default=100, metadata={"help": "K: one teacher update (and state refresh) every K student updates"}
    )
    unroll_steps: int = field(
        default=5, metadata={"help": "U: differentiable SGD steps of the student unrolled per teacher update"}
    )
    unroll_lr: float = field(
        default=1.0, metadata={"help": "learning rate eta of the unrolled SGD steps (eq. 1)"}
    )
    teacher_lr: float = field(default=1e-3, metadata={"help": "Adam learning rate of the teacher"})
    teacher_keys: int = field(default=5, metadata={"help": "N: number of keys of the teacher's attention"})
    teacher_dev_max_tokens: int = field(
        default=2048, metadata={"help": "max tokens of the dev batch whose loss the teacher minimizes"}
    )
    teacher_path: Optional[str] = field(
        default=None, metadata={"help": "start from the teacher in this l2t_translation checkpoint"}
    )
    freeze_teacher: bool = field(
        default=False, metadata={"help": "teach with a fixed teacher (no teacher updates)"}
    )
    seed: int = II("common.seed")
    fp16: bool = II("common.fp16")
    bf16: bool = II("common.bf16")
    cpu: bool = II("common.cpu")
    max_update: int = II("optimization.max_update")
    max_epoch: int = II("optimization.max_epoch")
    valid_subset: str = II("dataset.valid_subset")


def check_flags(cfg):
    """Fail early, with one line naming the flag."""
    for flag, value in (
        ("--teacher-interval", cfg.teacher_interval),
        ("--unroll-steps", cfg.unroll_steps),
        ("--teacher-keys", cfg.teacher_keys),
        ("--teacher-dev-max-tokens", cfg.teacher_dev_max_tokens),
    ):
        if value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}")
    for flag, value in (("--unroll-lr", cfg.unroll_lr), ("--teacher-lr", cfg.teacher_lr)):
        if not value > 0:
            raise UsageError(f"{flag} must be positive, got {value}")


def load_teacher_state(path, vocab_size, num_keys):
    """The teacher's ``state_dict`` from an l2t_translation checkpoint, checked against this task."""
    if not os.path.isfile(path):
        raise UsageError(f"--teacher-path {path}: no such file")
    try:
        state = checkpoint_utils.load_checkpoint_to_cpu(path)
        teacher = state["extra_state"][L2TTranslationTask.__name__]["teacher"]
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same one-line answer
        raise UsageError(f"--teacher-path {path}: not an l2t_translation checkpoint ({type(e).__name__}: {e})")
    saved_vocab, saved_keys = teacher["W"].shape
    if saved_vocab != vocab_size:
        raise UsageError(
            f"--teacher-path {path}: teacher was built for a target dictionary of {saved_vocab} words, "
            f"this task's has {vocab_size}"
        )
    if saved_keys != num_keys:
        raise UsageError(f"--teacher-path {path}: teacher has {saved_keys} keys, --teacher-keys is {num_keys}")
    return teacher


@register_task("l2t_translation", dataclass=L2TTranslationConfig)
class L2TTranslationTask(TranslationTask):
    cfg: L2TTranslationConfig

    def __init__(self, cfg, src_dict, tgt_dict):
        super().__init__(cfg, src_dict, tgt_dict)
        check_flags(cfg)
        self.device = torch.device("cuda") if torch.cuda.is_available() and not cfg.cpu else torch.device("cpu")
        self.teacher = Teacher(len(tgt_dict), num_keys=cfg.teacher_keys, state_dim=len(STATE_FEATURES))
        self.teacher.to(self.device)
        self.teacher_optimizer = torch.optim.Adam(self.teacher.parameters(), lr=cfg.teacher_lr)
        # s_t = [progress, train BLEU, dev BLEU], all in [0, 1]
        self.student_state = torch.zeros(len(STATE_FEATURES), device=self.device)
        # (sample, s_t, dropout seed) of the latest updates: the unroll replays them
        self.recent_batches = deque(maxlen=cfg.unroll_steps)
        self.last_update = None
        self.dev_batches = None
        self.dev_epoch = 1
        self.epoch = 1

    # -- building ---------------------------------------------------------

    def build_model(self, cfg, from_checkpoint=False):
        model = super().build_model(cfg, from_checkpoint)
        self.greedy_generator = self.build_generator([model], Namespace(beam=1))
        return model

    def build_criterion(self, cfg):
        criterion = super().build_criterion(cfg)
        if not isinstance(criterion, L2TDLFCriterion):
            raise UsageError(
                f"--task l2t_translation trains its teacher for --criterion l2t_dlf, got {type(criterion).__name__} "
                "(use --task translation for other criteria)"
            )
        if self.cfg.fp16 or self.cfg.bf16:
            raise UsageError("--fp16/--bf16: the teacher's unroll needs fp32 student weights; use --amp instead")
        if self.cfg.max_update <= 0 and self.cfg.max_epoch <= 0:
            raise UsageError("l2t_translation needs --max-update or --max-epoch: training progress is part of s_t")
        if self.cfg.teacher_path:
            self.teacher.load_state_dict(
                load_teacher_state(self.cfg.teacher_path, self.teacher.vocab_size, self.cfg.teacher_keys)
            )
            logger.info(f"teacher loaded from {self.cfg.teacher_path}")
        return criterion

    # -- what the criterion reads -------------------------------------------

    @torch.no_grad()
    def phi(self):
        """``Phi_t = mu_theta(s_t)`` for the current state, as a constant."""
        return self.teacher(self.student_state)

    # -- training -----------------------------------------------------------

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        # with --update-freq the trainer calls this once per micro-batch: observe once per update
        if not ignore_grad and update_num != self.last_update:
            self.last_update = update_num
            self.observe(sample, model, update_num)
        loss, sample_size, logging_output = super().train_step(
            sample, model, criterion, optimizer, update_num, ignore_grad
        )
        for name, value in zip(STATE_FEATURES, self.student_state.tolist()):
            metrics.log_scalar(f"s_{name}", value, round=3)
        metrics.log_scalar("phi_mean", self.phi().mean().item(), round=4)
        return loss, sample_size, logging_output

    def observe(self, sample, model, update_num):
        self.student_state[0] = self.progress(update_num)
        self.recent_batches.append((sample, self.student_state.clone(), self.cfg.seed + update_num))
        if update_num == 0 or update_num % self.cfg.teacher_interval != 0:
            return
        self.student_state[1] = self.train_bleu(sample, model)
        if not self.cfg.freeze_teacher and len(self.recent_batches) == self.cfg.unroll_steps:
            self.update_teacher(model)

    def progress(self, update_num):
        if self.cfg.max_update > 0:
            return min(update_num / self.cfg.max_update, 1.0)
        return min((self.epoch - 1) / self.cfg.max_epoch, 1.0)

    def begin_epoch(self, epoch, model):
        super().begin_epoch(epoch, model)
        self.epoch = epoch

    def train_bleu(self, sample, model):
        """Greedy-decoding BLEU of the student on a training batch, in [0, 1].

        Tokenized BLEU with effective n-gram order: fairseq batches sentences
        of similar length, and a batch of short ones has no 4-grams at all.
        """
        with evaluation(model):
            hypotheses = self.inference_step(self.greedy_generator, [model], sample)

        def text(tokens):
            tokens = utils.strip_pad(tokens, self.tgt_dict.pad()).int().cpu()
            return self.tgt_dict.string(tokens, self.cfg.eval_bleu_remove_bpe)

        bleu = BLEU(tokenize="none", effective_order=True).corpus_score(
            [text(h[0]["tokens"]) for h in hypotheses], [[text(t) for t in sample["target"]]]
        )
        return bleu.score / 100

    def post_validate(self, model, stats, agg):
        """Dev BLEU from fairseq's own ``--eval-bleu`` validation."""
        if "bleu" in stats:
            self.student_state[2] = stats["bleu"] / 100

    def update_teacher(self, model):
        """One teacher optimization step (Algorithm 1's loop body, truncated to U steps)."""
        samples, states, seeds = zip(*self.recent_batches)
        pad = self.tgt_dict.pad()
        params = {name: p.detach() for name, p in trainable_params(model).items()}
        with torch.enable_grad():
            phis = [self.teacher(state) for state in states]
        with double_backward_safe(self.device.type):
            dev_loss, d_phis = hypergradient(
                make_step_loss(model, pad),
                make_dev_nll(model, self.next_dev_batch(model), pad),
                params,
                phis,
                list(zip(samples, seeds)),
                self.cfg.unroll_lr,
            )
        self.teacher_optimizer.zero_grad()
        torch.autograd.backward(phis, d_phis)  # eq. (5), chained through Phi_t = mu_theta(s_t)
        hypergrad_norm = torch.sqrt(sum(p.grad.pow(2).sum() for p in self.teacher.parameters()))
        self.teacher_optimizer.step()
        metrics.log_scalar("teacher_dev_loss", dev_loss.item(), round=4)
        metrics.log_scalar("teacher_hypergrad_norm", hypergrad_norm.item(), round=6)

    def next_dev_batch(self, model):
        subset = self.cfg.valid_subset.split(",")[0]
        if subset not in self.datasets:
            self.load_dataset(subset)
        while True:
            if self.dev_batches is None:
                self.dev_batches = self.get_batch_iterator(
                    dataset=self.dataset(subset),
                    max_tokens=self.cfg.teacher_dev_max_tokens,
                    max_positions=utils.resolve_max_positions(self.max_positions(), model.max_positions()),
                    ignore_invalid_inputs=True,
                    seed=self.cfg.seed,
                    epoch=self.dev_epoch,
                    disable_iterator_cache=True,  # fairseq's own validation iterates this dataset too
                ).next_epoch_itr(shuffle=True)
            sample = next(self.dev_batches, None)
            if sample is not None:
                return utils.apply_to_sample(lambda t: t.to(self.device), sample)
            self.dev_batches = None
            self.dev_epoch += 1

    # -- checkpoints ----------------------------------------------------------

    def get_checkpoint_dict(self):
        """Saved by fairseq in every checkpoint's ``extra_state`` under this class's name."""
        return {
            type(self).__name__: {
                "teacher": self.teacher.state_dict(),
                "teacher_optimizer": self.teacher_optimizer.state_dict(),
                "student_state": self.student_state.clone(),
            }
        }

    def set_checkpoint_dict(self, state):
        self.teacher.load_state_dict(state["teacher"])
        self.teacher_optimizer.load_state_dict(state["teacher_optimizer"])
        self.student_state.copy_(state["student_state"])
