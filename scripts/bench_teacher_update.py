"""Cost of one teacher update relative to one ordinary student step, same run, same batches.

    python scripts/bench_teacher_update.py DATA_BIN [--unroll-steps 5] [--repeats 5] [fairseq-train flags...]

Builds the student, criterion and fairseq Trainer exactly as ``fairseq-train``
does (``transformer_l2t_toy`` by default), times ``trainer.train_step`` on training
batches, then one refresh (``Teaching.refresh``): everything the teacher does
every K updates (greedy decoding of a training and a dev batch for the state,
decoding the dev candidates and a held-out batch's, RMD through the student's
latest U updates, the teacher's Adam step, the lookahead gain), and prints
medians and their ratio.  Run it under
``python -m cProfile -s tottime`` to see where the time goes.
"""

import argparse
import itertools
import statistics
import sys
import tempfile
import time

import torch
from fairseq import options, tasks, utils
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.trainer import Trainer


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data")
    parser.add_argument("--unroll-steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    args, fairseq_flags = parser.parse_known_args()
    with tempfile.TemporaryDirectory() as save_dir:  # where the refreshes log teacher.jsonl
        return measure(args, fairseq_flags, save_dir)


def measure(args, fairseq_flags, save_dir):
    updates = args.unroll_steps + 3 * args.repeats
    if "--arch" not in fairseq_flags:
        fairseq_flags = ["--arch", "transformer_l2t_toy", *fairseq_flags]
    train_args = options.parse_args_and_arch(
        options.get_training_parser(),
        [args.data, "--user-dir", "l2t_fairseq", "--task", "l2t_translation", "--criterion", "l2t_dlf",
         "--optimizer", "adam", "--lr", "1e-3", "--max-tokens", "2000", "--max-update", "100000",
         # the refresh after the last update: a window of real steps (--unroll-start past) opens U before it
         "--teacher-interval", str(updates), "--unroll-steps", str(args.unroll_steps), "--seed", "1",
         "--save-dir", save_dir, *fairseq_flags],
    )
    cfg = convert_namespace_to_omegaconf(train_args)
    utils.import_user_module(cfg.common)
    torch.manual_seed(cfg.common.seed)
    task = tasks.setup_task(cfg.task)
    task.load_dataset("valid")
    model = task.build_model(cfg.model)
    criterion = task.build_criterion(cfg.criterion)
    trainer = Trainer(cfg, task, model, criterion)
    batches = itertools.cycle(list(trainer.get_train_iterator(epoch=1).next_epoch_itr(shuffle=True)))

    step_times = []
    for _ in range(updates):
        sample = next(batches)
        start = time.perf_counter()
        trainer.train_step([sample])
        step_times.append(time.perf_counter() - start)
    step_times = step_times[3:]  # warm-up
    task.teaching.recorder.advance(trainer.get_num_updates())  # the last update kept, as the next one would
    window = task.teaching.recorder.window  # a refresh closes it: each repeat replays the same window
    update_times = []
    for _ in range(args.repeats):
        task.teaching.recorder.window = window
        start = time.perf_counter()
        task.teaching.refresh(sample, trainer.model, trainer.optimizer, trainer.get_num_updates())
        update_times.append(time.perf_counter() - start)
    steps = {int(s["step"]) for s in task.coefficients.optimizer.state.values()}
    if steps != {args.repeats}:
        sys.exit(f"bench_teacher_update: error: {steps or 'no'} teacher steps in {args.repeats} refreshes: "
                 "the unroll was not timed")
    step, update = statistics.median(step_times), statistics.median(update_times)
    print(f"device: {'cuda' if torch.cuda.is_available() and not cfg.common.cpu else 'cpu'}, "
          f"threads: {torch.get_num_threads()}, U = {args.unroll_steps}, arch = {cfg.model._name}")
    print(f"student step: {step * 1000:.1f} ms (median of {len(step_times)})")
    print(f"teacher update: {update * 1000:.1f} ms (median of {len(update_times)})")
    print(f"teacher update / student step: {update / step:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
