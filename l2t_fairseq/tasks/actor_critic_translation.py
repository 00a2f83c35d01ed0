"""Task ``actor_critic_translation``: fairseq's translation task with the hooks the ``actor_critic`` criterion needs.

A thin adapter: it hands the criterion a copy of the actor's architecture (for
the delayed actor), the update number (the critic's pretraining) and, after
every optimizer step, the call that moves the delayed networks.
"""

from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask

from l2t_fairseq import distributed
from l2t_fairseq.criterions.actor_critic import ActorCriticCriterion
from l2t_fairseq.errors import UsageError


@register_task("actor_critic_translation", dataclass=TranslationConfig)
class ActorCriticTranslationTask(TranslationTask):
    actor_template = None  # the model fairseq built: its architecture is the delayed actor's

    def build_model(self, cfg, from_checkpoint=False):
        model = super().build_model(cfg, from_checkpoint)
        self.actor_template = model
        return model

    def build_criterion(self, cfg):
        if self.actor_template is None:
            raise UsageError("--task actor_critic_translation: the model must be built before the criterion")
        criterion = super().build_criterion(cfg)
        if not isinstance(criterion, ActorCriticCriterion):
            raise UsageError(f"--task actor_critic_translation is for --criterion actor_critic, got "
                             f"{type(criterion).__name__} (use --task translation for other criteria)")
        self.criterion = criterion
        return criterion

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        self.criterion.update_num = update_num
        return super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad)

    def optimizer_step(self, optimizer, model, update_num):
        super().optimizer_step(optimizer, model, update_num)
        self.criterion.update_targets(distributed.unwrap(model))
