"""The actor-critic baseline: rewards, TD targets, the delayed networks, the split of gradients, fairseq runs."""

import re
from argparse import Namespace

import pytest
import torch
from conftest import PLUGIN, run, synthetic_batch, tiny_student, train_in_process

from l2t_fairseq import actor_critic
from l2t_fairseq.criterions.actor_critic import ActorCriticCriterion
from l2t_fairseq.dev_measure.bleu import bleu_text, sentence_bleu
from l2t_fairseq.tasks.actor_critic_translation import ActorCriticTranslationTask


def test_per_step_rewards_sum_to_the_sentences_bleu(dictionary):
    generator = torch.Generator().manual_seed(3)
    reference = "w1 w2 w3 w4 w5 w6"
    for _ in range(5):
        tokens = torch.cat([torch.randint(dictionary.nspecial, len(dictionary), (7,), generator=generator),
                            torch.tensor([dictionary.eos()])])

        def text(t):
            return bleu_text(dictionary, t, None)

        rewards = actor_critic.prefix_rewards(tokens, reference, text)
        assert rewards.shape == tokens.shape
        assert rewards.sum().item() == pytest.approx(sentence_bleu(text(tokens), reference), abs=1e-6)
        assert rewards[-1] == 0  # EOS adds no word


def test_td_target_by_hand():
    # one row of 3 real positions and one of 2 (then padding); vocabulary of 2 words
    rewards = torch.tensor([[0.1, 0.2, 0.3], [0.5, 0.25, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    probs = torch.tensor([[[0.5, 0.5], [0.25, 0.75], [1.0, 0.0]], [[0.0, 1.0], [0.5, 0.5], [0.5, 0.5]]])
    values = torch.tensor([[[1.0, 3.0], [2.0, 4.0], [9.0, 9.0]], [[7.0, 7.0], [2.0, 6.0], [8.0, 8.0]]])
    targets = actor_critic.td_targets(rewards, probs, values, mask)
    # q_i = r_i + sum_a p'(a | prefix_{i+1}) Q'(a; prefix_{i+1}); the last real position: q = r
    expected = torch.tensor([[0.1 + (0.25 * 2 + 0.75 * 4), 0.2 + 9.0, 0.3], [0.5 + (0.5 * 2 + 0.5 * 6), 0.25, 0.0]])
    torch.testing.assert_close(targets, expected)


def test_critic_loss_is_squared_td_error_plus_the_variance_penalty():
    values = torch.tensor([[[1.0, 3.0, 2.0], [0.0, 0.0, 3.0]]], requires_grad=True)
    actions = torch.tensor([[1, 2]])
    targets = torch.tensor([[2.5, 1.0]])
    mask = torch.tensor([[1.0, 0.0]])  # the second position is padding: it counts for nothing
    loss, squared, variance = actor_critic.critic_loss(values, actions, targets, mask, 0.5)
    assert squared.item() == pytest.approx((3.0 - 2.5) ** 2)
    assert variance.item() == pytest.approx(((1 - 2) ** 2 + (3 - 2) ** 2 + 0) / 3)
    assert loss.item() == pytest.approx(0.25 + 0.5 * 2 / 3)
    loss.backward()
    assert values.grad[0, 1].abs().sum() == 0


def test_soft_update_moves_the_delayed_network_by_the_rate():
    torch.manual_seed(0)
    source, target = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = [p.clone() for p in target.parameters()]
    actor_critic.soft_update(target, source, 0.001)
    for old, new, s in zip(before, target.parameters(), source.parameters()):
        torch.testing.assert_close(new, 0.001 * s + 0.999 * old)


def criterion_and_actor(dictionary, **overrides):
    """The criterion on a tiny Transformer actor, with the task pieces it needs."""
    torch.manual_seed(0)
    actor = tiny_student("transformer", dictionary, dropout=0.0).float()
    cfg = Namespace(left_pad_source=True, left_pad_target=False, eval_bleu_remove_bpe=None)
    task = ActorCriticTranslationTask(cfg, dictionary, dictionary)
    task.actor_template = actor
    flags = dict(critic_embed_dim=8, critic_hidden_size=8, critic_pretrain_updates=5, target_update_rate=0.001,
                 critic_variance_weight=0.001, actor_nll_weight=0.0)
    flags.update(overrides)
    return ActorCriticCriterion(task, **flags), actor


def gradients(criterion, actor, sample, update_num):
    criterion.update_num = update_num
    for module in (actor, criterion):
        module.zero_grad(set_to_none=True)
    torch.manual_seed(5)  # the same sampled sentences in every call
    loss, _, log = criterion(actor, sample)
    loss.backward()

    def grads(module):
        return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in module.parameters()]

    return grads(actor), grads(criterion.critic), log


def test_actor_and_critic_gradients_do_not_cross(dictionary):
    criterion, actor = criterion_and_actor(dictionary)
    sample = synthetic_batch(dictionary, sentences=4, seed=2)
    # while the critic is pretrained (update 0 < 5) the loss is the critic's alone
    actor_pretraining, critic_pretraining, log = gradients(criterion, actor, sample, 0)
    actor_joint, critic_joint, _ = gradients(criterion, actor, sample, 10)
    assert all(g.abs().sum() == 0 for g in actor_pretraining), "the critic's loss reached the actor"
    assert any(g.abs().sum() > 0 for g in actor_joint), "the actor gets no gradient"
    assert any(g.abs().sum() > 0 for g in critic_joint)
    for alone, joint in zip(critic_pretraining, critic_joint):  # the actor's term adds nothing to the critic's
        torch.testing.assert_close(alone, joint)
    assert not any(p.requires_grad for p in criterion.target_actor.parameters())
    assert not any(p.requires_grad for p in criterion.target_critic.parameters())
    assert log["td_error"] >= 0 and 0 <= log["sample_bleu"] <= log["nsentences"]


def test_delayed_networks_start_at_the_actor_and_critic_then_follow_slowly(dictionary):
    criterion, actor = criterion_and_actor(dictionary, target_update_rate=0.5)
    sample = synthetic_batch(dictionary, sentences=3, seed=4)
    criterion(actor, sample)  # the first forward copies the actor and critic
    for target, source in ((criterion.target_actor, actor), (criterion.target_critic, criterion.critic)):
        assert all(torch.equal(t, s) for t, s in zip(target.parameters(), source.parameters()))
    before = [p.clone() for p in criterion.target_critic.parameters()]
    with torch.no_grad():
        for p in criterion.critic.parameters():
            p.add_(1.0)
    criterion.update_targets(actor)
    for old, new in zip(before, criterion.target_critic.parameters()):
        torch.testing.assert_close(new, old + 0.5)
    criterion(actor, sample)  # a later forward copies nothing
    torch.testing.assert_close(next(criterion.target_critic.parameters()), before[0] + 0.5)


def ac_flags(data, save_dir, *extra):
    return [
        data, "--user-dir", PLUGIN, "--task", "actor_critic_translation", "--criterion", "actor_critic",
        "--arch", "transformer_l2t_toy", "--optimizer", "adam", "--max-tokens", "1000", "--save-dir", save_dir,
        "--no-epoch-checkpoints", "--log-format", "simple", "--cpu", "--seed", "1",
        "--critic-embed-dim", "32", "--critic-hidden-size", "32", *map(str, extra),
    ]


def validations(stdout, key):
    return [float(v) for v in re.findall(rf"valid on 'valid' subset \|.*? \| {key} ([0-9.]+)", stdout)]


def test_fine_tune_from_cross_entropy_lowers_td_error_and_keeps_bleu(toy_data, tmp_path):
    bleu = ["--eval-bleu", "--eval-bleu-args", '{"beam": 1}', "--eval-tokenized-bleu"]
    ce = run(
        "fairseq-train", toy_data, "--user-dir", PLUGIN, "--task", "translation", "--criterion", "cross_entropy",
        "--arch", "transformer_l2t_toy", "--optimizer", "adam", "--lr", "3e-3", "--max-tokens", "1000",
        "--max-update", "150", "--save-dir", tmp_path / "ce", "--no-epoch-checkpoints", "--log-format", "simple",
        "--cpu", "--seed", "1", *bleu,
    ).stdout
    start_bleu = validations(ce, "bleu")[-1]
    result = run("fairseq-train", *ac_flags(
        toy_data, tmp_path / "ac", "--finetune-from-model", tmp_path / "ce" / "checkpoint_last.pt", "--lr", "1e-3",
        "--max-update", "60", "--critic-pretrain-updates", "40", "--validate-interval-updates", "20",
        "--log-interval", "20", *bleu,
    )).stdout
    td_errors, bleus = validations(result, "td_error"), validations(result, "bleu")
    assert len(td_errors) >= 3, result[-2000:]
    assert td_errors[-1] < td_errors[0], td_errors
    # 20 joint updates at the authors' lr scale: the fine-tuned actor keeps its BLEU (within a point of dev noise)
    assert bleus[-1] >= start_bleu - 1.0, (start_bleu, bleus)


def test_resume_restores_critic_and_delayed_networks_exactly(toy_data, tmp_path):
    common = ["--lr", "1e-3", "--critic-pretrain-updates", "3", "--target-update-rate", "0.1", "--log-interval", "2"]
    run("fairseq-train", *ac_flags(toy_data, tmp_path / "whole", "--max-update", "8", *common))
    run("fairseq-train", *ac_flags(toy_data, tmp_path / "cut", "--max-update", "4", *common))
    run("fairseq-train", *ac_flags(toy_data, tmp_path / "cut", "--max-update", "8", *common))
    whole = torch.load(tmp_path / "whole" / "checkpoint_last.pt", weights_only=False)
    resumed = torch.load(tmp_path / "cut" / "checkpoint_last.pt", weights_only=False)
    for part in ("model", "criterion"):
        assert whole[part].keys() == resumed[part].keys()
        for name in whole[part]:
            torch.testing.assert_close(resumed[part][name], whole[part][name], rtol=0, atol=0, msg=name)
    assert any(name.startswith("target_actor.") for name in whole["criterion"])


@pytest.mark.parametrize("flags, message", [
    (["--task", "translation", "--criterion", "actor_critic"],
     "--criterion actor_critic needs --task actor_critic_translation"),
    (["--task", "actor_critic_translation", "--criterion", "cross_entropy"],
     "--task actor_critic_translation is for --criterion actor_critic, got CrossEntropyCriterion "
     "(use --task translation for other criteria)"),
    (["--task", "actor_critic_translation", "--criterion", "actor_critic", "--target-update-rate", "0"],
     "--target-update-rate must be in (0, 1], got 0.0"),
    (["--task", "actor_critic_translation", "--criterion", "actor_critic", "--critic-pretrain-updates", "-1"],
     "--critic-pretrain-updates must be at least 0, got -1"),
    (["--task", "actor_critic_translation", "--criterion", "actor_critic", "--critic-hidden-size", "0"],
     "--critic-hidden-size must be at least 1, got 0"),
    (["--task", "actor_critic_translation", "--criterion", "actor_critic", "--bf16"],
     "--criterion actor_critic runs in fp32: drop --fp16/--bf16"),
])
def test_bad_flags_get_one_line(toy_data, tmp_path, monkeypatch, flags, message):
    with pytest.raises(SystemExit) as stopped:
        train_in_process(
            monkeypatch, toy_data, "--user-dir", PLUGIN, *flags, "--arch", "transformer_l2t_toy", "--optimizer",
            "adam", "--lr", "1e-3", "--max-tokens", "1000", "--max-update", "1", "--save-dir", tmp_path, "--cpu",
        )
    assert str(stopped.value.code) == f"l2t_fairseq: error: {message}"
