"""The teacher replays the step the student takes: fairseq's own Trainer, with the training flags users set."""

import pytest
import torch
from conftest import CUDA_MARKS, l2t_flags, needs_cuda
from fairseq import options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.trainer import Trainer

from l2t_fairseq.teacher.step import teach_once
from l2t_fairseq.unroll.hypergrad import final_weights, inner_step
from l2t_fairseq.unroll.optimizer import student_rule
from l2t_fairseq.unroll.student import make_step_loss, trainable_params

CASES = {
    # fairseq's SGD with momentum and weight decay, two micro-batches per update, per-sentence loss
    "sgd": ["--optimizer", "sgd", "--momentum", "0.9", "--weight-decay", "0.01", "--lr", "0.5",
            "--update-freq", "2", "--sentence-avg"],
    # plain SGD, one micro-batch, per-token loss, NLL mixed in, the gradient clipped (its norm is about 1)
    "clipped": ["--optimizer", "sgd", "--lr", "0.5", "--nll-weight", "0.5", "--clip-norm", "0.1"],
}
# on a GPU the student's real step runs fairseq's CUDA kernels (cuDNN allowed) and the replay the unroll's
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA_MARKS)]


def trainer_for(data, save_dir, flags, device="cpu"):
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(
        parser, l2t_flags(data, save_dir, "--lr-scheduler", "fixed", "--max-update", 100, "--dropout", "0.1",
                          "--teacher-interval", 1000, *flags, device=device)
    )
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    task.load_dataset("train")
    model = task.build_model(cfg.model)
    criterion = task.build_criterion(cfg.criterion)
    return cfg, task, model, criterion, Trainer(cfg, task, model, criterion)


def train_batches(task, cfg):
    return iter(task.get_batch_iterator(
        dataset=task.dataset("train"), max_tokens=cfg.dataset.max_tokens, seed=1,
    ).next_epoch_itr(shuffle=True))


def assert_replays_the_next_step(cfg, task, model, criterion, trainer, batches, micro):
    """The trainer's next update, replayed from what the teacher recorded of it, lands on the student's weights."""
    rule = student_rule(model, trainer.optimizer, "auto", clip_norm=cfg.optimization.clip_norm)
    before = {name: p.detach().clone() for name, p in trainable_params(model).items()}
    phi = task.coefficients.phi()
    update_num = trainer.get_num_updates()
    trainer.train_step([next(batches) for _ in range(micro)])
    assert trainer.get_num_updates() == update_num + 1
    samples, state, seed, _ = task.teaching.recorder.current.fields()  # what the teacher keeps of this update
    assert len(samples) == micro and seed == cfg.common.seed + update_num
    assert torch.equal(state, task.coefficients.state)
    step_loss = make_step_loss(model, criterion.loss, criterion.sample_size)
    with torch.enable_grad():
        replayed, _ = inner_step(step_loss, {n: p.clone().requires_grad_() for n, p in before.items()},
                                 rule.moments(), phi, (samples, seed), rule)
    moved = 0.0
    for name, p in trainable_params(model).items():
        torch.testing.assert_close(replayed[name].detach(), p.detach(), rtol=1e-5, atol=1e-6, msg=name)
        moved = max(moved, (p.detach() - before[name]).abs().max().item())
    assert moved > 1e-4  # the update is not vacuous


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", list(CASES))
def test_the_replayed_update_is_the_trainers(toy_data, tmp_path, case, device):
    cfg, task, model, criterion, trainer = trainer_for(toy_data, tmp_path, CASES[case], device)
    assert next(trainer.model.parameters()).device.type == device
    batches = train_batches(task, cfg)
    micro = cfg.optimization.update_freq[0]
    for _ in range(2):  # a momentum buffer to carry
        trainer.train_step([next(batches) for _ in range(micro)])
    assert_replays_the_next_step(cfg, task, model, criterion, trainer, batches, micro)


def test_an_update_attempted_again_is_replayed_as_taken(toy_data, tmp_path, monkeypatch):
    """fairseq drops an update whose micro-batch ran out of memory (as one that overflowed in fp16) and trains the
    next batches under the same update number: the replayed update is the attempt that was taken, not the two
    attempts merged."""
    cfg, task, model, criterion, trainer = trainer_for(toy_data, tmp_path, CASES["sgd"])
    batches = train_batches(task, cfg)
    for _ in range(2):
        trainer.train_step([next(batches) for _ in range(2)])

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. (raised by the test)")

    with monkeypatch.context() as patch:
        patch.setattr(criterion, "forward", out_of_memory)
        assert trainer.train_step([next(batches) for _ in range(2)]) is None
    assert trainer.get_num_updates() == 2
    assert_replays_the_next_step(cfg, task, model, criterion, trainer, batches, 2)


@needs_cuda
@pytest.mark.parametrize("precision", [["--fp16", "--fp16-init-scale", str(2**24)],
                                       ["--amp", "--amp-init-scale", str(2**24), "--amp-batch-retries", "2"]])
