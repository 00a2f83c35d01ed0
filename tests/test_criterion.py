"""The criterion ``l2t_dlf`` and the loss it computes."""

import math

import pytest
import torch
from conftest import synthetic_batch, tiny_student

from l2t_fairseq.criterions.l2t_dlf import L2TDLFCriterion
from l2t_fairseq.tasks.l2t_translation import L2TTranslationConfig, L2TTranslationTask
from l2t_fairseq.unroll.loss import StudentLoss, dynamic_loss

PAD = 1


def test_constant_phi_matches_a_hand_computation():
    probs = torch.tensor([[[0.5, 0.2, 0.3], [0.1, 0.6, 0.3]], [[0.7, 0.2, 0.1], [0.2, 0.2, 0.6]]])
    target = torch.tensor([[0, 2], [2, PAD]])
    loss, nll = dynamic_loss(probs.log(), target, torch.full((3,), 0.8), PAD)
    kept = [0.5, 0.3, 0.1]  # p(y_r) of the three non-pad tokens
    expected = -sum(1 / (1 + math.exp(-0.8 * math.log(p))) for p in kept)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert nll.item() == pytest.approx(-sum(math.log(p) for p in kept), rel=1e-6)


def test_padding_is_ignored():
    lprobs = torch.randn(2, 4, 6).log_softmax(-1)
    target = torch.tensor([[2, 3, PAD, PAD], [4, 5, 0, PAD]])
    phi = torch.rand(6) + 0.1
    loss, nll = dynamic_loss(lprobs, target, phi, PAD)
    scrambled = lprobs.clone()
    scrambled[target.eq(PAD)] = torch.randn(int(target.eq(PAD).sum()), 6).log_softmax(-1)
    assert torch.equal(dynamic_loss(scrambled, target, phi, PAD)[0], loss)
    manual = sum(
        -torch.sigmoid(phi[target[b, r]] * lprobs[b, r, target[b, r]])
        for b in range(2)
        for r in range(4)
        if target[b, r] != PAD
    )
    torch.testing.assert_close(loss, manual)


def test_coefficients_are_per_target_word():
    lprobs = torch.full((1, 2, 4), math.log(0.25))
    target = torch.tensor([[2, 3]])
    phi = torch.tensor([0.0, 0.0, 1.0, 3.0])
    loss, _ = dynamic_loss(lprobs, target, phi, PAD)
    expected = -(torch.sigmoid(torch.tensor(math.log(0.25))) + torch.sigmoid(torch.tensor(3 * math.log(0.25))))
    torch.testing.assert_close(loss, expected)


def make_task(dictionary, **overrides):
    """A task whose teacher learns ``W`` itself (not the default): the tests below set and read ``Phi`` directly."""
    overrides = {"teacher_parametrization": "linear", "seed": 1, **overrides}
    cfg = L2TTranslationConfig(
        memory_efficient_fp16=False, memory_efficient_bf16=False, tpu=False, cpu=True, max_update=100, max_epoch=0,
        clip_norm=0.0, valid_subset="valid", **overrides,
    )
    return L2TTranslationTask(cfg, dictionary, dictionary)


def make_criterion(task, phi_normalization="none", loss_scale="paper", nll_weight=0.0, sentence_avg=False):
    """The paper's loss with the coefficients used as they are (not the defaults), so that the tests can set
    them."""
    criterion = L2TDLFCriterion(task, phi_normalization, loss_scale, nll_weight, sentence_avg)
    task.connect(criterion)
    return criterion


def test_student_gradient_flows_only_through_log_p(dictionary):
    """The criterion's gradient is d(-sigmoid(Phi log p))/d log p times d log p / d omega; the teacher gets none."""
    task = make_task(dictionary)
    with torch.no_grad():
        task.coefficients.teacher.W.uniform_(0.1, 2.0)
    criterion = make_criterion(task)
    model = tiny_student("transformer", dictionary, dropout=0.0).float()
    sample = synthetic_batch(dictionary, sentences=4, seed=3)

    loss, sample_size, logging_output = criterion(model, sample)
    loss.backward()
    assert all(p.grad is None for p in task.coefficients.teacher.parameters())
    assert sample_size == sample["ntokens"] == logging_output["ntokens"]

    # the same gradient by the chain rule, with the analytic d loss / d log p(y_r)
    model.zero_grad()
    lprobs = model(**sample["net_input"])[0].log_softmax(-1)
    target = sample["target"]
    target_lprobs = lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    coefficient = task.coefficients.phi()[target]
    s = torch.sigmoid(coefficient * target_lprobs.detach())
    d_loss_d_lprob = (-s * (1 - s) * coefficient).masked_fill(target.eq(dictionary.pad()), 0)
    (target_lprobs * d_loss_d_lprob).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
    reference = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    criterion(model, sample)[0].backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, reference[name], rtol=1e-5, atol=1e-7, msg=name)


