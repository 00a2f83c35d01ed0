"""Task ``l2t_translation``: translation whose loss is set, and learned, by a teacher.

Ordinary student steps are fairseq's own (its optimizer, its schedule).  Every
``--teacher-interval`` updates the task refreshes the student's state ``s_t``
and, unless the teacher is frozen, takes one teacher optimization step: RMD
through ``--unroll-steps`` differentiable SGD steps replayed from the current
student on the most recent training batches (paper eqs. 1, 3-5, Algorithm 1),
maximizing the smoothed expected BLEU (section 3.3) of a batch of the valid
subset.  Each refresh is logged to ``SAVE_DIR/teacher.jsonl``.
"""

import json
import logging
import os
from collections import deque
from dataclasses import dataclass, field
from typing import Optional

import torch
from fairseq import checkpoint_utils, metrics, utils
from fairseq.dataclass import ChoiceEnum
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask
from omegaconf import II

from l2t_fairseq.criterions.l2t_dlf import L2TDLFCriterion
from l2t_fairseq.errors import UsageError
from l2t_fairseq.hypergrad import hypergradient
from l2t_fairseq.expected_bleu import (
    CANDIDATE_SEARCHES,
    DevExpectedBleu,
    bleu_text,
    build_candidate_generator,
    build_candidates,
    corpus_bleu,
    decode,
)
from l2t_fairseq.student import double_backward_safe, make_step_loss, trainable_params
from l2t_fairseq.teacher import Teacher

logger = logging.getLogger(__name__)

