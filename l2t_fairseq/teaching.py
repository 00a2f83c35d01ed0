"""Teaching: the teacher, the state it reads, and the refresh protocol inside fairseq's training loop.

Ordinary student steps are fairseq's own (its optimizer, its schedule).
:class:`Teaching` watches them: it keeps the last ``--unroll-steps`` updates
the student took (their micro-batches, states and dropout seeds), and every
``--teacher-interval`` updates it refreshes the student's state ``s_t`` and,
unless the teacher is frozen, takes one teacher step: RMD through those
updates replayed from the current student (paper eqs. 1, 3-5, Algorithm 1),
maximizing the smoothed expected BLEU of a dev batch (section 3.3).  Each
refresh is logged to ``SAVE_DIR/teacher.jsonl``.

A refresh, on every data-parallel worker at the same update (decided from the
update number alone, so a worker on a dummy batch takes part too), runs these
collectives in this order (:mod:`l2t_fairseq.distributed`):

1. the train-BLEU statistics of the workers' batches, summed;
2. the dev-BLEU statistics of their dev batches, summed (unless the teacher is
   frozen and ``--eval-bleu`` gives dev BLEU);
3. the hypergradient, averaged over the workers that have one, and the mean dev
   measure (:func:`l2t_fairseq.teacher_step.teacher_step`);
4. the lookahead gain, averaged (if measured and the step was taken);
5. the teacher's digest, gathered and compared.
"""

import dataclasses
import logging
import math
import os
import time
import zipfile
from dataclasses import dataclass, field
from typing import Optional

import torch
from fairseq import metrics, utils
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from omegaconf import II

from l2t_fairseq import distributed, teacher_log
from l2t_fairseq.bleu import bleu_from_statistics, bleu_statistics, bleu_text, is_segmented
from l2t_fairseq.candidates import CANDIDATE_SEARCHES, build_candidate_generator, build_candidates, decode
from l2t_fairseq.dev_batches import DevBatches
from l2t_fairseq.diagnostics import phi_bands, target_frequency
from l2t_fairseq.errors import UsageError
from l2t_fairseq.expected_bleu import DevExpectedBleu
from l2t_fairseq.student import fp32_params, make_step_loss
from l2t_fairseq.teacher import PARAMETRIZATIONS, Teacher, default_phi_init
from l2t_fairseq.teacher_step import Unrolled, teach_once
from l2t_fairseq.unroll_optimizer import UNROLL_OPTIMIZERS, check_optimizer, step_size, student_rule
from l2t_fairseq.update_recorder import UpdateRecorder, attempt_starts
from l2t_fairseq.whole_files import replacing

logger = logging.getLogger(__name__)

STATE_FEATURES = ("progress", "train_bleu", "dev_bleu")
UNROLL_STARTS = ("current", "past")
# where checkpoints (extra_state) and teacher files keep the teaching state
CHECKPOINT_KEY = "L2TTranslationTask"
KEEP_ALL_BYTES = 2**30  # --unroll-keep-every 0 keeps every snapshot of the unroll where they fit in this
HELDOUT_SEED_OFFSET = 2**31  # the held-out dev batch's candidates are sampled from a stream of their own
# what the state's dev-BLEU feature measures: fairseq's --eval-bleu validation (its BLEU settings, the whole dev set,
# updated at validations), or the teacher's own tokenized BLEU of greedy outputs on one dev batch per refresh
DEV_BLEU_MEASURES = {True: "fairseq --eval-bleu validation", False: "greedy BLEU of one dev batch per refresh"}


