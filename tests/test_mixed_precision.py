"""--fp16 (and --bf16): the unroll starts from a copy of fairseq's fp32 master weights; training on a GPU."""

import re

import pytest
import torch
from conftest import l2t_train, needs_cuda, synthetic_batch, teacher_state, tiny_student
from fairseq import options
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.optim import FP16Optimizer
from test_errors import assert_names, start_up_error

from l2t_fairseq.unroll.loss import StudentLoss, dynamic_loss, log_probs
from l2t_fairseq.unroll.student import fp32_params, make_step_loss, trainable_params


def fp16_config(*flags):
    args = options.parse_args_and_arch(
        options.get_training_parser(),
        ["unused-data", "--arch", "transformer_l2t_toy", "--optimizer", "adam", "--lr", "1e-2", *flags],
    )
    return convert_namespace_to_omegaconf(args)


def trained_half_student(dictionary, dtype, flags, monkeypatch):
    """A half-precision student after two real FP16Optimizer steps: its master weights have moved off its own."""
    if "--fp16-no-flatten-grads" not in flags and "--bf16" not in flags:
        # fairseq keys the flat fp32 buffer by torch.cuda.current_device() and matches it with each parameter's
        # device.index, which is None on the CPU; the buffer itself is allocated beside the parameters
        monkeypatch.setattr(torch.cuda, "current_device", lambda: None)
    model = tiny_student("transformer", dictionary, dropout=0.0).to(dtype)
    optimizer = FP16Optimizer.build_optimizer(fp16_config(*flags), list(trainable_params(model).values()))
    sample = synthetic_batch(dictionary, sentences=4)
    for _ in range(2):
        optimizer.zero_grad()
        lprobs = log_probs(model(**sample["net_input"]))
        loss, _ = dynamic_loss(lprobs, sample["target"], torch.full((len(dictionary),), 0.5), dictionary.pad())
        optimizer.backward(loss)
        optimizer.step()
    return model, optimizer, sample


@pytest.mark.parametrize(
    "dtype, flags",
    [
        (torch.float16, ["--fp16"]),  # one flat fp32 buffer
        (torch.float16, ["--fp16", "--fp16-no-flatten-grads"]),  # one fp32 tensor per parameter
        (torch.bfloat16, ["--bf16"]),  # fairseq 0.12: bf16 keeps a list, as without flattening
    ],
)
def test_unroll_starts_from_a_copy_of_the_fp32_master_weights(dictionary, dtype, flags, monkeypatch):
    model, optimizer, _ = trained_half_student(dictionary, dtype, flags, monkeypatch)
    master = optimizer.fp32_params
    master = list(master.values())[0] if isinstance(master, dict) else torch.cat([p.flatten() for p in master])
    params = fp32_params(model, optimizer)
    assert list(params) == list(trainable_params(model))
    assert all(p.dtype == torch.float32 for p in params.values())
    flat = torch.cat([p.flatten() for p in params.values()])
    assert torch.equal(flat, master.detach())
    # the master weights are not the half weights rounded up: the unroll really sees fp32 values
    half = torch.cat([p.detach().float().flatten() for p in trainable_params(model).values()])
    assert not torch.equal(flat, half)
    # a copy: the optimizer's in-place updates never reach the unroll's omega_0, nor the other way round
    before = master.detach().clone()
    for p in params.values():
        p.add_(1.0)
    assert torch.equal(master.detach(), before)


def test_unrolled_loss_on_a_half_model_is_computed_in_fp32(dictionary, monkeypatch):
    model, optimizer, sample = trained_half_student(dictionary, torch.float16, ["--fp16"], monkeypatch)
    phi = torch.full((len(dictionary),), 0.5)
    student_loss = StudentLoss(dictionary.pad())
    loss = make_step_loss(model, student_loss)(fp32_params(model, optimizer), phi, ([sample], 0))
    reference_model = tiny_student("transformer", dictionary, dropout=0.0).float()
    reference = make_step_loss(reference_model, student_loss)(fp32_params(model, optimizer), phi, ([sample], 0))
    assert loss.dtype == torch.float32
    # equal up to the model's half-precision buffers (sinusoidal positions)
    torch.testing.assert_close(loss, reference, rtol=1e-3, atol=1e-4)