STATE_FEATURES = ("progress", "train_bleu", "dev_bleu")
TEACHER_LOG = "teacher.jsonl"


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
        default=1024,
        metadata={"help": "max tokens of the dev batch whose expected BLEU the teacher maximizes"},
    )
    teacher_candidates: int = field(
        default=8, metadata={"help": "candidates decoded per dev sentence for expected BLEU (plus the greedy one)"}
    )
    teacher_candidate_search: ChoiceEnum(CANDIDATE_SEARCHES) = field(
        default="sample", metadata={"help": "how the dev candidates are decoded: ancestral sampling or beam search"}
    )
    teacher_alpha: float = field(
        default=1.0, metadata={"help": "sharpness of q(y*|x) ~ p(y*|x)^alpha over each sentence's candidates"}
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
    max_tokens: Optional[int] = II("dataset.max_tokens")
    save_dir: str = II("checkpoint.save_dir")


def check_flags(cfg):
    """Fail early, with one line naming the flag."""
    for flag, value in (
        ("--teacher-interval", cfg.teacher_interval),
        ("--unroll-steps", cfg.unroll_steps),
        ("--teacher-keys", cfg.teacher_keys),
        ("--teacher-dev-max-tokens", cfg.teacher_dev_max_tokens),
        ("--teacher-candidates", cfg.teacher_candidates),
    ):
        if value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}")
    for flag, value in (
        ("--unroll-lr", cfg.unroll_lr),
        ("--teacher-lr", cfg.teacher_lr),
        ("--teacher-alpha", cfg.teacher_alpha),
    ):
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
        self.greedy_generator = build_candidate_generator(self, model, "beam", 1)  # beam 1: greedy
        self.candidate_generator = build_candidate_generator(
            self, model, self.cfg.teacher_candidate_search, self.cfg.teacher_candidates
        )
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
        if update_num > 0 and update_num % self.cfg.teacher_interval == 0:
            self.teach(sample, model, update_num)

    def teach(self, sample, model, update_num):
        """Every K updates: refresh the BLEU features of ``s_t``, update the teacher, log it."""
        self.student_state[1] = self.greedy_bleu(sample, model)[0]
        update = not self.cfg.freeze_teacher and len(self.recent_batches) == self.cfg.unroll_steps
        if update or not self.cfg.eval_bleu:  # with --eval-bleu, fairseq's validation sets dev BLEU
            dev_sample = self.next_dev_batch(model)
            greedy_bleu, greedy = self.greedy_bleu(dev_sample, model)
            if not self.cfg.eval_bleu:
                self.student_state[2] = greedy_bleu
        record = {"update": update_num, "state": self.student_state.tolist()}
        if update:
            record.update(self.update_teacher(model, dev_sample, greedy, seed=self.cfg.seed + update_num))
        record["phi"] = [round(c, 5) for c in self.phi().tolist()]
        self.log_teacher(record)

    def progress(self, update_num):
        if self.cfg.max_update > 0:
            return min(update_num / self.cfg.max_update, 1.0)
        return min((self.epoch - 1) / self.cfg.max_epoch, 1.0)

    def begin_epoch(self, epoch, model):
        super().begin_epoch(epoch, model)
        self.epoch = epoch

    def text(self, tokens):
        return bleu_text(self.tgt_dict, tokens, self.cfg.eval_bleu_remove_bpe)

    def greedy_bleu(self, sample, model):
        """Greedy-decoding corpus BLEU of the student on a batch, in [0, 1], and the greedy outputs."""
        greedy = decode(self, self.greedy_generator, model, sample)
        bleu = corpus_bleu([self.text(h[0]) for h in greedy], [self.text(t) for t in sample["target"]])
        return bleu, greedy

    def post_validate(self, model, stats, agg):
        """Dev BLEU from fairseq's own ``--eval-bleu`` validation."""
        if "bleu" in stats:
            self.student_state[2] = stats["bleu"] / 100

    def update_teacher(self, model, dev_sample, greedy, seed):
        """One teacher optimization step (Algorithm 1's loop body, truncated to U steps).

        The dev measure is the expected BLEU ``M~`` on candidates decoded from
        the current student (plus its greedy output), held fixed through the
        unroll; the teacher minimizes ``-M~(omega_U)``.
        """
        samples, states, seeds = zip(*self.recent_batches)
        pad = self.tgt_dict.pad()
        with utils.set_torch_seed(seed):  # sampling must not shift the student's own RNG stream
            sampled = decode(self, self.candidate_generator, model, dev_sample)
        candidates = build_candidates(
            dev_sample, [s + g for s, g in zip(sampled, greedy)], self.text, pad, self.tgt_dict.eos()
        )
        # the candidates are scored in chunks of a training batch's size: memory of one ordinary step
        dev_objective = DevExpectedBleu(
            model, candidates, self.cfg.teacher_alpha, pad, self.cfg.max_tokens or self.cfg.teacher_dev_max_tokens
        )
        params = {name: p.detach() for name, p in trainable_params(model).items()}
        with torch.enable_grad():
            phis = [self.teacher(state) for state in states]
        with double_backward_safe(self.device.type):
            dev_loss, d_phis = hypergradient(
                make_step_loss(model, pad),
                dev_objective.value_and_grad,
                params,
                phis,
                list(zip(samples, seeds)),
                self.cfg.unroll_lr,
            )
        self.teacher_optimizer.zero_grad()
        torch.autograd.backward(phis, d_phis)  # eq. (5), chained through Phi_t = mu_theta(s_t)
        hypergrad_norm = torch.sqrt(sum(p.grad.pow(2).sum() for p in self.teacher.parameters()))
        self.teacher_optimizer.step()
        expected = -dev_loss.item()
        metrics.log_scalar("teacher_dev_expected_bleu", expected, round=4)
        metrics.log_scalar("teacher_hypergrad_norm", hypergrad_norm.item(), round=6)
        return {"dev_expected_bleu": expected, "hypergrad_norm": hypergrad_norm.item()}

    def log_teacher(self, record):
        """Appends the state, the coefficients and the dev measure to ``SAVE_DIR/teacher.jsonl``."""
        if torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
            return
        os.makedirs(self.cfg.save_dir, exist_ok=True)
        with open(os.path.join(self.cfg.save_dir, TEACHER_LOG), "a") as log:
            log.write(json.dumps(record) + "\n")

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
