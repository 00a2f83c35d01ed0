"""The RMD hypergradient (paper eqs. 3-5) against two independent computations."""

import fairseq.utils
import pytest
import torch
from conftest import needs_cuda, synthetic_batch, synthetic_candidates, tiny_student

from l2t_fairseq.dev_measure.expected_bleu import DevExpectedBleu
from l2t_fairseq.teacher.model import Teacher
from l2t_fairseq.unroll.hypergrad import hypergradient, inner_step, leaves, unroll
from l2t_fairseq.unroll.loss import StudentLoss
from l2t_fairseq.unroll.optimizer import UpdateRule
from l2t_fairseq.unroll.student import double_backward_safe, make_step_loss, trainable_params

UNROLL_STEPS = 3
LR = 0.5
# (update rule of the unrolled steps, loss): "relative" is a teacher of log W (--teacher-parametrization exp)
# with each batch's coefficients rescaled to a fixed mean (--phi-normalization token_mean); "mixed" mixes in NLL
# (--nll-weight), normalizes by sentences (--sentence-avg) and takes each update over two micro-batches
# (--update-freq 2); "sgd_momentum_clip" is fairseq's SGD with momentum and weight decay under --clip-norm;
# "adam_schedule" gives every step its own learning rate and decay (a scheduler, Adam's bias corrections)
VARIANTS = [("sgd", "plain"), ("adam", "plain"), ("adam_momentum", "plain"), ("sgd", "relative"),
            ("adam_momentum", "relative"), ("sgd_momentum_clip", "mixed"), ("adam_schedule", "plain")]
CLIP_NORM = 0.05


def update_rule(kind, params):
    """Plain SGD (eq. 1), or Adam's step: its second moment moving with every step (a short memory, beta2 = 0.9,
    so that its share of the hypergradient is large), weight decay, optionally momentum."""
    if kind == "sgd":
        return UpdateRule(lr=LR)
    if kind == "sgd_momentum_clip":
        return UpdateRule(lr=LR, momentum=0.9, l2=0.01, clip_norm=CLIP_NORM)
    generator = torch.Generator().manual_seed(7)

    def like(p, low, high):
        return (low + (high - low) * torch.rand(p.shape, generator=generator, dtype=p.dtype)).to(p.device)

    momentum = kind in ("adam_momentum", "adam_schedule")
    schedule = kind == "adam_schedule"
    return UpdateRule(
        lr=[0.05, 0.03, 0.06][:UNROLL_STEPS] if schedule else 0.05,
        second_moment={n: like(p, 1e-3, 1e-1) for n, p in params.items()},
        beta2=0.9,
        decay=[0.99, 0.995, 0.98][:UNROLL_STEPS] if schedule else 0.99,
        momentum=0.9 if momentum else 0.0,
        velocity={n: like(p, -0.01, 0.01) for n, p in params.items()} if momentum else None,
    )


def setting(kind, dictionary, dropout=0.1, loss="plain", device="cpu"):
    """A student, a teacher with word- and key-dependent coefficients, U batches and a dev objective.

    The dev objective is the task's own: minus the expected BLEU of fixed candidates.

    Dropout is on by default: the reverse loop must see the unroll's masks.  Everything lives on ``device``; the
    weights are the same on every device.
    """
    torch.manual_seed(0)
    model = tiny_student(kind, dictionary, dropout).to(device)
    relative = loss == "relative"
    teacher = Teacher(len(dictionary), num_keys=2, parametrization="exp" if relative else "linear").double()
    with torch.no_grad():  # coefficients that differ by word and key
        for weights in (teacher.log_W if relative else teacher.W,):
            weights.add_(0.2 * torch.randn_like(weights))
    teacher.to(device)
    states = [torch.tensor([t / 10, 0.3, 0.2], dtype=torch.float64, device=device) for t in range(UNROLL_STEPS)]
    pad = dictionary.pad()

    def batch(**kwargs):
        return fairseq.utils.apply_to_sample(lambda t: t.to(device), synthetic_batch(dictionary, **kwargs))

    if loss == "mixed":
        batches = [([batch(seed=t), batch(seed=50 + t)], 100 + t) for t in range(UNROLL_STEPS)]
        step_loss = make_step_loss(model, StudentLoss(pad, nll_weight=0.3), lambda s: s["target"].size(0))
    else:
        batches = [([batch(seed=t)], 100 + t) for t in range(UNROLL_STEPS)]
        step_loss = make_step_loss(model, StudentLoss(pad, coefficient_mean=0.4 if relative else None))
    candidates = synthetic_candidates(dictionary, batch(sentences=4, seed=99))
    dev_objective = DevExpectedBleu(model, candidates, alpha=1.0, pad=pad, max_tokens=12)  # several chunks
    params = {name: p.detach().clone() for name, p in trainable_params(model).items()}
    return model, teacher, states, batches, step_loss, dev_objective, params