def test_logging_matches_fairseq_cross_entropy_conventions(dictionary):
    from fairseq import metrics

    task = make_task(dictionary)
    criterion = make_criterion(task)
    model = tiny_student("lstm", dictionary, dropout=0.0).float()
    sample = synthetic_batch(dictionary, sentences=4, seed=5)
    with torch.no_grad():
        _, _, log = criterion(model, sample)
        nll = torch.nn.functional.cross_entropy(
            model(**sample["net_input"])[0].transpose(1, 2), sample["target"],
            ignore_index=dictionary.pad(), reduction="sum",
        )
    torch.testing.assert_close(log["nll_loss"], nll, rtol=1e-5, atol=1e-6)
    with metrics.aggregate() as agg:
        type(criterion).reduce_metrics([log, log])
    values = agg.get_smoothed_values()
    assert values["nll_loss"] == pytest.approx(nll.item() / sample["ntokens"] / math.log(2), abs=1e-3)
    assert values["loss"] == pytest.approx(log["loss"].item() / sample["ntokens"] / math.log(2), abs=1e-3)
    assert values["ppl"] == pytest.approx(2 ** values["nll_loss"], rel=1e-2)


def test_token_mean_normalization_fixes_the_coefficients_mean():
    """--phi-normalization token_mean: only relative weights matter; the batch's mean coefficient is fixed."""
    torch.manual_seed(0)
    lprobs = torch.randn(2, 4, 6).log_softmax(-1)
    target = torch.tensor([[2, 3, 3, PAD], [4, 5, 2, 2]])
    phi = torch.rand(6) + 0.1
    loss, nll = dynamic_loss(lprobs, target, phi, PAD, coefficient_mean=0.3)
    assert torch.allclose(dynamic_loss(lprobs, target, 7.0 * phi, PAD, coefficient_mean=0.3)[0], loss)
    tokens = target[target.ne(PAD)]
    rescaled = phi * 0.3 / phi[tokens].mean()  # the mean over the batch's target tokens, not over the vocabulary
    torch.testing.assert_close(loss, dynamic_loss(lprobs, target, rescaled, PAD)[0])
    assert torch.equal(nll, dynamic_loss(lprobs, target, phi, PAD)[1])


def test_exp_teacher_keeps_coefficients_positive():
    from l2t_fairseq.teacher.model import Teacher, default_phi_init

    teacher = Teacher(50, num_keys=3, parametrization="exp")
    assert set(dict(teacher.named_parameters())) == {"log_W", "V"}
    state = torch.tensor([0.2, 0.5, 0.1])
    torch.testing.assert_close(teacher(state), torch.full((50,), default_phi_init(50)))
    with torch.no_grad():
        teacher.log_W.add_(torch.randn_like(teacher.log_W) * 20)  # however far the teacher moves
    assert (teacher(state) > 0).all()


def test_nll_mixing_and_sentence_normalization(dictionary):
    """--nll-weight lambda: lambda * NLL + (1 - lambda) * l_Phi; --sentence-avg: the sample size is sentences."""
    lprobs = torch.randn(2, 4, 6).log_softmax(-1)
    target = torch.tensor([[2, 3, 3, PAD], [4, 5, 2, 2]])
    phi = torch.rand(6) + 0.1
    loss, nll = dynamic_loss(lprobs, target, phi, PAD)
    mixed, same_nll = StudentLoss(PAD, nll_weight=0.25)(lprobs, target, phi)
    torch.testing.assert_close(mixed, 0.25 * nll + 0.75 * loss)
    assert torch.equal(same_nll, nll)
    task = make_task(dictionary)
    sample = synthetic_batch(dictionary, sentences=3, seed=1)
    assert make_criterion(task, sentence_avg=True).sample_size(sample) == 3
    assert make_criterion(task).sample_size(sample) == sample["ntokens"]
    with pytest.raises(SystemExit, match="--nll-weight must be in"):
        make_criterion(task, nll_weight=1.5)


