"""--unroll-optimizer adam: the unroll's step is the step fairseq's Adam takes, its moments held fixed."""

import pytest
import torch
from fairseq import optim

from conftest import synthetic_batch, tiny_student
from l2t_fairseq.hypergrad import inner_step
from l2t_fairseq.student import fp32_params, make_step_loss, trainable_params
from l2t_fairseq.unroll_optimizer import adam_rule, student_rule
from test_mixed_precision import fp16_config

PHI = 0.5


def fairseq_optimizer(model, half, monkeypatch):
    flags = ["--adam-betas", "(0.9, 0.98)", "--weight-decay", "0.01", "--lr", "1e-4"]
    params = list(trainable_params(model).values())
    if half:  # one flat fp32 master buffer; fairseq keys it by CUDA device (None: the CPU's device.index)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: None)
        return optim.FP16Optimizer.build_optimizer(fp16_config("--fp16", *flags), params)
    return optim.build_optimizer(fp16_config(*flags).optimizer, params)


@pytest.mark.parametrize("half", [False, True], ids=["fp64", "fp16-flat"])
@pytest.mark.parametrize("momentum", [False, True], ids=["fresh-gradient", "momentum"])
def test_the_unrolled_step_is_the_step_adam_takes(dictionary, momentum, half, monkeypatch):
    torch.manual_seed(0)
    model = tiny_student("transformer", dictionary, dropout=0.0)
    model = model.half() if half else model.double()  # fp64: no rounding in steps of 1e-4
    optimizer = fairseq_optimizer(model, half, monkeypatch)
    sample = synthetic_batch(dictionary, sentences=4, seed=5)
    step_loss = make_step_loss(model, dictionary.pad())
    phi = torch.full((len(dictionary),), PHI)

    def real_step():
        optimizer.zero_grad()
        optimizer.backward(step_loss(trainable_params(model), phi, (sample, 0)))
        optimizer.step()

    def weights():
        return {name: p.detach().clone() for name, p in fp32_params(model, optimizer).items()}

    # many small steps on one batch: the gradient changes slowly, so Adam's second moment has settled on it and
    # what the unroll holds fixed (the moments' own update at the next step) matters little
    for _ in range(300):
        real_step()
    rule = adam_rule(model, optimizer, momentum=momentum)
    assert rule.decay == pytest.approx(1 - 0.01 * 1e-4)
    assert (rule.momentum == 0.9) == momentum and (rule.velocity is not None) == momentum
    before = weights()
    with torch.enable_grad():
        params = {name: p.clone().requires_grad_() for name, p in before.items()}
        predicted, _ = inner_step(step_loss, params, rule.velocity, phi, (sample, 0), rule)
    real_step()
    after = weights()
    real = torch.cat([(after[n] - before[n]).flatten() for n in before])
    unrolled = torch.cat([(predicted[n].detach() - before[n]).flatten() for n in before])
    error = ((unrolled - real).norm() / real.norm()).item()
    cosine = torch.nn.functional.cosine_similarity(unrolled, real, dim=0).item()
    if momentum:  # Adam's own step, up to the second moment's update: measured 0.6% (fp64), 1.2% (fp16)
        assert error < 0.03 and cosine > 0.999, (error, cosine)
    else:  # the fresh gradient instead of Adam's running mean of it: the same direction, roughly (9.5%)
        assert error < 0.2 and cosine > 0.99, (error, cosine)


def test_adam_rule_refuses_another_optimizer(dictionary):
    model = tiny_student("transformer", dictionary).float()
    sgd = optim.build_optimizer(fp16_config("--optimizer", "sgd").optimizer, list(model.parameters()))
    with pytest.raises(SystemExit, match="--unroll-optimizer adam needs fairseq's --optimizer adam"):
        adam_rule(model, sgd)


def test_auto_unroll_follows_the_students_optimizer(dictionary):
    """--unroll-optimizer auto: Adam's step for an Adam student, SGD with --unroll-lr for any other."""
    model = tiny_student("transformer", dictionary).float()
    sgd = optim.build_optimizer(fp16_config("--optimizer", "sgd").optimizer, list(model.parameters()))
    rule = student_rule(model, sgd, "auto", sgd_lr=0.3)
    assert rule.lr == 0.3 and rule.preconditioner is None and rule.momentum == 0
    adam = optim.build_optimizer(fp16_config("--optimizer", "adam").optimizer, list(model.parameters()))
    step_loss = make_step_loss(model, dictionary.pad())
    adam.backward(step_loss(trainable_params(model), torch.full((len(dictionary),), PHI),
                            (synthetic_batch(dictionary, sentences=2, seed=1), 0)))
    adam.step()
    rule = student_rule(model, adam, "auto", sgd_lr=0.3)
    assert rule.preconditioner is not None and rule.momentum == 0.9 and rule.velocity is not None
    assert student_rule(model, adam, "auto", sgd_lr=0.3, momentum=False).momentum == 0