def test_an_fp16_overflow_keeps_the_attempt_taken(toy_data, tmp_path, precision):
    """fairseq's real overflows: a loss scale of 2**24 overflows the fp16 gradients until it has halved enough.
    After an overflow --fp16 trains the next batches under the same update number and --amp the same ones again;
    the update kept is the attempt after which the number moved on, its batches alone."""
    cfg, task, model, criterion, trainer = trainer_for(toy_data, tmp_path, ["--update-freq", "2", *precision],
                                                       "cuda")
    batches = train_batches(task, cfg)
    overflows = 0
    while trainer.get_num_updates() < 3:
        update_num = trainer.get_num_updates()
        taken = [next(batches) for _ in range(2)]
        trainer.train_step(taken)
        if trainer.get_num_updates() == update_num:
            overflows += 1
            continue
        samples = task.teaching.recorder.current.samples
        assert len(samples) == 2, f"update {update_num}: {len(samples)} micro-batches recorded"
        for recorded, batch in zip(samples, taken):
            assert torch.equal(recorded["net_input"]["src_tokens"].cpu(), batch["net_input"]["src_tokens"])
    assert overflows > 0, "no overflow: the test did not test it"


def test_a_refresh_that_runs_out_of_memory_stops_in_one_line_with_the_rng_restored(toy_data, tmp_path, monkeypatch):
    """fairseq would recover from it and train on without the refresh on this worker alone (the others waiting in
    its collectives): it stops the run, naming the flags that set a refresh's memory, and leaves the student's RNG
    as it was."""
    cfg, task, model, criterion, trainer = trainer_for(toy_data, tmp_path, CASES["sgd"])

    def out_of_memory(*args):
        torch.rand(3)  # a refresh draws from the RNG before it fails
        raise RuntimeError("CUDA out of memory. (raised by the test)")

    monkeypatch.setattr(task.teaching, "refresh", out_of_memory)
    rng = torch.get_rng_state()
    with pytest.raises(SystemExit) as stopped:
        task.teaching.guarded_refresh(None, model, trainer.optimizer, 100)
    message = str(stopped.value.code)
    assert "\n" not in message and "update 100" in message and "--teacher-dev-max-tokens" in message, message
    assert torch.equal(torch.get_rng_state(), rng)


def test_a_refresh_that_runs_out_of_memory_restores_the_cuda_rng_too(toy_data, tmp_path, monkeypatch):
    """On a GPU the student's dropout draws from the CUDA generator: the refresh that ran out of memory leaves it
    as it was too (here a stand-in for it, which any machine has)."""
    cfg, task, model, criterion, trainer = trainer_for(toy_data, tmp_path, CASES["sgd"])
    cuda = {"state": torch.arange(8, dtype=torch.uint8)}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": cuda["state"].clone())
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device="cuda": cuda.update(state=state.clone()))

    def out_of_memory(*args):
        cuda["state"] = cuda["state"] + 1  # a refresh draws from the CUDA generator before it fails
        raise RuntimeError("CUDA out of memory. (raised by the test)")

    monkeypatch.setattr(task.teaching, "refresh", out_of_memory)
    saved = cuda["state"].clone()
    with pytest.raises(SystemExit):
        task.teaching.guarded_refresh(None, model, trainer.optimizer, 100)
    assert torch.equal(cuda["state"], saved)


# the window's optimizers: SGD with momentum and weight decay; Adam with its decoupled weight decay, from its third
# update (both moments far from settled); each over two micro-batches, clipped
WINDOW_CASES = {"sgd": CASES["sgd"],
                "adam": ["--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--weight-decay", "0.01", "--lr",
                         "0.005", "--update-freq", "2", "--sentence-avg"]}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("optimizer", list(WINDOW_CASES))
def test_the_past_window_replays_the_student_to_its_current_weights(toy_data, tmp_path, monkeypatch, device,
                                                                     optimizer):
    """--unroll-start past: the U updates replayed from the weights and optimizer state the student took them at
    end at the student's current weights."""
    from l2t_fairseq.refresh import teaching

    flags = [*WINDOW_CASES[optimizer], "--clip-norm", "0.1", "--unroll-start", "past", "--teacher-interval", "4",
             "--unroll-steps", "3", "--no-lookahead-gain"]
    cfg, task, model, criterion, trainer = trainer_for(toy_data, tmp_path, flags, device)
    assert next(trainer.model.parameters()).device.type == device
    seen = {}

    def replay_then_step(teacher, optimizer, unrolled, lookahead=True):
        phis = [teacher(state).detach() for state in unrolled.states]
        seen["replayed"] = final_weights(unrolled.step_loss, unrolled.params, phis, unrolled.batches, unrolled.rule)
        seen["student"] = {name: p.detach().clone() for name, p in trainable_params(model).items()}
        seen["from_current"] = final_weights(unrolled.step_loss, seen["student"], phis, unrolled.batches,
                                             unrolled.rule)
        return teach_once(teacher, optimizer, unrolled, lookahead)

    monkeypatch.setattr(teaching, "teach_once", replay_then_step)
    batches = train_batches(task, cfg)
    for _ in range(5):  # updates 0-4: the window opens before update 1, the refresh comes before update 4
        trainer.train_step([next(batches) for _ in range(2)])
    assert seen, "no teacher step"
    for name, p in seen["student"].items():
        torch.testing.assert_close(seen["replayed"][name], p, rtol=1e-5, atol=1e-6, msg=name)
    # re-applied from the current weights (--unroll-start current), the same updates land elsewhere
    assert max((seen["from_current"][n] - p).abs().max().item() for n, p in seen["student"].items()) > 1e-4
