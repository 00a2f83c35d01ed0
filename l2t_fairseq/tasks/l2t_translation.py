"""Task ``l2t_translation``: translation whose loss is set, and learned, by a teacher.

Ordinary student steps are fairseq's own (its optimizer, its schedule).  Every
``--teacher-interval`` updates the task refreshes the student's state ``s_t``
and, unless the teacher is frozen, takes one teacher optimization step: RMD
through ``--unroll-steps`` differentiable student steps (the student's own Adam
steps, or SGD as in eq. 1) replayed from the current student on the most recent
training batches (paper eqs. 1, 3-5, Algorithm 1),
maximizing the smoothed expected BLEU (section 3.3) of a batch of the valid
subset.  Each refresh is logged to ``SAVE_DIR/teacher.jsonl``.

Under fairseq's data-parallel training every worker takes part in every
refresh (decided from the update number alone, so dummy batches at an uneven
epoch end cannot deadlock it); the BLEU statistics are summed and the
hypergradient averaged over the workers (:mod:`l2t_fairseq.distributed`,
:mod:`l2t_fairseq.teaching`), so all of them keep the same teacher.
"""

import json
import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Optional

import torch
from fairseq import metrics, utils
from fairseq.dataclass import ChoiceEnum
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask
from omegaconf import II

from l2t_fairseq import distributed
from l2t_fairseq.criterions.l2t_dlf import L2TDLFCriterion
from l2t_fairseq.diagnostics import phi_bands, target_frequency
from l2t_fairseq.errors import UsageError
from l2t_fairseq.expected_bleu import (
    CANDIDATE_SEARCHES,
    DevExpectedBleu,
    bleu_from_statistics,
    bleu_statistics,
    bleu_text,
    build_candidate_generator,
    build_candidates,
    decode,
)
from l2t_fairseq.student import fp32_params, make_step_loss
from l2t_fairseq.teacher import PARAMETRIZATIONS, Teacher, default_phi_init
from l2t_fairseq.teaching import Unrolled, teach_once
from l2t_fairseq.unroll_optimizer import UNROLL_OPTIMIZERS, student_rule

logger = logging.getLogger(__name__)

STATE_FEATURES = ("progress", "train_bleu", "dev_bleu")
PHI_NORMALIZATIONS = ("none", "token_mean")
TEACHER_LOG = "teacher.jsonl"


@dataclass
class L2TTranslationConfig(TranslationConfig):
    teacher_interval: int = field(
        default=100, metadata={"help": "K: one teacher update (and state refresh) every K student updates"}
    )
    unroll_steps: int = field(
        default=5, metadata={"help": "U: differentiable steps of the student unrolled per teacher update"}
    )
    unroll_optimizer: ChoiceEnum(UNROLL_OPTIMIZERS) = field(
        default="auto",
        metadata={"help": "the student's steps as the unroll replays them: plain SGD with --unroll-lr (eq. 1), "
                  "the student's own Adam step (fairseq's current lr and Adam's moments, held fixed), or auto: "
                  "adam for a student trained with --optimizer adam, sgd otherwise"},
    )
    unroll_lr: float = field(
        default=1.0, metadata={"help": "learning rate eta of the unrolled SGD steps (eq. 1; the sgd unroll)"}
    )
    no_unroll_momentum: bool = field(
        default=False,
        metadata={"help": "with the Adam unroll: step along the fresh gradient instead of carrying Adam's first "
                  "moment through the unroll"},
    )
    teacher_lr: float = field(
        default=0.03,
        metadata={"help": "Adam learning rate of the teacher (with the exp parametrization: relative to the "
                  "coefficients' size)"},
    )
    teacher_keys: int = field(default=5, metadata={"help": "N: number of keys of the teacher's attention"})
    teacher_parametrization: ChoiceEnum(PARAMETRIZATIONS) = field(
        default="exp",
        metadata={"help": "the teacher learns W itself (linear) or log W (exp: coefficients stay positive, and "
                  "--teacher-lr is relative to their size)"},
    )
    phi_normalization: ChoiceEnum(PHI_NORMALIZATIONS) = field(
        default="token_mean",
        metadata={"help": "token_mean: rescale each batch's coefficients to the mean 1/ln|V|, so the teacher sets "
                  "only the words' relative weights"},
    )
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
    no_lookahead_gain: bool = field(
        default=False,
        metadata={"help": "do not measure the lookahead gain of each teacher step (saves U forward SGD steps)"},
    )
    seed: int = II("common.seed")
    memory_efficient_fp16: bool = II("common.memory_efficient_fp16")
    memory_efficient_bf16: bool = II("common.memory_efficient_bf16")
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
    if cfg.no_unroll_momentum and cfg.unroll_optimizer == "sgd":
        raise UsageError("--no-unroll-momentum is a choice of the Adam unroll; --unroll-optimizer sgd has no momentum")


