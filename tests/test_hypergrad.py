"""The RMD hypergradient (paper eqs. 3-5) against two independent computations."""

import fairseq.utils
import pytest
import torch

from conftest import synthetic_batch, synthetic_candidates, tiny_student
from l2t_fairseq.expected_bleu import DevExpectedBleu
from l2t_fairseq.hypergrad import hypergradient, leaves, sgd_step, unroll
from l2t_fairseq.student import double_backward_safe, make_step_loss, trainable_params
from l2t_fairseq.teacher import Teacher

UNROLL_STEPS = 3
LR = 0.5


def setting(kind, dictionary, dropout=0.1):
    """A student, a teacher with word- and key-dependent coefficients, U batches and a dev objective.

    The dev objective is the task's own: minus the expected BLEU of fixed candidates.

    Dropout is on by default: the reverse loop must see the unroll's masks.
    """
    torch.manual_seed(0)
    model = tiny_student(kind, dictionary, dropout)
    teacher = Teacher(len(dictionary), num_keys=2).double()
    with torch.no_grad():  # coefficients that differ by word and key
        teacher.W.add_(0.2 * torch.randn_like(teacher.W))
    states = [torch.tensor([t / 10, 0.3, 0.2], dtype=torch.float64) for t in range(UNROLL_STEPS)]
    batches = [(synthetic_batch(dictionary, seed=t), 100 + t) for t in range(UNROLL_STEPS)]
    pad = dictionary.pad()
    step_loss = make_step_loss(model, pad)
    candidates = synthetic_candidates(dictionary, synthetic_batch(dictionary, sentences=4, seed=99))
    dev_objective = DevExpectedBleu(model, candidates, alpha=1.0, pad=pad, max_tokens=12)  # several chunks
    params = {name: p.detach().clone() for name, p in trainable_params(model).items()}
    return model, teacher, states, batches, step_loss, dev_objective, params


def rmd_teacher_gradient(teacher, states, batches, step_loss, dev_objective, params):
    """The task's path: RMD with the dev gradient computed chunk by chunk."""
    phis = [teacher(s) for s in states]
    with double_backward_safe("cpu"):
        _, d_phis = hypergradient(
            step_loss, dev_objective.value_and_grad, params, [p.detach() for p in phis], batches, LR
        )
    return torch.autograd.grad(phis, tuple(teacher.parameters()), d_phis)


def unrolled_dev_loss(teacher_params, teacher, states, batches, step_loss, dev_objective, params, create_graph):
    """J(theta) by running the U SGD steps forward, optionally keeping the whole graph (one graph, no chunks)."""
    current = leaves(params)
    for state, batch in zip(states, batches):
        phi = torch.func.functional_call(teacher, teacher_params, (state,))
        current = sgd_step(step_loss, current, phi, batch, LR, create_graph=create_graph)
    return dev_objective.loss(current)


@pytest.mark.parametrize("kind", ["lstm", "lstm2", "transformer"])
def test_rmd_equals_full_autograd_through_the_unroll(kind, dictionary):
    model, teacher, states, batches, step_loss, dev_objective, params = setting(kind, dictionary)
    rmd = rmd_teacher_gradient(teacher, states, batches, step_loss, dev_objective, params)

    teacher_params = dict(teacher.named_parameters())
    with double_backward_safe("cpu"):
        value = unrolled_dev_loss(teacher_params, teacher, states, batches, step_loss, dev_objective, params, True)
        full = torch.autograd.grad(value, tuple(teacher_params.values()))

    for name, a, b in zip(teacher_params, rmd, full):
        assert b.abs().max() > 1e-8, f"{name}: the reference hypergradient vanished; the test would be vacuous"
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-10, msg=f"{kind} d{name}")


@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_rmd_matches_central_finite_differences(kind, dictionary, monkeypatch):
    # fairseq computes the encoder-decoder attention's softmax in fp32 even for
    # fp64 inputs; that rounding (~1e-9 of the loss) swamps a finite difference,
    # so keep it in fp64 here.  No dropout: its masks make J less smooth than eps.
    monkeypatch.setattr(fairseq.utils, "softmax", lambda x, dim, onnx_trace=False: torch.softmax(x, dim=dim))
    model, teacher, states, batches, step_loss, dev_objective, params = setting(kind, dictionary, dropout=0.0)
    rmd = rmd_teacher_gradient(teacher, states, batches, step_loss, dev_objective, params)

    names = [name for name, _ in teacher.named_parameters()]
    base = {name: p.detach() for name, p in teacher.named_parameters()}
    eps = 1e-5
    generator = torch.Generator().manual_seed(1)
    for _ in range(3):
        direction = {name: torch.randn(p.shape, generator=generator, dtype=p.dtype) for name, p in base.items()}

        def J(sign):
            shifted = {name: base[name] + sign * eps * direction[name] for name in names}
            with torch.no_grad(), torch.enable_grad():
                value = unrolled_dev_loss(shifted, teacher, states, batches, step_loss, dev_objective, params, False)
                return value.item()

        numeric = (J(+1) - J(-1)) / (2 * eps)
        analytic = sum((g * direction[name]).sum().item() for name, g in zip(names, rmd))
        assert abs(analytic) > 1e-8
        assert analytic == pytest.approx(numeric, rel=1e-6), kind


def test_unroll_leaves_the_student_untouched(dictionary):
    model, teacher, states, batches, step_loss, dev_objective, params = setting("transformer", dictionary)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    rng = torch.get_rng_state()
    snapshots = unroll(step_loss, params, [teacher(s) for s in states], batches, LR)
    assert len(snapshots) == UNROLL_STEPS + 1
    assert any(not torch.equal(snapshots[-1][n], before[n]) for n in before), "the unroll did not move"
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), name
    assert torch.equal(torch.get_rng_state(), rng), "the unroll's dropout seeds leaked into the global RNG"
