"""Task ``l2t_translation``: fairseq's translation task whose loss is set, and learned, by a teacher.

A thin adapter: its config adds the teacher's flags to fairseq's translation
flags; it builds the parts of :class:`l2t_fairseq.refresh.teaching.Teaching` (the
coefficients, the dev measure with fairseq's generator and the valid subset),
hands the coefficients to the criterion and the criterion's loss to the
teaching, and passes fairseq's hooks on.
"""

import os
from dataclasses import dataclass, field
from typing import Optional

import torch
from fairseq import utils
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask
from omegaconf import II

from l2t_fairseq import distributed
from l2t_fairseq.criterions.l2t_dlf import L2TDLFCriterion
from l2t_fairseq.dev_measure.batches import DevBatches
from l2t_fairseq.dev_measure.candidates import CANDIDATE_SEARCHES
from l2t_fairseq.dev_measure.measure import Decoder, DevMeasure
from l2t_fairseq.diagnostics import target_frequency
from l2t_fairseq.errors import UsageError
from l2t_fairseq.refresh.startup_checks import check_config, check_dev_batch_size, check_training_config
from l2t_fairseq.refresh.teaching import Teaching
from l2t_fairseq.teacher.coefficients import Coefficients
from l2t_fairseq.teacher.file import CHECKPOINT_KEY
from l2t_fairseq.teacher.model import PARAMETRIZATIONS
from l2t_fairseq.unroll.optimizer import UNROLL_OPTIMIZERS

UNROLL_STARTS = ("current", "past")


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
                  "momentum and weight decay for an SGD student), adam (fairseq's Adam, its moments carried), or "
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
    phi_log_every: int = field(
        default=10,
        metadata={"help": "log the whole Phi vector (SAVE_DIR/teacher_phi.npy, float16) at the 1st, (n+1)-th, "
                  "(2n+1)-th... and the last refresh (teacher.jsonl logs its bands and extremes at every refresh)"},
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


@dataclass
class L2TTranslationConfig(TranslationConfig, TeachingConfig):
    """fairseq's translation flags and the teacher's (:class:`TeachingConfig`)."""


@register_task("l2t_translation", dataclass=L2TTranslationConfig)
class L2TTranslationTask(TranslationTask):
    cfg: L2TTranslationConfig

    @classmethod
    def setup_task(cls, cfg, **kwargs):
        data = utils.split_paths(cfg.data)[0] if cfg.data else None
        if not data or not os.path.isdir(data):
            raise UsageError(f"DATA {cfg.data}: no such directory (a folder of fairseq-preprocess's binarized data)")
        return super().setup_task(cfg, **kwargs)

    def __init__(self, cfg, src_dict, tgt_dict):
        super().__init__(cfg, src_dict, tgt_dict)
        check_config(cfg)
        device = torch.device("cuda") if torch.cuda.is_available() and not cfg.cpu else torch.device("cpu")
        self.coefficients = Coefficients(cfg, len(tgt_dict), device, cfg.eval_bleu)
        dev_stream = DevBatches(self, cfg.valid_subset.split(",")[0], cfg.teacher_dev_max_tokens, cfg.seed)
        decoder = Decoder(self, cfg.teacher_candidate_search, cfg.teacher_candidates)
        measure = DevMeasure(cfg, tgt_dict, cfg.eval_bleu_remove_bpe, decoder, dev_stream, device)
        self.teaching = Teaching(cfg, self.coefficients, measure, self.training_target_frequency, cfg.eval_bleu)

    def training_target_frequency(self):
        if "train" not in self.datasets:
            self.load_dataset("train")
        return target_frequency(self.datasets["train"].tgt, len(self.target_dictionary))

    def build_criterion(self, cfg):
        """Called by fairseq-train only: where the training flags are checked."""
        check_training_config(self.cfg)
        subset = self.cfg.valid_subset.split(",")[0]
        if subset not in self.datasets:
            self.load_dataset(subset)
        check_dev_batch_size(self.cfg, self.datasets[subset], subset)
        criterion = super().build_criterion(cfg)
        if not isinstance(criterion, L2TDLFCriterion):
            raise UsageError(
                f"--task l2t_translation trains its teacher for --criterion l2t_dlf, got {type(criterion).__name__} "
                "(use --task translation for other criteria)"
            )
        self.connect(criterion)
        return criterion

    def connect(self, criterion):
        """The criterion reads the teacher's coefficients; the teacher's unroll replays the criterion's loss."""
        criterion.set_coefficients(self.coefficients)
        self.teaching.set_student_loss(criterion.loss, criterion.sample_size)

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        # every worker observes every micro-batch, also a dummy one (ignore_grad): refreshes are collective
        self.teaching.observe(None if ignore_grad else sample, distributed.unwrap(model), optimizer, update_num)
        result = super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad)
        self.coefficients.log_metrics()
        return result

    def begin_epoch(self, epoch, model):
        super().begin_epoch(epoch, model)
        self.teaching.epoch = epoch

    def post_validate(self, model, stats, agg):
        if "bleu" in stats:  # fairseq's --eval-bleu: dev BLEU in [0, 1]
            self.coefficients.set_feature("dev_bleu", stats["bleu"] / 100)

    def get_checkpoint_dict(self):
        """Saved by fairseq in every checkpoint's ``extra_state``, restored by :meth:`set_checkpoint_dict`."""
        return {CHECKPOINT_KEY: self.teaching.state_dict()}

    def set_checkpoint_dict(self, state):
        self.teaching.load_state_dict(state)