@dataclass
class TeachingConfig(FairseqDataclass):
    teacher_interval: int = field(
        default=100, metadata={"help": "K: one teacher update (and state refresh) every K student updates"}
    )
    unroll_steps: int = field(
        default=20, metadata={"help": "U: the student's latest updates replayed per teacher update"}
    )
    unroll_start: ChoiceEnum(UNROLL_STARTS) = field(
        default="past",
        metadata={"help": "current: the U updates re-applied from the student's current weights; past: from the "
                  "weights (and optimizer state) the student took them at, ending at its current weights "
                  "(Algorithm 1's reverse of the real steps; needs --unroll-steps <= --teacher-interval)"},
    )
    unroll_keep_every: int = field(
        default=0,
        metadata={"help": "k: the reverse loop keeps every k-th of the U snapshots and recomputes the others "
                  "(memory about (U/k + k) x the student; 0: 1 where the U snapshots fit in 1 GiB, else about "
                  "sqrt(U))"},
    )
    teacher_replays: int = field(
        default=1,
        metadata={"help": "M: teacher steps per refresh, each through the same U updates and dev candidates "
                  "(the authors' replayed windows)"},
    )
    unroll_optimizer: ChoiceEnum(UNROLL_OPTIMIZERS) = field(
        default="auto",
        metadata={"help": "the student's steps as the unroll replays them: sgd (eq. 1; fairseq's SGD with its "
                  "momentum and weight decay for an SGD student), adam (fairseq's Adam, moments held fixed), or "
                  "auto: the student's own optimizer"},
    )
    unroll_lr: Optional[float] = field(
        default=None,
        metadata={"help": "learning rate of the sgd unroll (default: the student's current learning rate)"},
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
    phi_init: Optional[float] = field(
        default=None,
        metadata={"help": "the coefficient every word starts at (default 1/ln|V|; the authors' code starts at 1 on a "
                  "pretrained student); with --phi-normalization token_mean also the mean the coefficients keep, "
                  "and with --loss-scale cross_entropy the loss is scaled by 4/phi-init"},
    )
    teacher_parametrization: ChoiceEnum(PARAMETRIZATIONS) = field(
        default="exp",
        metadata={"help": "the teacher learns W itself (linear) or log W (exp: coefficients stay positive, and "
                  "--teacher-lr is relative to their size)"},
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
        default=0.5, metadata={"help": "sharpness of q(y*|x) ~ p(y*|x)^alpha over each sentence's candidates"}
    )
    teacher_path: Optional[str] = field(
        default=None, metadata={"help": "start from the teacher in this l2t_translation checkpoint or teacher file"}
    )
    continue_teacher: bool = field(
        default=False,
        metadata={"help": "with --teacher-path: take the teacher's Adam state from the file too, so that it goes on "
                  "learning where it stopped (a teacher trained across students)"},
    )
    freeze_teacher: bool = field(
        default=False, metadata={"help": "teach with a fixed teacher (no teacher updates)"}
    )
    no_lookahead_gain: bool = field(
        default=False,
        metadata={"help": "never measure the teacher steps' lookahead gain on a held-out dev batch"},
    )
    lookahead_gain_every: int = field(
        default=5,
        metadata={"help": "measure the lookahead gain (a diagnostic, not used by the teacher: a held-out dev batch "
                  "decoded and U more forward steps, a fifth of a refresh) at the 1st, (n+1)-th, (2n+1)-th... "
                  "refresh"},
    )
    seed: int = II("common.seed")
    fp16: bool = II("common.fp16")
    fp16_no_flatten_grads: bool = II("common.fp16_no_flatten_grads")
    memory_efficient_fp16: bool = II("common.memory_efficient_fp16")
    memory_efficient_bf16: bool = II("common.memory_efficient_bf16")
    tpu: bool = II("common.tpu")
    cpu: bool = II("common.cpu")
    max_update: int = II("optimization.max_update")
    max_epoch: int = II("optimization.max_epoch")
    clip_norm: float = II("optimization.clip_norm")
    valid_subset: str = II("dataset.valid_subset")
    max_tokens: Optional[int] = II("dataset.max_tokens")
    save_dir: str = II("checkpoint.save_dir")
    restore_file: str = II("checkpoint.restore_file")


def check_config(cfg):
    """Fail at start-up, with one line naming the flag (training adds :func:`check_training_config`)."""
    for flag, value in (
        ("--teacher-interval", cfg.teacher_interval),
        ("--unroll-steps", cfg.unroll_steps),
        ("--teacher-keys", cfg.teacher_keys),
        ("--teacher-dev-max-tokens", cfg.teacher_dev_max_tokens),
        ("--teacher-candidates", cfg.teacher_candidates),
        ("--teacher-replays", cfg.teacher_replays),
        ("--lookahead-gain-every", cfg.lookahead_gain_every),
    ):
        if value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}")
    for flag, value in (
        ("--unroll-lr", 1.0 if cfg.unroll_lr is None else cfg.unroll_lr),
        ("--teacher-lr", cfg.teacher_lr),
        ("--teacher-alpha", cfg.teacher_alpha),
        ("--phi-init", 1.0 if cfg.phi_init is None else cfg.phi_init),
    ):
        if not value > 0:
            raise UsageError(f"{flag} must be positive, got {value}")
    if cfg.unroll_keep_every < 0:
        raise UsageError(f"--unroll-keep-every must be at least 0, got {cfg.unroll_keep_every}")
    if cfg.unroll_start == "past" and cfg.unroll_steps > cfg.teacher_interval:
        raise UsageError(
            f"--unroll-start past replays the updates since the last refresh: --unroll-steps ({cfg.unroll_steps}) "
            f"must not exceed --teacher-interval ({cfg.teacher_interval})"
        )
    if cfg.no_unroll_momentum and cfg.unroll_optimizer == "sgd":
        raise UsageError("--no-unroll-momentum is a choice of the Adam unroll; --unroll-optimizer sgd has no momentum")
    if cfg.continue_teacher and not cfg.teacher_path:
        raise UsageError("--continue-teacher goes on training the teacher of --teacher-path, which is not given")
    if cfg.unroll_lr is not None and cfg.unroll_optimizer == "adam":
        raise UsageError("--unroll-lr sets the sgd unroll's learning rate; --unroll-optimizer adam uses Adam's")


