"""Task ``l2t_translation``: fairseq's translation task whose loss is set, and learned, by a teacher.

A thin adapter: fairseq's hooks call into :class:`l2t_fairseq.teaching.Teaching`,
which holds the teacher, the state it reads and the refresh protocol.
"""

import os
from dataclasses import dataclass

from fairseq import utils
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask

from l2t_fairseq import distributed
from l2t_fairseq.criterions.l2t_dlf import L2TDLFCriterion
from l2t_fairseq.errors import UsageError
from l2t_fairseq.teaching import CHECKPOINT_KEY, Teaching, TeachingConfig, check_training_config


@dataclass
class L2TTranslationConfig(TranslationConfig, TeachingConfig):
    """fairseq's translation flags and the teacher's (``l2t_fairseq.teaching.TeachingConfig``)."""


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
        self.teaching = Teaching(cfg, tgt_dict, cfg.eval_bleu_remove_bpe, cfg.eval_bleu)

    def build_criterion(self, cfg):
        """Called by fairseq-train only: where the training flags are checked."""
        check_training_config(self.cfg)
        criterion = super().build_criterion(cfg)
        if not isinstance(criterion, L2TDLFCriterion):
            raise UsageError(
                f"--task l2t_translation trains its teacher for --criterion l2t_dlf, got {type(criterion).__name__} "
                "(use --task translation for other criteria)"
            )
        return criterion

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        # every worker observes every micro-batch, also a dummy one (ignore_grad): refreshes are collective
        self.teaching.observe(
            self, None if ignore_grad else sample, distributed.unwrap(model), criterion, optimizer, update_num
        )
        result = super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad)
        self.teaching.log_metrics()
        return result

    def begin_epoch(self, epoch, model):
        super().begin_epoch(epoch, model)
        self.teaching.epoch = epoch

    def post_validate(self, model, stats, agg):
        if "bleu" in stats:  # fairseq's --eval-bleu
            self.teaching.set_dev_bleu(stats["bleu"] / 100)

    def get_checkpoint_dict(self):
        """Saved by fairseq in every checkpoint's ``extra_state``, restored by :meth:`set_checkpoint_dict`."""
        return {CHECKPOINT_KEY: self.teaching.state_dict()}

    def set_checkpoint_dict(self, state):
        self.teaching.load_state_dict(state, self, self.cfg.save_dir)