def test_the_teacher_does_not_shift_the_students_initialization(dictionary):
    """The teacher's random keys come from a generator of their own: a cross-entropy student and an L2T student of
    the same seed start from the same weights (the seeds are paired)."""
    torch.manual_seed(1)
    make_task(dictionary, seed=1)
    after_teacher = torch.randn(5)
    torch.manual_seed(1)
    assert torch.equal(torch.randn(5), after_teacher)
    keys = [make_task(dictionary, seed=s).coefficients.teacher.V for s in (1, 1, 2)]
    assert torch.equal(keys[0], keys[1]) and not torch.equal(keys[0], keys[2])



def test_the_cross_entropy_scale_gives_cross_entropys_gradient_at_the_start(dictionary):
    """--loss-scale cross_entropy (the default): at the initial coefficients the loss's gradient in log p is between
    0.79 and 1 times cross-entropy's for every token, 1 where p = 1; the paper's scale is about 1/(4 ln|V|) of it."""
    task = make_task(dictionary, teacher_parametrization="exp")
    default = make_criterion(task, "token_mean", "cross_entropy")
    paper = make_criterion(task, "token_mean")
    vocab = len(dictionary)
    lprobs = torch.linspace(-math.log(vocab), 0, 50).view(1, 50, 1).expand(1, 50, vocab).clone()
    lprobs.requires_grad_()
    target = torch.full((1, 50), 4)
    phi = task.coefficients.phi()
    (d_default,) = torch.autograd.grad(default.loss(lprobs, target, phi)[0], lprobs)
    (d_paper,) = torch.autograd.grad(paper.loss(lprobs, target, phi)[0], lprobs)
    ratio = -d_default[0, :, 4]  # cross-entropy's gradient in log p(y) is -1
    assert ratio.min() > 0.78 and ratio.max() <= 1 and ratio[-1] == pytest.approx(1, abs=1e-6)
    torch.testing.assert_close(d_paper, d_default / (4 * math.log(vocab)))
    # the loss itself is on cross-entropy's scale: 0 where p = 1, about ln|V| where p = 1/|V|
    values = default.loss(lprobs[:, [0, -1]].detach(), target[:, :2], phi)[0]
    assert 0.6 * math.log(vocab) < values < 1.0 * math.log(vocab)


def test_phi_init_sets_where_the_coefficients_start_and_the_loss_scale(dictionary):
    """--phi-init 1 (the authors' start): every coefficient starts at 1, the batch mean is kept at 1, and the
    cross-entropy scale is 4: the gradient in log p is cross-entropy's where p = 1 and vanishes for words the
    student gives little probability (the sigmoid saturates)."""
    task = make_task(dictionary, teacher_parametrization="exp", phi_init=1.0)
    criterion = make_criterion(task, "token_mean", "cross_entropy")
    phi = task.coefficients.phi()
    torch.testing.assert_close(phi, torch.ones(len(dictionary)))
    assert criterion.loss.coefficient_mean == 1.0 and criterion.loss.scale == 4.0
    lprobs = torch.tensor([-8.0, -1.0, 0.0]).view(1, 3, 1).expand(1, 3, len(dictionary)).clone().requires_grad_()
    (gradient,) = torch.autograd.grad(criterion.loss(lprobs, torch.full((1, 3), 4), phi)[0], lprobs)
    weights = -gradient[0, :, 4]  # relative to cross-entropy's -1
    torch.testing.assert_close(weights, 4 * torch.sigmoid(lprobs[0, :, 4]) * torch.sigmoid(-lprobs[0, :, 4]))
    assert weights[0] < 0.002 and weights[-1] == pytest.approx(1)
    # by default the start is 1/ln|V|
    assert make_task(dictionary).coefficients.phi_init == pytest.approx(1 / math.log(len(dictionary)))