def check_training_config(cfg):
    """What only training needs (fairseq-generate builds the task too): one line naming the flag."""
    if cfg.memory_efficient_fp16 or cfg.memory_efficient_bf16:
        raise UsageError(
            "--memory-efficient-fp16/--memory-efficient-bf16 keep no fp32 copy of the student, which the "
            "teacher's unroll needs; use --fp16"
        )
    if cfg.tpu:  # fairseq 0.12 sets --tpu for --bf16, then fails deep in its trainer without torch_xla
        raise UsageError("--bf16/--tpu: fairseq 0.12 trains in bf16 on TPUs only (--bf16 sets --tpu), where the "
                         "teacher's unroll does not run; on a GPU use --fp16")
    if cfg.max_update <= 0 and cfg.max_epoch <= 0:
        raise UsageError("l2t_translation needs --max-update or --max-epoch: training progress is part of s_t")
    if cfg.cpu and cfg.fp16 and not cfg.fp16_no_flatten_grads:  # fairseq would fail an assertion in its trainer
        raise UsageError("--fp16 with --cpu: fairseq's flat fp16 buffer needs a GPU; drop --fp16 (or, to test fp16 "
                         "on the CPU, add --fp16-no-flatten-grads)")
    check_restore_file(cfg)


def check_restore_file(cfg):
    """The checkpoint fairseq will resume from, where there is one, is a whole ``torch.save`` file (a zip archive,
    whose index is at its end: a truncated copy has none)."""
    path = cfg.restore_file
    if path == "checkpoint_last.pt":  # fairseq's default: the save dir's, if it has one
        path = os.path.join(cfg.save_dir, path)
    if os.path.isfile(path) and not zipfile.is_zipfile(path):
        raise UsageError(f"--restore-file {path}: not a whole fairseq checkpoint (truncated, or not a torch.save file)")


def load_teacher_state(path, vocab_size, num_keys, parametrization, dev_bleu_measure):
    """The teacher's ``state_dict`` and its Adam state (None if the file has none) from an l2t_translation
    checkpoint or teacher file, checked against this run (``dev_bleu_measure``: what this run's s_t calls dev
    BLEU; a file from before the measure was recorded is not checked)."""
    if not os.path.isfile(path):
        raise UsageError(f"--teacher-path {path}: no such file")
    try:
        # torch.load, not fairseq's loader: a teacher file holds the teacher alone, in the same layout
        saved = torch.load(path, map_location="cpu")["extra_state"][CHECKPOINT_KEY]
        teacher = saved["teacher"]
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same one-line answer
        raise UsageError(
            f"--teacher-path {path}: not an l2t_translation checkpoint ({type(e).__name__}: {e})"
        ) from None
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
    measure = saved.get("dev_bleu_measure")
    if measure is not None and measure != dev_bleu_measure:
        raise UsageError(
            f"--teacher-path {path}: teacher read dev BLEU as the {measure}, this run measures the {dev_bleu_measure} "
            f"(train and teach both with --eval-bleu, or both without)"
        )
    return teacher, saved.get("teacher_optimizer")