def load_teacher_state(path, vocab_size, num_keys, parametrization):
    """The teacher's ``state_dict`` from an l2t_translation checkpoint, checked against this task."""
    if not os.path.isfile(path):
        raise UsageError(f"--teacher-path {path}: no such file")
    try:
        # torch.load, not fairseq's loader: the benchmark keeps teachers alone, in the same layout
        state = torch.load(path, map_location="cpu")
        teacher = state["extra_state"][L2TTranslationTask.__name__]["teacher"]
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same one-line answer
        raise UsageError(f"--teacher-path {path}: not an l2t_translation checkpoint ({type(e).__name__}: {e})")
    weights = "log_W" if parametrization == "exp" else "W"
    if weights not in teacher:
        saved = "exp" if "log_W" in teacher else "linear"
        raise UsageError(
            f"--teacher-path {path}: teacher was trained with --teacher-parametrization {saved}, "
            f"this run has {parametrization}"
        )
    saved_vocab, saved_keys = teacher[weights].shape
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
        self.teacher = Teacher(
            len(tgt_dict), num_keys=cfg.teacher_keys, state_dim=len(STATE_FEATURES),
            parametrization=cfg.teacher_parametrization,
        )
        # the token-weighted mean of Phi on every batch, with --phi-normalization token_mean
        self.coefficient_mean = default_phi_init(len(tgt_dict)) if cfg.phi_normalization == "token_mean" else None
        self.teacher.to(self.device)
        self.teacher_optimizer = torch.optim.Adam(self.teacher.parameters(), lr=cfg.teacher_lr)
        # s_t = [progress, train BLEU, dev BLEU], all in [0, 1]
        self.student_state = torch.zeros(len(STATE_FEATURES), device=self.device)
        # (sample, s_t, dropout seed) of the latest updates: the unroll replays them
        self.recent_batches = deque(maxlen=cfg.unroll_steps)
        self.last_update = None
        self.skipped_steps = 0  # teacher steps skipped for a non-finite hypergradient
        self.dev_batches = None
        self.dev_epoch = 1
        self.target_frequency = None  # of each target word in the training data, for teacher.jsonl
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
        if self.cfg.memory_efficient_fp16 or self.cfg.memory_efficient_bf16:
            raise UsageError(
                "--memory-efficient-fp16/--memory-efficient-bf16 keep no fp32 copy of the student, which the "
                "teacher's unroll needs; use --fp16 or --bf16"
            )
        if self.cfg.max_update <= 0 and self.cfg.max_epoch <= 0:
            raise UsageError("l2t_translation needs --max-update or --max-epoch: training progress is part of s_t")
        if self.cfg.teacher_path:
            self.teacher.load_state_dict(
                load_teacher_state(
                    self.cfg.teacher_path, self.teacher.vocab_size, self.cfg.teacher_keys,
                    self.cfg.teacher_parametrization,
                )
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
        # with --update-freq the trainer calls this once per micro-batch: observe once per update.
        # Every worker observes every update, also with a dummy batch (ignore_grad): refreshes are collective.
        if update_num != self.last_update:
            self.last_update = update_num
            self.observe(None if ignore_grad else sample, distributed.unwrap(model), optimizer, update_num)
        loss, sample_size, logging_output = super().train_step(
            sample, model, criterion, optimizer, update_num, ignore_grad
        )
        for name, value in zip(STATE_FEATURES, self.student_state.tolist()):
            metrics.log_scalar(f"s_{name}", value, round=3)
        metrics.log_scalar("phi_mean", self.phi().mean().item(), round=4)
        metrics.log_scalar("teacher_skipped_steps", self.skipped_steps, round=0)
        return loss, sample_size, logging_output

    def observe(self, sample, model, optimizer, update_num):
        """``sample`` is None for a dummy batch: it is not a student step, so the unroll never replays it."""
        self.student_state[0] = self.progress(update_num)
        if sample is not None:
            self.recent_batches.append((sample, self.student_state.clone(), self.cfg.seed + update_num))
        if update_num > 0 and update_num % self.cfg.teacher_interval == 0:
            self.teach(sample, model, optimizer, update_num)

    def teach(self, sample, model, optimizer, update_num):
        """Every K updates: refresh the BLEU features of ``s_t``, update the teacher, log it."""
        start = time.perf_counter()
        self.student_state[1] = self.greedy_bleu(sample, model)[0]
        update = not self.cfg.freeze_teacher
        if update or not self.cfg.eval_bleu:  # with --eval-bleu, fairseq's validation sets dev BLEU
            dev_sample = self.next_dev_batch(model)
            greedy_bleu, greedy = self.greedy_bleu(dev_sample, model)
            if not self.cfg.eval_bleu:
                self.student_state[2] = greedy_bleu
        record = {"update": update_num, "state": self.student_state.tolist()}
        if update:
            # a worker without U real batches since the start (or a resume), or on a dummy batch, has weight 0
            contributes = sample is not None and len(self.recent_batches) == self.cfg.unroll_steps
            step = self.update_teacher(model, optimizer, dev_sample, greedy, contributes, self.cfg.seed + update_num)
            self.skipped_steps += step.skipped
            record.update(step.record(), skipped_steps=self.skipped_steps)
        record["teacher_digest"] = distributed.check_consistent(self.teacher, "the teacher")
        record["seconds"] = round(time.perf_counter() - start, 3)
        phi = self.phi()
        record["phi_bands"] = phi_bands(phi.cpu(), self.training_target_frequency())
        record["phi"] = [round(c, 5) for c in phi.tolist()]
        self.log_teacher(record)

    def training_target_frequency(self):
        if self.target_frequency is None:
            if "train" not in self.datasets:
                self.load_dataset("train")
            self.target_frequency = target_frequency(self.datasets["train"].tgt, len(self.tgt_dict))
        return self.target_frequency

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
        """Greedy-decoding corpus BLEU of the student on every worker's batch, in [0, 1], and this worker's
        greedy outputs (``sample`` None: a dummy batch, which adds nothing)."""
        greedy = decode(self, self.greedy_generator, model, sample) if sample is not None else []
        references = [self.text(t) for t in sample["target"]] if sample is not None else []
        statistics = bleu_statistics([self.text(h[0]) for h in greedy], references)
        return bleu_from_statistics(distributed.all_reduce_sum(statistics.to(self.device)).cpu()), greedy

    def post_validate(self, model, stats, agg):
        """Dev BLEU from fairseq's own ``--eval-bleu`` validation."""
        if "bleu" in stats:
            self.student_state[2] = stats["bleu"] / 100

    def update_teacher(self, model, optimizer, dev_sample, greedy, contributes, seed):
        """One teacher optimization step (Algorithm 1's loop body, truncated to U steps).

        The dev measure is the expected BLEU ``M~`` on candidates decoded from
        the current student (plus its greedy output), held fixed through the
        unroll; the teacher minimizes ``-M~(omega_U)``.  The unroll starts
        from the student's fp32 weights (fairseq's master copy under
        ``--fp16``/``--bf16``).  A worker that does not ``contribute`` still
        takes part in the averaged step.
        """
        unrolled = self.unrolled(model, optimizer, dev_sample, greedy, seed) if contributes else None
        step = teach_once(self.teacher, self.teacher_optimizer, unrolled, lookahead=not self.cfg.no_lookahead_gain)
        for name in ("dev_expected_bleu", "hypergrad_norm", "lookahead_gain"):
            if getattr(step, name) is not None:
                metrics.log_scalar(f"teacher_{name}", getattr(step, name), round=6)
        return step

    def unrolled(self, model, optimizer, dev_sample, greedy, seed):
        """This worker's part of a teacher step: its latest U batches, and candidates decoded for its dev batch."""
        samples, states, seeds = zip(*self.recent_batches)
        pad = self.tgt_dict.pad()
        with utils.set_torch_seed(seed):  # sampling must not shift the student's own RNG stream
            sampled = decode(self, self.candidate_generator, model, dev_sample)
        candidates = build_candidates(
            dev_sample, [s + g for s, g in zip(sampled, greedy)], self.text, pad, self.tgt_dict.eos()
        )
        rule = student_rule(
            model, optimizer, self.cfg.unroll_optimizer, self.cfg.unroll_lr, momentum=not self.cfg.no_unroll_momentum
        )
        return Unrolled(
            step_loss=make_step_loss(model, pad, self.coefficient_mean),
            params=fp32_params(model, optimizer),
            batches=list(zip(samples, seeds)),
            states=list(states),
            rule=rule,
            # the candidates are scored in chunks of a training batch's size: memory of one ordinary step
            dev_objective=DevExpectedBleu(
                model, candidates, self.cfg.teacher_alpha, pad, self.cfg.max_tokens or self.cfg.teacher_dev_max_tokens
            ),
            device_type=self.device.type,
        )

    def log_teacher(self, record):
        """Appends the state, the coefficients and the dev measure to ``SAVE_DIR/teacher.jsonl`` (worker 0)."""
        if distributed.rank() != 0:
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
                    num_shards=distributed.world_size(),  # each worker its own dev batches
                    shard_id=distributed.rank(),
                    epoch=self.dev_epoch,
                    disable_iterator_cache=True,  # fairseq's own validation iterates this dataset too
                ).next_epoch_itr(shuffle=True)
            sample = next(self.dev_batches, None)
            if sample:  # None at the end, {} where fairseq pads an uneven shard
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
                "skipped_steps": self.skipped_steps,
            }
        }

    def set_checkpoint_dict(self, state):
        self.teacher.load_state_dict(state["teacher"])
        self.teacher_optimizer.load_state_dict(state["teacher_optimizer"])
        self.student_state.copy_(state["student_state"])
        self.skipped_steps = state.get("skipped_steps", 0)
