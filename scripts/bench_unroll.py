"""Time and memory of one teacher step against the unroll's length U, each U in a fresh process.

    python scripts/bench_unroll.py DATA_BIN [--steps 5 50 200] [--keep-every 0] [--device cuda] [fairseq-train flags...]

For each U: builds the student exactly as ``fairseq-train`` does (``transformer_l2t_toy`` by default), trains
U + 2 ordinary updates so that the teacher holds U updates, then times one refresh with a teacher step through
them (``Teaching.refresh``: decoding, the unroll, the reverse loop, the lookahead gain) and reads the process's
peak resident memory before and after it (``getrusage``), or on a GPU (``--device cuda``) the peak CUDA memory
PyTorch allocated.  Prints one row per U, with the ratio of the refresh to one student step.
"""

import argparse
import itertools
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from l2t_fairseq.teacher import step as teacher_step
from l2t_fairseq.unroll.optimizer import snapshot


def peak_mib(device):
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(device, function):
    """Seconds ``function()`` took, waiting for the GPU's queued kernels on a GPU."""
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    function()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure(data, steps, keep_every, device, fairseq_flags, save_dir):
    from fairseq import options, tasks, utils
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq.trainer import Trainer

    if "--arch" not in fairseq_flags:
        fairseq_flags = ["--arch", "transformer_l2t_toy", *fairseq_flags]
    args = options.parse_args_and_arch(
        options.get_training_parser(),
        [data, "--user-dir", "l2t_fairseq", "--task", "l2t_translation", "--criterion", "l2t_dlf",
         "--optimizer", "adam", "--lr", "1e-3", "--max-tokens", "4096", "--max-update", "100000",
         *(["--cpu"] if device == "cpu" else []),
         # the refresh after U + 2 updates: a window of real steps (--unroll-start past) opens at update 2
         "--teacher-interval", str(steps + 2), "--unroll-steps", str(steps), "--unroll-keep-every", str(keep_every),
         "--seed", "1", "--save-dir", save_dir, *fairseq_flags],
    )
    cfg = convert_namespace_to_omegaconf(args)
    utils.import_user_module(cfg.common)
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    criterion = task.build_criterion(cfg.criterion)
    trainer = Trainer(cfg, task, model, criterion)
    batches = itertools.cycle(list(trainer.get_train_iterator(epoch=1).next_epoch_itr(shuffle=True)))
    if next(trainer.model.parameters()).device.type != device:
        raise RuntimeError(f"the student is not on {device}")
    step_times = [timed(device, lambda: trainer.train_step([next(batches)])) for _ in range(steps + 2)]
    teaching = task.teaching
    teaching.recorder.advance(trainer.get_num_updates())  # the last update kept, as the next one would keep it
    before = peak_mib(device)
    sample = utils.move_to_cuda(next(batches)) if device == "cuda" else next(batches)  # as the task gets it
    refresh = timed(device, lambda: teaching.refresh(
        sample, trainer.model, trainer.optimizer, trainer.get_num_updates()
    ))
    after = peak_mib(device)
    if not teaching.coefficients.optimizer.state:
        raise RuntimeError("the refresh took no teacher step: nothing of the unroll was timed")
    parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "U": steps, "parameters": parameters,
        "keep_every": teacher_step.keep_every(cfg.task.unroll_keep_every, steps,
                                              *snapshot(model, trainer.optimizer, cfg.task, copy=False)),
        "student_step_s": statistics.median(step_times[2:]), "refresh_s": refresh,
        "peak_before_mib": before, "peak_after_mib": after,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data")
    parser.add_argument("--steps", type=int, nargs="+", default=[5, 50, 200])
    parser.add_argument("--keep-every", type=int, default=0, help="--unroll-keep-every (0: the plugin's default)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="where the student trains (cuda: fairseq's GPU, without --cpu)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child process: measure this U only
    args, fairseq_flags = parser.parse_known_args()
    if args.one is not None:
        with tempfile.TemporaryDirectory() as save_dir:  # where the refresh logs teacher.jsonl
            print("RESULT", json.dumps(measure(args.data, args.one, args.keep_every, args.device, fairseq_flags,
                                               save_dir)))
        return 0
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"device: {where}; flags: {' '.join(fairseq_flags) or '(defaults)'}")
    memory = "peak CUDA allocated" if args.device == "cuda" else "peak RSS"
    print(f"| U | keep every | student step s | refresh s | x step | {memory} before MiB | after MiB |")
    print("|---|---|---|---|---|---|---|")
    for steps in args.steps:
        child = subprocess.run(
            [sys.executable, __file__, args.data, "--one", str(steps), "--keep-every", str(args.keep_every),
             "--device", args.device, *fairseq_flags], capture_output=True, text=True,
        )
        lines = [line for line in child.stdout.splitlines() if line.startswith("RESULT ")]
        if child.returncode != 0 or not lines:
            sys.exit(f"bench_unroll: error: U = {steps} failed:\n{child.stderr[-3000:]}")
        r = json.loads(lines[-1][len("RESULT "):])
        print(f"| {r['U']} | {r['keep_every']} | {r['student_step_s']:.3f} | {r['refresh_s']:.1f} "
              f"| {r['refresh_s'] / r['student_step_s']:.0f} | {r['peak_before_mib']:.0f} "
              f"| {r['peak_after_mib']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