def rmd_teacher_gradient(teacher, states, batches, step_loss, dev_objective, params, rule, keep_every=1):
    """The task's path: RMD with the dev gradient computed chunk by chunk."""
    phis = [teacher(s) for s in states]
    with double_backward_safe(states[0].device.type):
        _, d_phis, _ = hypergradient(
            step_loss, dev_objective.value_and_grad, params, [p.detach() for p in phis], batches, rule, keep_every
        )
    return torch.autograd.grad(phis, tuple(teacher.parameters()), d_phis)


def unrolled_dev_loss(teacher_params, teacher, states, batches, step_loss, dev_objective, params, rule,
                      create_graph):
    """J(theta) by running the U steps forward, optionally keeping the whole graph (one graph, no chunks)."""
    current, moments = leaves(params), rule.moments()
    for t, (state, batch) in enumerate(zip(states, batches)):
        phi = torch.func.functional_call(teacher, teacher_params, (state,))
        current, moments = inner_step(step_loss, current, moments, phi, batch, rule.at(t), create_graph=create_graph)
    return dev_objective.loss(current)


@pytest.mark.parametrize("rule_kind, loss", VARIANTS)
@pytest.mark.parametrize("kind", ["lstm", "lstm2", "transformer"])
def test_rmd_equals_full_autograd_through_the_unroll(kind, rule_kind, loss, dictionary):
    model, teacher, states, batches, step_loss, dev_objective, params = setting(kind, dictionary, loss=loss)
    rule = update_rule(rule_kind, params)
    rmd = rmd_teacher_gradient(teacher, states, batches, step_loss, dev_objective, params, rule)

    teacher_params = dict(teacher.named_parameters())
    with double_backward_safe("cpu"):
        value = unrolled_dev_loss(
            teacher_params, teacher, states, batches, step_loss, dev_objective, params, rule, True
        )
        full = torch.autograd.grad(value, tuple(teacher_params.values()))

    for name, a, b in zip(teacher_params, rmd, full):
        assert b.abs().max() > 1e-8, f"{name}: the reference hypergradient vanished; the test would be vacuous"
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-10, msg=f"{kind} {rule_kind} d{name}")


@pytest.mark.parametrize("rule_kind, loss", VARIANTS)
@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_rmd_matches_central_finite_differences(kind, rule_kind, loss, dictionary, monkeypatch):
    # fairseq computes the encoder-decoder attention's softmax in fp32 even for
    # fp64 inputs; that rounding (~1e-9 of the loss) swamps a finite difference,
    # so keep it in fp64 here.  No dropout: its masks make J less smooth than eps.
    monkeypatch.setattr(fairseq.utils, "softmax", lambda x, dim, onnx_trace=False: torch.softmax(x, dim=dim))
    model, teacher, states, batches, step_loss, dev_objective, params = setting(kind, dictionary, 0.0, loss)
    rule = update_rule(rule_kind, params)
    rmd = rmd_teacher_gradient(teacher, states, batches, step_loss, dev_objective, params, rule)

    names = [name for name, _ in teacher.named_parameters()]
    base = {name: p.detach() for name, p in teacher.named_parameters()}
    eps = 1e-5
    generator = torch.Generator().manual_seed(1)
    for _ in range(3):
        direction = {name: torch.randn(p.shape, generator=generator, dtype=p.dtype) for name, p in base.items()}

        def J(sign, direction=direction):
            shifted = {name: base[name] + sign * eps * direction[name] for name in names}
            with torch.no_grad(), torch.enable_grad():
                value = unrolled_dev_loss(
                    shifted, teacher, states, batches, step_loss, dev_objective, params, rule, False
                )
                return value.item()

        numeric = (J(+1) - J(-1)) / (2 * eps)
        analytic = sum((g * direction[name]).sum().item() for name, g in zip(names, rmd))
        assert abs(analytic) > 1e-8
        # rel 1e-6, or the finite difference's round-off floor (about 1e-16 |J| / eps), whichever is larger
        assert analytic == pytest.approx(numeric, rel=1e-6, abs=1e-10), (kind, rule_kind, loss)


