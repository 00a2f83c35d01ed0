"""One teacher across data-parallel workers: two gloo processes on the CPU.

The teacher-step tests start two processes of their own; the fairseq-train
tests run two ``fairseq-train`` processes as fairseq's distributed training
does on one machine (``--distributed-no-spawn``, one rank each, ``legacy_ddp``:
``pytorch_ddp`` needs a GPU).
"""

import os
import socket
import subprocess

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import PLUGIN, REPO, run, teacher_state

from l2t_fairseq import commands, teacher_log
from l2t_fairseq.distributed import digest, unwrap
from l2t_fairseq.teacher.model import Teacher
from l2t_fairseq.teacher.step import teacher_step

VOCAB, KEYS = 7, 3


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_teacher():
    torch.manual_seed(0)
    teacher = Teacher(VOCAB, num_keys=KEYS, state_dim=3).double()
    return teacher, torch.optim.Adam(teacher.parameters(), lr=1e-2)


def hypergradient_of(rank):
    """A worker's own (state, dJ/dPhi, J): different on every worker, like their batches."""
    generator = torch.Generator().manual_seed(100 + rank)
    state = torch.rand(3, generator=generator, dtype=torch.float64)
    return state, torch.randn(VOCAB, generator=generator, dtype=torch.float64), -0.1 * (rank + 1)


def take_step(teacher, optimizer, rank, contributes=True, dev_objective=None):
    if not contributes:
        return teacher_step(teacher, optimizer)
    state, d_phi, value = hypergradient_of(rank)
    value = value if dev_objective is None else dev_objective
    return teacher_step(teacher, optimizer, [teacher(state)], [d_phi], value)


