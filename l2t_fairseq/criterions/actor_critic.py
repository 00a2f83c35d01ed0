"""Criterion ``actor_critic``: actor-critic fine-tuning (Bahdanau et al., ICLR 2017), the paper's AC baseline.

Used with ``--task actor_critic_translation``, which gives the criterion the
update number (the critic's pretraining) and moves the delayed networks after
every optimizer step.  The critic and the delayed actor and critic are this
criterion's modules: fairseq's optimizer trains the critic with the actor, and
every checkpoint holds all three (a run resumes exactly).  Fine-tune from a
cross-entropy checkpoint with ``--finetune-from-model`` (the critic then
starts fresh).  The formulas are in :mod:`l2t_fairseq.actor_critic`.
"""

import copy
from dataclasses import dataclass, field

import torch
from fairseq import metrics, utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from omegaconf import II

from l2t_fairseq import actor_critic
from l2t_fairseq.criterions.sequence_level import log_loss_and_nll, sentence_logging_output
from l2t_fairseq.dev_measure.bleu import bleu_text
from l2t_fairseq.dev_measure.candidates import build_candidate_generator, build_candidates, decode
from l2t_fairseq.errors import UsageError
from l2t_fairseq.unroll.loss import log_probs
from l2t_fairseq.unroll.student import evaluation


@dataclass
class ActorCriticConfig(FairseqDataclass):
    critic_embed_dim: int = field(default=256, metadata={"help": "the critic's word embeddings (authors: 256)"})
    critic_hidden_size: int = field(
        default=256, metadata={"help": "the critic's LSTM units per direction (authors: 256)"}
    )
    critic_pretrain_updates: int = field(
        default=1000,
        metadata={"help": "first updates that train the critic alone, the actor fixed (the authors pretrain the "
                  "critic of a pretrained actor before training both)"},
    )
    target_update_rate: float = field(
        default=0.001, metadata={"help": "tau: the delayed actor and critic move tau of the way after every update"}
    )
    critic_variance_weight: float = field(
        default=0.001, metadata={"help": "lambda: weight of the variance of the critic's values over the vocabulary"}
    )
    actor_nll_weight: float = field(
        default=0.1,
        metadata={"help": "weight of the reference's log-likelihood added to the actor's loss (the PyTorch "
                  "reimplementation ERAC: 0.1; 0 for the pure actor-critic gradient)"},
    )
    fp16: bool = II("common.fp16")
    bf16: bool = II("common.bf16")