@needs_cuda
@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_rmd_on_cuda_equals_full_autograd_and_the_cpu(kind, dictionary):
    """On a GPU: RMD against full autograd with dropout (the reverse loop redraws the unroll's CUDA masks, and the
    RNN runs without cuDNN, which has no double backward), then, without dropout, against RMD on the CPU (the two
    devices draw different masks)."""
    model, teacher, states, batches, step_loss, dev_objective, params = setting(kind, dictionary, device="cuda")
    rule = update_rule("adam_momentum", params)
    rmd = rmd_teacher_gradient(teacher, states, batches, step_loss, dev_objective, params, rule)
    teacher_params = dict(teacher.named_parameters())
    with double_backward_safe("cuda"):
        value = unrolled_dev_loss(teacher_params, teacher, states, batches, step_loss, dev_objective, params, rule,
                                  True)
        full = torch.autograd.grad(value, tuple(teacher_params.values()))
    for name, a, b in zip(teacher_params, rmd, full):
        assert a.is_cuda and b.abs().max() > 1e-8, name
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-10, msg=f"{kind} d{name} on cuda")

    on = {}
    for device in ("cpu", "cuda"):
        model, teacher, states, batches, step_loss, dev_objective, params = setting(kind, dictionary, 0.0,
                                                                                    device=device)
        on[device] = rmd_teacher_gradient(teacher, states, batches, step_loss, dev_objective, params,
                                          UpdateRule(lr=LR))
    for a, b in zip(on["cuda"], on["cpu"]):
        assert b.abs().max() > 1e-8
        torch.testing.assert_close(a.cpu(), b, rtol=1e-6, atol=1e-12, msg=f"{kind}: cuda against cpu")


def test_unroll_leaves_the_student_untouched(dictionary):
    model, teacher, states, batches, step_loss, dev_objective, params = setting("transformer", dictionary)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    rng = torch.get_rng_state()
    kept = unroll(step_loss, params, [teacher(s) for s in states], batches, UpdateRule(lr=LR))
    assert sorted(kept) == list(range(UNROLL_STEPS + 1))
    assert any(not torch.equal(kept[UNROLL_STEPS][0][n], before[n]) for n in before), "the unroll did not move"
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), name
    assert torch.equal(torch.get_rng_state(), rng), "the unroll's dropout seeds leaked into the global RNG"


def test_the_clipped_variant_clips(dictionary):
    """The --clip-norm variant above is not vacuous: the replayed gradients are longer than the clip norm."""
    model, teacher, states, batches, step_loss, dev_objective, params = setting("lstm", dictionary, loss="mixed")
    with torch.enable_grad():
        current = leaves(params)
        loss = step_loss(current, teacher(states[0]).detach(), batches[0])
        grads = torch.autograd.grad(loss, tuple(current.values()))
    assert torch.sqrt(sum((g**2).sum() for g in grads)) > 2 * CLIP_NORM



@pytest.mark.parametrize("keep_every", [2, 3, 5])
@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_keeping_fewer_snapshots_gives_the_same_hypergradient(kind, keep_every, dictionary):
    """Long unrolls keep every k-th snapshot and recompute the rest in the reverse loop: the same steps, the same
    dropout masks, so bit for bit the same hypergradient (here U = 5 steps with momentum)."""
    model, teacher, states, batches, step_loss, dev_objective, params = setting(kind, dictionary, loss="relative")
    states = [torch.tensor([t / 10, 0.3, 0.2], dtype=torch.float64) for t in range(5)]
    batches = [([synthetic_batch(dictionary, seed=t)], 100 + t) for t in range(5)]
    rule = update_rule("adam_momentum", params)
    every = rmd_teacher_gradient(teacher, states, batches, step_loss, dev_objective, params, rule)
    fewer = rmd_teacher_gradient(teacher, states, batches, step_loss, dev_objective, params, rule, keep_every)
    for a, b in zip(every, fewer):
        assert torch.equal(a, b)
    kept = unroll(step_loss, params, [teacher(s) for s in states], batches, rule, keep_every)
    assert sorted(kept) == sorted({*range(0, 5, keep_every), 5})


@pytest.mark.parametrize("optimizer, copies", [("sgd", 1), ("sgd momentum", 2), ("adam", 3)])
def test_every_snapshot_is_kept_only_where_the_weights_and_moments_fit(optimizer, copies):
    """--unroll-keep-every's default counts what each snapshot holds: the weights, SGD's velocity, Adam's two
    moments. Weights (on the meta device: sizes, no memory) of which U copies fit, and no more."""
    from l2t_fairseq.teacher.step import KEEP_ALL_BYTES, keep_every

    steps = 16
    weights = {"w": torch.empty(KEEP_ALL_BYTES // (4 * steps), device="meta")}
    moment = {"w": torch.empty_like(weights["w"])}
    rule = UpdateRule(lr=0.1, momentum=0.0 if optimizer == "sgd" else 0.9,
                      velocity=None if optimizer == "sgd" else moment,
                      second_moment=moment if optimizer == "adam" else None)
    assert keep_every(0, steps, weights, rule) == (1 if copies == 1 else 4)
    assert keep_every(3, steps, weights, rule) == 3