def worker(rank, port, out):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    results = {}
    for case in ("both", "rank0_only", "nan_on_rank1", "inf_on_rank0"):
        teacher, optimizer = make_teacher()
        take_step(teacher, optimizer, rank)  # a first ordinary step, so Adam has state to keep
        before = {k: v.clone() for k, v in teacher.state_dict().items()}
        if case == "both":
            step = take_step(teacher, optimizer, rank)
        elif case == "rank0_only":
            step = take_step(teacher, optimizer, rank, contributes=rank == 0)
        elif case == "nan_on_rank1":
            step = take_step(teacher, optimizer, rank, dev_objective=float("nan") if rank == 1 else None)
        else:
            step = take_step(teacher, optimizer, rank, dev_objective=float("inf") if rank == 0 else None)
        results[case] = {
            "step": vars(step), "before": before, "after": teacher.state_dict(),
            "adam": optimizer.state_dict()["state"],
        }
    torch.save(results, os.path.join(out, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher_step")
    mp.start_processes(worker, args=(free_port(), str(out)), nprocs=2, start_method="spawn")
    return [torch.load(out / f"rank{r}.pt") for r in range(2)]


def reference_step(contributing_ranks):
    """One process: the teachers' first common step, then Adam on the mean of the given workers' hypergradients."""
    teacher, optimizer = make_teacher()
    for ranks in ((0, 1), contributing_ranks):
        grads = []
        for rank in ranks:
            teacher.zero_grad()
            state, d_phi, _ = hypergradient_of(rank)
            torch.autograd.backward([teacher(state)], [d_phi])
            grads.append([p.grad.clone() for p in teacher.parameters()])
        for p, *per_rank in zip(teacher.parameters(), *grads):
            p.grad = sum(per_rank) / len(per_rank)
        optimizer.step()
    return teacher.state_dict()


def test_workers_step_with_the_mean_of_their_hypergradients(two_workers):
    expected = reference_step((0, 1))
    for result in two_workers:
        case = result["both"]
        assert case["step"]["workers"] == 2 and not case["step"]["skipped"]
        assert case["step"]["dev_expected_bleu"] == pytest.approx((0.1 + 0.2) / 2)
        for name in expected:
            torch.testing.assert_close(case["after"][name], expected[name], rtol=1e-12, atol=1e-14)
    for name in expected:  # bit for bit the same teacher on both workers
        assert torch.equal(two_workers[0]["both"]["after"][name], two_workers[1]["both"]["after"][name])


def test_a_worker_without_a_hypergradient_has_weight_zero(two_workers):
    expected = reference_step((0,))
    for result in two_workers:
        case = result["rank0_only"]
        assert case["step"]["workers"] == 1
        for name in expected:
            torch.testing.assert_close(case["after"][name], expected[name], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("case", ["nan_on_rank1", "inf_on_rank0"])
def test_a_non_finite_value_on_one_worker_skips_the_step_on_all(two_workers, case):
    for result in two_workers:
        outcome = result[case]
        assert outcome["step"]["skipped"] and outcome["step"]["hypergrad_norm"] is None
        for name, value in outcome["before"].items():
            assert torch.equal(outcome["after"][name], value), name
        for moments in outcome["adam"].values():
            assert int(moments["step"]) == 1  # only the first, ordinary step
            assert all(torch.isfinite(m).all() for m in (moments["exp_avg"], moments["exp_avg_sq"]))


def test_one_worker_needs_no_process_group():
    teacher, optimizer = make_teacher()
    step = take_step(teacher, optimizer, rank=0)
    assert step.workers == 1 and not step.skipped and step.hypergrad_norm > 0
    skipped = take_step(teacher, optimizer, rank=0, dev_objective=float("nan"))
    assert skipped.skipped and all(torch.isfinite(p).all() for p in teacher.parameters())


def test_unwrap_finds_the_bare_student_under_fairseqs_wrappers():
    from fairseq.distributed import DistributedTimeoutWrapper, LegacyDistributedDataParallel, ModuleProxyWrapper

    student = torch.nn.Linear(2, 2)
    wrapped = DistributedTimeoutWrapper(
        ModuleProxyWrapper(LegacyDistributedDataParallel(student, process_group=None)), timeout=0
    )
    assert hasattr(student, "weight") and hasattr(wrapped, "weight")  # the proxy forwards attributes
    assert unwrap(wrapped) is student and unwrap(student) is student


# -- two fairseq-train ranks ----------------------------------------------------------------------

# The toy corpus makes 15 batches of 1,200 tokens per epoch: with 2 workers an epoch is 8 updates and
# worker 1 gets fairseq's dummy batch at its 8th (updates 7, 15, 23, ...).  Teaching every 7 updates
# makes update 7 a refresh with a dummy batch on worker 1: it must take part all the same.
DDP_FLAGS = ("--max-tokens", "1200", "--teacher-interval", "7", "--unroll-steps", "6")


def ddp_train(data, save_dir, *extra, timeout=600):
    """Two fairseq-train processes, ranks 0 and 1 of one gloo group; returns their outputs."""
    port = free_port()
    processes = []
    for rank in range(2):
        command = [
            *commands.command("fairseq-train"), data, "--user-dir", PLUGIN, "--task", "l2t_translation",
            "--criterion", "l2t_dlf", "--arch", "transformer_l2t_toy", "--optimizer", "adam", "--lr", "2e-3",
            "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "100", "--save-dir", save_dir,
            "--no-epoch-checkpoints", "--log-format", "simple", "--log-interval", "10", "--cpu", "--seed", "1",
            "--distributed-world-size", "2", "--distributed-backend", "gloo",
            "--distributed-init-method", f"tcp://localhost:{port}", "--distributed-no-spawn",
            "--distributed-rank", str(rank), "--ddp-backend", "legacy_ddp", *DDP_FLAGS, *map(str, extra),
        ]
        processes.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                          cwd=REPO))
    try:
        outputs = [p.communicate(timeout=timeout)[0] for p in processes]
    finally:
        for p in processes:
            p.kill()
    for p, output in zip(processes, outputs):
        assert p.returncode == 0, output[-3000:]
    return outputs


@pytest.fixture(scope="module")
def ddp_run(toy_data, tmp_path_factory):
    save_dir = tmp_path_factory.mktemp("ddp")
    ddp_train(toy_data, save_dir, "--max-update", 16)
    return save_dir


def test_two_ranks_keep_one_teacher_through_an_uneven_epoch(ddp_run):
    records = teacher_log.read(ddp_run / "teacher.jsonl")
    # written once, by rank 0; at update 7 rank 1 trains on a dummy batch and still replays its 6 real updates
    assert [(r["update"], r["workers"]) for r in records] == [(7, 2), (14, 2)]
    for r in records:
        assert not r["skipped"] and r["hypergrad_norm"] > 0
        rank0, rank1 = r["teacher_digest"]
        assert rank0 == rank1  # bit for bit the same teacher on both ranks
    assert records[0]["teacher_digest"] != records[1]["teacher_digest"], "the teacher did not move"
    assert records[1]["phi_digest"] != records[0]["phi_digest"]


def resume(ddp_run, save_dir):
    save_dir.mkdir()
    for name in ("checkpoint_last.pt", "teacher.jsonl", "teacher_phi.npy"):
        (save_dir / name).write_bytes((ddp_run / name).read_bytes())
    return save_dir


def test_two_ranks_resume_with_the_saved_teacher(toy_data, ddp_run, tmp_path):
    """Resumed at update 16, both ranks hold exactly the saved teacher (rank 1 unpickles the broadcast checkpoint);
    rank 0 takes back its latest updates, rank 1 (whose updates fairseq does not save) has weight 0 at the next
    refresh, update 21, having taken 5 of U = 6 updates since."""
    state = teacher_state(ddp_run / "checkpoint_last.pt")["teacher"]
    saved = Teacher(*state["log_W"].shape, parametrization="exp")
    saved.load_state_dict(state)
    frozen = resume(ddp_run, tmp_path / "frozen")
    outputs = ddp_train(toy_data, frozen, "--max-update", 22, "--freeze-teacher")
    assert f"Loaded checkpoint {frozen}/checkpoint_last.pt" in outputs[0]
    record = teacher_log.read(frozen / "teacher.jsonl")[-1]
    assert record["update"] == 21 and record["teacher_digest"] == [digest(saved)] * 2
    learning = resume(ddp_run, tmp_path / "learning")
    ddp_train(toy_data, learning, "--max-update", 22)
    records = teacher_log.read(learning / "teacher.jsonl")
    assert [(r["update"], r["workers"]) for r in records] == [(7, 2), (14, 2), (21, 1)]
    assert not records[-1]["skipped"] and len(set(records[-1]["teacher_digest"])) == 1


def test_fewer_dev_batches_than_workers_does_not_hang(toy_data, tmp_path):
    """The whole dev set is one batch: rank 1's shard holds only fairseq's filler; it takes part with weight 0."""
    ddp_train(toy_data, tmp_path, "--max-update", 8, "--teacher-dev-max-tokens", 100000, "--disable-validation",
              timeout=300)
    (record,) = teacher_log.read(tmp_path / "teacher.jsonl")
    assert record["update"] == 7 and record["workers"] == 1 and not record["skipped"]


def test_the_replay_is_not_the_real_step_under_data_parallelism(toy_data, tmp_path):
    """Under plain SGD one worker's replay of its window ends at the student's weights (replay_gap ~ 0); with two,
    each worker replays its own half of every update, and the replay ends measurably elsewhere
    (docs/distributed.md states it)."""
    sgd = ("--optimizer", "sgd", "--lr", "0.5", "--lr-scheduler", "fixed", "--max-update", 8, "--disable-validation",
           "--no-save")
    ddp_train(toy_data, tmp_path / "two", *sgd)
    run("fairseq-train", toy_data, "--user-dir", PLUGIN, "--task", "l2t_translation", "--criterion", "l2t_dlf",
        "--arch", "transformer_l2t_toy", "--max-tokens", "1200", "--cpu", "--seed", "1", "--save-dir", tmp_path / "one",
        *DDP_FLAGS, *sgd)
    (one,), (two,) = (teacher_log.read(tmp_path / d / "teacher.jsonl") for d in ("one", "two"))
    assert one["update"] == two["update"] == 7 and two["workers"] == 2
    # one worker's gap is rounding through 8 steps at lr 0.5 (2.0e-4 measured on one x86 CPU, less on another);
    # two workers' is the half-batch difference, ~0.08
    assert one["replay_gap"] < 1e-3 < 0.01 < two["replay_gap"], (one["replay_gap"], two["replay_gap"])