@register_criterion("actor_critic", dataclass=ActorCriticConfig)
class ActorCriticCriterion(FairseqCriterion):
    """``-sum_t sum_a p(a) Q(a) + w * NLL(y)`` for the actor plus the critic's TD loss, per sentence.

    Each training sentence gets one sample ``y^`` from the actor (fairseq's
    sampling search, dropout off); actor, critic and the delayed networks are
    then run on it under teacher forcing.
    """

    def __init__(self, task, critic_embed_dim, critic_hidden_size, critic_pretrain_updates, target_update_rate,
                 critic_variance_weight, actor_nll_weight, fp16=False, bf16=False):
        super().__init__(task)
        if fp16 or bf16:
            raise UsageError("--criterion actor_critic runs in fp32: drop --fp16/--bf16")
        if not hasattr(task, "actor_template"):
            raise UsageError("--criterion actor_critic needs --task actor_critic_translation")
        for flag, value in (("--critic-embed-dim", critic_embed_dim), ("--critic-hidden-size", critic_hidden_size)):
            if value < 1:
                raise UsageError(f"{flag} must be at least 1, got {value}")
        if critic_pretrain_updates < 0:
            raise UsageError(f"--critic-pretrain-updates must be at least 0, got {critic_pretrain_updates}")
        if not 0 < target_update_rate <= 1:
            raise UsageError(f"--target-update-rate must be in (0, 1], got {target_update_rate}")
        if critic_variance_weight < 0:
            raise UsageError(f"--critic-variance-weight must be at least 0, got {critic_variance_weight}")
        if actor_nll_weight < 0:
            raise UsageError(f"--actor-nll-weight must be at least 0, got {actor_nll_weight}")
        self.critic_pretrain_updates = critic_pretrain_updates
        self.target_update_rate = target_update_rate
        self.critic_variance_weight = critic_variance_weight
        self.actor_nll_weight = actor_nll_weight
        dictionary = task.target_dictionary
        self.critic = actor_critic.build_critic(dictionary, critic_embed_dim, critic_hidden_size)
        # the delayed networks: saved in checkpoints, never trained (fairseq's optimizer takes requires_grad only)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.target_actor = copy.deepcopy(task.actor_template).requires_grad_(False)
        # whether the delayed networks were set to the actor and critic yet: at the first forward, i.e. after
        # --finetune-from-model has loaded the actor; a checkpoint that holds them sets it
        self.register_buffer("targets_ready", torch.zeros((), dtype=torch.bool))
        self.update_num = 0
        self.remove_bpe = getattr(task.cfg, "eval_bleu_remove_bpe", None)

    def load_state_dict(self, state_dict, strict=True):
        """A checkpoint of another criterion (cross-entropy's, ``--finetune-from-model``) has no critic: the
        critic and the delayed networks then start fresh."""
        if state_dict is None:
            return None
        return super().load_state_dict(state_dict, strict)

    def text(self, tokens, reference=False):
        return bleu_text(self.task.target_dictionary, tokens, self.remove_bpe, reference)

    def update_targets(self, actor):
        """After every optimizer step (the task calls it)."""
        if self.targets_ready:
            actor_critic.soft_update(self.target_critic, self.critic, self.target_update_rate)
            actor_critic.soft_update(self.target_actor, actor, self.target_update_rate)

    def sample(self, model, sample):
        """One sample per sentence from the actor, as a teacher-forcing batch, and its per-step rewards."""
        # built per call (cheap): a generator kept as an attribute would be a submodule, the actor in the checkpoint
        generator = build_candidate_generator(self.task, model, "sample", 1)
        hypotheses = [nbest[:1] for nbest in decode(self.task, generator, model, sample)]
        candidates = build_candidates(
            sample, hypotheses, self.text, self.padding_idx, self.task.target_dictionary.eos()
        )
        rewards = torch.zeros(candidates.sample["target"].shape, dtype=torch.float)
        for row, tokens in enumerate(candidates.sample["target"]):
            tokens = utils.strip_pad(tokens, self.padding_idx)
            reference = self.text(sample["target"][row], reference=True)
            rewards[row, : len(tokens)] = actor_critic.prefix_rewards(tokens, reference, self.text)
        return candidates, rewards.to(candidates.bleu.device)

    def forward(self, model, sample, reduce=True):
        if not self.targets_ready:
            actor_critic.copy_weights(self.target_actor, model)
            actor_critic.copy_weights(self.target_critic, self.critic)
            self.targets_ready.fill_(True)
        candidates, rewards = self.sample(model, sample)
        batch = candidates.sample
        actions, prev_tokens = batch["target"], batch["net_input"]["prev_output_tokens"]
        mask = actions.ne(self.padding_idx).to(rewards.dtype)
        references = sample["target"][candidates.sentence]

        values = actor_critic.critic_values(self.critic, references, self.padding_idx, prev_tokens)
        with torch.no_grad(), evaluation(self.target_actor), evaluation(self.target_critic):
            next_probs = log_probs(self.target_actor(**batch["net_input"])).exp()
            next_values = actor_critic.critic_values(self.target_critic, references, self.padding_idx, prev_tokens)
            targets = actor_critic.td_targets(rewards, next_probs, next_values, mask)
        critic_loss, squared_error, variance = actor_critic.critic_loss(
            values, actions, targets, mask, self.critic_variance_weight
        )

        lprobs = log_probs(model(**batch["net_input"]))
        objective = actor_critic.actor_objective(lprobs, values, mask)
        reference_lprobs = log_probs(model(**sample["net_input"]))
        nll = -reference_lprobs.gather(-1, sample["target"].unsqueeze(-1)).squeeze(-1)[
            sample["target"].ne(self.padding_idx)].sum()
        # while the critic is pretrained the actor stays fixed: its loss enters with weight 0 (gradients of zero,
        # so that every parameter takes part in every update under data parallelism)
        actor_weight = 0.0 if model.training and self.update_num < self.critic_pretrain_updates else 1.0
        loss = critic_loss + actor_weight * (self.actor_nll_weight * nll - objective)
        logging_output = sentence_logging_output(
            loss, nll, sample, td_error=squared_error.data, critic_variance=variance.data, actor_value=objective.data,
            sample_bleu=candidates.bleu.sum().data, sample_tokens=mask.sum().data,
        )
        return loss, logging_output["sample_size"], logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        """``loss`` per sentence; ``nll_loss`` per reference token in base 2 (``ppl`` from it); the critic's
        squared TD error and value variance per sampled token; the actor's expected value and its samples' BLEU
        per sentence."""
        total = log_loss_and_nll(logging_outputs)
        sentences, sampled = total("nsentences"), max(total("sample_tokens"), 1)
        metrics.log_scalar("td_error", total("td_error") / sampled, sampled, round=5)
        metrics.log_scalar("critic_variance", total("critic_variance") / sampled, sampled, round=5)
        metrics.log_scalar("actor_value", total("actor_value") / sentences, sentences, round=4)
        metrics.log_scalar("sample_bleu", total("sample_bleu") / sentences, sentences, round=4)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