def save_teacher_file(teaching_state, path):
    """The teacher of a checkpoint's teaching state alone (its Adam state, what its s_t measures), in the layout
    ``--teacher-path`` reads (kilobytes), written atomically."""
    saved = {k: teaching_state[k] for k in ("teacher", "teacher_optimizer", "dev_bleu_measure") if k in teaching_state}
    with replacing(path) as temporary:
        torch.save({"extra_state": {CHECKPOINT_KEY: saved}}, temporary)


class Teaching:
    """The teacher of one training run and everything it needs between refreshes."""

    def __init__(self, cfg, target_dictionary, remove_bpe=None, eval_bleu=False):
        check_config(cfg)
        self.cfg, self.dictionary, self.remove_bpe, self.eval_bleu = cfg, target_dictionary, remove_bpe, eval_bleu
        if not remove_bpe and is_segmented(target_dictionary):
            logger.warning("the target dictionary holds subword pieces: without --eval-bleu-remove-bpe the "
                           "teacher's BLEU is computed on them, not on words")
        self.device = torch.device("cuda") if torch.cuda.is_available() and not cfg.cpu else torch.device("cpu")
        self.dev_bleu_measure = DEV_BLEU_MEASURES[bool(eval_bleu)]
        # where the coefficients start; the criterion takes its loss's scale from it
        self.phi_init = default_phi_init(len(target_dictionary)) if cfg.phi_init is None else cfg.phi_init
        self.teacher = Teacher(
            len(target_dictionary), num_keys=cfg.teacher_keys, state_dim=len(STATE_FEATURES), phi_init=self.phi_init,
            parametrization=cfg.teacher_parametrization, seed=cfg.seed,
        ).to(self.device)
        self.teacher_optimizer = torch.optim.Adam(self.teacher.parameters(), lr=cfg.teacher_lr)
        if cfg.teacher_path:
            teacher, optimizer = load_teacher_state(
                cfg.teacher_path, len(target_dictionary), cfg.teacher_keys, cfg.teacher_parametrization,
                self.dev_bleu_measure,
            )
            self.teacher.load_state_dict(teacher)
            if cfg.continue_teacher:
                if optimizer is None:
                    raise UsageError(f"--continue-teacher: {cfg.teacher_path} holds no Adam state of its teacher")
                self.teacher_optimizer.load_state_dict(optimizer)
                for group in self.teacher_optimizer.param_groups:  # this run's --teacher-lr
                    group["lr"] = cfg.teacher_lr
            logger.info(f"teacher loaded from {cfg.teacher_path}")
        # s_t, every feature in [0, 1], on the CPU: read at every update without waiting for the device
        self.state = torch.zeros(len(STATE_FEATURES))
        self.cached_phi = None  # Phi_t of the current state and teacher, on the device
        self.recorder = UpdateRecorder(cfg.unroll_steps, self.device)
        self.skipped_steps = 0  # teacher steps skipped for a non-finite hypergradient
        self.dev_batches = None
        self.generators = {}
        self.target_frequency = None  # of each target word in the training data, for teacher.jsonl
        self.epoch = 1

    @torch.no_grad()
    def phi(self):
        """``Phi_t = mu_theta(s_t)`` for the current state, as a constant: computed once per change of the state or
        the teacher, not at every forward."""
        if self.cached_phi is None:
            self.cached_phi = self.teacher(self.state.to(self.device))
        return self.cached_phi

    def set_feature(self, name, value):
        self.state[STATE_FEATURES.index(name)] = value
        self.cached_phi = None

    # -- watching the student ----------------------------------------------------

    def observe(self, task, sample, model, criterion, optimizer, update_num):
        """Called for every micro-batch the trainer trains on (``sample`` None for a dummy batch, which is no
        student step, so never replayed)."""
        if update_num != self.recorder.update or self.recorder.current is None or attempt_starts(model):
            self.begin_attempt(task, sample, model, criterion, optimizer, update_num)
        if sample is not None:
            self.recorder.add(sample)

    def begin_attempt(self, task, sample, model, criterion, optimizer, update_num):
        """The first micro-batch of an attempt at an update.  At a new update: refresh if it is due, and open the
        window replayed at the next refresh if it starts here."""
        if self.recorder.update is None:  # the run's first update, not resumed
            check_optimizer(optimizer, self.cfg.unroll_optimizer)
            if self.cfg.freeze_teacher and not self.cfg.teacher_path:
                logger.warning("--freeze-teacher without --teacher-path: the teacher is the untrained one, a fixed "
                               "loss with every coefficient at --phi-init")
        if self.recorder.advance(update_num):
            self.set_feature("progress", self.progress(update_num))
            if update_num > 0 and update_num % self.cfg.teacher_interval == 0:
                self.guarded_refresh(task, sample, model, criterion, optimizer, update_num)
            window_starts = (update_num + self.cfg.unroll_steps) % self.cfg.teacher_interval == 0
            if self.cfg.unroll_start == "past" and window_starts and not self.cfg.freeze_teacher:
                self.recorder.open_window(update_num, self.snapshot(model, optimizer))
        # s_t, the trainer's dropout seed, and (replayed from the past only, where each step keeps its own) the
        # step's learning rate and decay
        step = None
        if self.cfg.unroll_start == "past":
            step = step_size(optimizer, self.cfg.unroll_optimizer, self.cfg.unroll_lr, not self.cfg.no_unroll_momentum)
        self.recorder.begin(self.state, self.cfg.seed + update_num, step)

    def guarded_refresh(self, task, sample, model, criterion, optimizer, update_num):
        """The refresh, leaving the student's RNG (its dropout masks) as it was: building a dev-batch iterator
        draws from it, and a resumed run builds one where an uninterrupted one did not.  Running out of memory
        in it stops the run: fairseq's recovery would go on without the refresh on this worker alone, while the
        others wait in its collectives."""
        rng = utils.get_rng_state()
        try:
            self.refresh(task, sample, model, criterion, optimizer, update_num)
        except RuntimeError as e:
            if "out of memory" not in str(e):
                raise
            raise UsageError(
                f"the teacher's refresh at update {update_num} ran out of memory on {self.device}: lower "
                "--teacher-dev-max-tokens, --teacher-candidates or --unroll-steps, or set --unroll-keep-every"
            ) from None
        finally:
            utils.set_rng_state(rng)

    def log_metrics(self):
        """No device synchronisation: the state is on the CPU, and fairseq reads the mean coefficient's tensor only
        when it logs."""
        for name, value in zip(STATE_FEATURES, self.state.tolist()):
            metrics.log_scalar(f"s_{name}", value, round=3)
        metrics.log_scalar("phi_mean", self.phi().mean(), round=4)
        metrics.log_scalar("teacher_skipped_steps", self.skipped_steps, round=0)

    def progress(self, update_num):
        if self.cfg.max_update > 0:
            return min(update_num / self.cfg.max_update, 1.0)
        return min((self.epoch - 1) / self.cfg.max_epoch, 1.0)

    def set_dev_bleu(self, bleu):
        """Dev BLEU in [0, 1] from fairseq's own ``--eval-bleu`` validation."""
        self.set_feature("dev_bleu", bleu)

    # -- one refresh ----------------------------------------------------------------

    def refresh(self, task, sample, model, criterion, optimizer, update_num):
        """Every K updates: refresh the BLEU features of ``s_t``, update the teacher, log it."""
        start = time.perf_counter()
        self.set_feature("train_bleu", self.greedy_bleu(task, sample, model)[0])
        update = not self.cfg.freeze_teacher
        dev_sample = None
        if update or not self.eval_bleu:  # with --eval-bleu, fairseq's validation sets dev BLEU
            dev_sample = self.next_dev_batch(task, model)
            bleu, greedy = self.greedy_bleu(task, dev_sample, model)
            if not self.eval_bleu:
                self.set_feature("dev_bleu", bleu)
        record = {"update": update_num, "state": self.state.tolist()}
        if update:
            # a worker without a dev batch, or without the U updates to replay, has weight 0
            contributes = dev_sample is not None and self.recorder.holds_window(
                update_num, self.cfg.seed + update_num - self.cfg.unroll_steps, self.cfg.unroll_start == "past"
            )
            unrolled = None
            if contributes:
                unrolled = self.unrolled(task, model, criterion, optimizer, dev_sample, greedy, update_num)
            measured = []  # M~ before each replayed step
            lookahead = self.measures_lookahead(update_num)
            for replay in range(self.cfg.teacher_replays):
                last = replay == self.cfg.teacher_replays - 1
                step = teach_once(self.teacher, self.teacher_optimizer, unrolled, lookahead=last and lookahead)
                self.skipped_steps += step.skipped
                measured.append(step.dev_expected_bleu)
            for name in ("dev_expected_bleu", "hypergrad_norm", "lookahead_gain"):
                if getattr(step, name) is not None:
                    metrics.log_scalar(f"teacher_{name}", getattr(step, name), round=6)
            record.update(step.record(), skipped_steps=self.skipped_steps)
            if self.cfg.teacher_replays > 1:
                record["replays_dev_expected_bleu"] = measured
        self.recorder.close_window()
        self.cached_phi = None  # the teacher has moved
        record["teacher_digest"] = distributed.check_consistent(self.teacher, "the teacher")
        record["seconds"] = round(time.perf_counter() - start, 3)
        phi = self.phi()
        record["phi_bands"] = phi_bands(phi.cpu(), self.training_target_frequency(task))
        record["phi"] = [round(c, 5) for c in phi.tolist()]
        if distributed.rank() == 0:
            teacher_log.append(self.cfg.save_dir, record)

    def measures_lookahead(self, update_num):
        """Whether the refresh at ``update_num`` measures the lookahead gain (decided by the update number alone:
        the gain is averaged over the workers)."""
        refresh = update_num // self.cfg.teacher_interval - 1
        return not self.cfg.no_lookahead_gain and refresh % self.cfg.lookahead_gain_every == 0

    def unrolled(self, task, model, criterion, optimizer, dev_sample, greedy, update_num):
        """This worker's part of a teacher step: its latest U updates, and candidates for its dev batch (and for
        a held-out one, for the lookahead gain)."""
        batches, states, steps = self.recorder.replay()
        seed = self.cfg.seed + update_num
        heldout = None
        if not self.cfg.no_lookahead_gain:
            # drawn at every refresh, measured or not: the dev batches the teacher learns from do not depend on
            # when the gain is measured
            heldout_sample = self.next_dev_batch(task, model)
            if heldout_sample is not None and self.measures_lookahead(update_num):
                heldout = self.dev_objective(
                    model, self.candidates(task, model, heldout_sample, seed + HELDOUT_SEED_OFFSET)
                )
        student = None
        if self.cfg.unroll_start == "past":  # each step with the learning rate and decay the student took it with
            params, rule = self.recorder.window[1]
            rule = dataclasses.replace(rule, lr=[lr for lr, _ in steps], decay=[decay for _, decay in steps])
            student = fp32_params(model, optimizer)
        else:
            params, rule = self.snapshot(model, optimizer, copy=False)
        return Unrolled(
            step_loss=make_step_loss(model, criterion.loss, criterion.sample_size),
            params={name: p.to(self.device) for name, p in params.items()},
            batches=batches,
            states=states,
            rule=rule,
            dev_objective=self.dev_objective(model, self.candidates(task, model, dev_sample, seed, greedy)),
            device_type=self.device.type,
            heldout=heldout,
            keep_every=self.keep_every(params),
            student=student,
        )

    def snapshot(self, model, optimizer, copy=True):
        """The student's fp32 weights and its update rule now (``copy``: kept while the student trains on)."""
        rule = student_rule(
            model, optimizer, self.cfg.unroll_optimizer, self.cfg.unroll_lr,
            momentum=not self.cfg.no_unroll_momentum, clip_norm=self.cfg.clip_norm,
        )
        params = fp32_params(model, optimizer)
        if copy:
            params = {name: p.clone() for name, p in params.items()}
            if rule.velocity is not None:
                rule.velocity = {name: v.clone() for name, v in rule.velocity.items()}
        return params, rule

    def keep_every(self, params):
        """k: every snapshot where the U of them fit in KEEP_ALL_BYTES (no forward step recomputed), else about
        sqrt(U) (memory about 2 sqrt(U) x the student)."""
        if self.cfg.unroll_keep_every:
            return self.cfg.unroll_keep_every
        snapshots = self.cfg.unroll_steps * sum(p.numel() * p.element_size() for p in params.values())
        return 1 if snapshots <= KEEP_ALL_BYTES else math.ceil(math.sqrt(self.cfg.unroll_steps))

    def dev_objective(self, model, candidates):
        # the candidates are scored in chunks of a training batch's size: the memory of one ordinary step
        max_tokens = self.cfg.max_tokens or self.cfg.teacher_dev_max_tokens
        return DevExpectedBleu(model, candidates, self.cfg.teacher_alpha, self.dictionary.pad(), max_tokens)

    def candidates(self, task, model, sample, seed, greedy=None):
        """Sampled (or n-best) candidates plus the greedy output of each sentence, scored by BLEU."""
        with utils.set_torch_seed(seed):  # sampling must not shift the student's own RNG stream
            sampled = decode(task, self.generator(task, model, "candidates"), model, sample)
        if greedy is None:
            greedy = decode(task, self.generator(task, model, "greedy"), model, sample)
        return build_candidates(
            sample, [s + g for s, g in zip(sampled, greedy)], self.text, self.dictionary.pad(), self.dictionary.eos()
        )

    def generator(self, task, model, kind):
        if kind not in self.generators:
            search, count = ("beam", 1) if kind == "greedy" else (
                self.cfg.teacher_candidate_search, self.cfg.teacher_candidates)
            self.generators[kind] = build_candidate_generator(task, model, search, count)
        return self.generators[kind]

    def text(self, tokens, reference=False):
        return bleu_text(self.dictionary, tokens, self.remove_bpe, reference)

    def greedy_bleu(self, task, sample, model):
        """Greedy-decoding corpus BLEU of the student on every worker's batch, in [0, 1], and this worker's
        greedy outputs (``sample`` None: a dummy batch, or no dev batch, which adds nothing)."""
        greedy = decode(task, self.generator(task, model, "greedy"), model, sample) if sample is not None else []
        references = [self.text(t, reference=True) for t in sample["target"]] if sample is not None else []
        statistics = bleu_statistics([self.text(h[0]) for h in greedy], references)
        return bleu_from_statistics(distributed.all_reduce_sum(statistics.to(self.device)).cpu()), greedy

    def new_dev_batches(self, task):
        return DevBatches(task, self.cfg.valid_subset.split(",")[0], self.cfg.teacher_dev_max_tokens, self.cfg.seed)

    def next_dev_batch(self, task, model):
        if self.dev_batches is None:
            self.dev_batches = self.new_dev_batches(task)
        return self.dev_batches.next(model, self.device)

    def training_target_frequency(self, task):
        if self.target_frequency is None:
            if "train" not in task.datasets:
                task.load_dataset("train")
            self.target_frequency = target_frequency(task.datasets["train"].tgt, len(self.dictionary))
        return self.target_frequency

    # -- checkpoints ------------------------------------------------------------------

    def state_dict(self):
        """Everything a resumed run needs to go on as if it had not stopped.  fairseq asks only the first worker
        (no collective may run here): its latest updates and dev-batch position are saved; another worker resumes
        with none and takes part with weight 0 until it has taken U updates again."""
        return {
            "teacher": self.teacher.state_dict(),
            "teacher_optimizer": self.teacher_optimizer.state_dict(),
            "dev_bleu_measure": self.dev_bleu_measure,
            "student_state": self.state.clone(),
            "skipped_steps": self.skipped_steps,
            "world_size": distributed.world_size(),
            "dev_batches": self.dev_batches.state_dict() if self.dev_batches is not None else None,
            **self.recorder.state_dict(),
        }

    def load_state_dict(self, state, task, save_dir):
        self.teacher.load_state_dict(state["teacher"])
        self.teacher_optimizer.load_state_dict(state["teacher_optimizer"])
        self.state.copy_(state["student_state"])
        self.cached_phi = None
        self.skipped_steps = state.get("skipped_steps", 0)
        self.recorder.update = state.get("update")
        if distributed.rank() == 0 and state.get("world_size") == distributed.world_size():
            self.recorder.load_state_dict(state)
            if state["dev_batches"] is not None:
                self.dev_batches = self.new_dev_batches(task)
                self.dev_batches.load_state_dict(state["dev_batches"])
        if self.recorder.update is not None and distributed.rank() == 0:
            teacher_log.truncate(save_dir, self.recorder.update)