def test_fp16_training_updates_the_teacher(toy_data, tmp_path):
    # on the CPU fairseq's flat fp32 buffer needs CUDA; --fp16-no-flatten-grads keeps one tensor per parameter.
    # fairseq's answer to an fp16 overflow also needs CUDA (trainer.py: torch.tensor(0.0).cuda()): a small initial
    # loss scale keeps the first gradients finite
    result = l2t_train(
        toy_data, tmp_path, "--fp16", "--fp16-no-flatten-grads", "--fp16-init-scale", "4", "--max-update", 25,
        "--teacher-interval", 10, "--unroll-steps", 3,
    )
    norms = [float(v) for v in re.findall(r"teacher_hypergrad_norm ([\d.e-]+)", result.stdout)]
    assert norms and all(n > 0 for n in norms), result.stdout[-2000:]
    assert "loss_scale" in result.stdout  # really fairseq's FP16Optimizer
    state = teacher_state(tmp_path / "checkpoint_last.pt")
    assert state["skipped_steps"] == 0
    assert {int(m["step"]) for m in state["teacher_optimizer"]["state"].values()} == {2}
    assert all(torch.isfinite(w).all() for w in state["teacher"].values())


LSTM = ["--arch", "lstm", "--encoder-embed-dim", "32", "--encoder-hidden-size", "32", "--decoder-embed-dim", "32",
        "--decoder-hidden-size", "32", "--decoder-out-embed-dim", "32", "--lr", "3e-3"]


@needs_cuda
@pytest.mark.parametrize("flags", [[], ["--fp16"], ["--amp"], LSTM, [*LSTM, "--fp16"]],
                         ids=["transformer-fp32", "transformer-fp16", "transformer-amp", "lstm-fp32", "lstm-fp16"])
def test_training_on_cuda_updates_the_teacher(toy_data, tmp_path, flags):
    """fairseq-train on a GPU: its CUDA kernels for the student's steps (fused attention, cuDNN's RNN, fairseq's
    flat fp16 buffer and loss scaler, autocast under --amp), the unroll's double-backward-safe ones in fp32 for the
    teacher's steps."""
    result = l2t_train(toy_data, tmp_path, *flags, "--max-update", 40, "--teacher-interval", 10, "--unroll-steps", 3,
                       device="cuda")
    norms = [float(v) for v in re.findall(r"teacher_hypergrad_norm ([\d.e-]+)", result.stdout)]
    assert norms and max(norms) > 0, result.stdout[-2000:]
    scaled = "--fp16" in flags or "--amp" in flags
    assert bool(re.search(r"\| loss_scale \d", result.stdout)) == scaled  # fairseq's scaler
    state = teacher_state(tmp_path / "checkpoint_last.pt")
    assert state["skipped_steps"] == 0
    steps = {int(m["step"]) for m in state["teacher_optimizer"]["state"].values()}
    assert len(steps) == 1 and steps.pop() >= 2, steps
    assert all(torch.isfinite(w).all() for w in state["teacher"].values())


@pytest.mark.parametrize("flag", ["--memory-efficient-fp16", "--memory-efficient-bf16"])
def test_memory_efficient_half_precision_is_refused(toy_data, tmp_path, monkeypatch, flag):
    assert_names(start_up_error(monkeypatch, toy_data, tmp_path, flag), flag)


def test_bf16_is_refused_with_its_reason(toy_data, tmp_path, monkeypatch):
    """fairseq 0.12's --bf16 sets --tpu; without this line it fails in fairseq's trainer (no torch_xla)."""
    message = start_up_error(monkeypatch, toy_data, tmp_path, "--bf16")
    assert_names(message, "--bf16")
    assert "TPU" in message and "--fp16" in message
