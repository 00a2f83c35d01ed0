"""Which runs to train, in what order, ``--jobs`` at a time, and the locks that let two processes share them."""

import concurrent.futures
import contextlib
import datetime
import fcntl
import os

from l2t_fairseq.errors import UsageError


def claim(path):
    """An exclusive lock on ``path`` that no other process holds: the open file that holds it (closing it, or the
    process ending, releases it), or None."""
    f = open(path, "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


@contextlib.contextmanager
def held(path):
    """An exclusive lock on ``path``, waited for, across processes."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


class Scheduler:
    """Runs each wanted (row, seed) of ``benchmark`` without a record, as soon as what it needs is done.  Each run
    is locked (``WORK/ROW-seedN.lock``) while a process trains it; a run another process holds, and the runs that
    need it, are left to that process, to be recorded when it finishes."""

    def __init__(self, benchmark):
        self.benchmark, self.args = benchmark, benchmark.args

    def wanted(self):
        return [(row, seed) for seed in self.args.seeds for row in self.args.rows]

    def recorded(self):
        """The finished runs of the wanted rows and seeds."""
        return {key: record for key in self.wanted() if (record := self.benchmark.load(*key)) is not None}

    def run_all(self):
        """Every (row, seed) without a record, as soon as what it needs is done, ``--jobs`` at a time."""
        bench, wanted = self.benchmark, self.wanted()
        done = bench.recorded()
        for key in done:
            print(f"  {bench.key(*key)}: recorded, skipped", flush=True)
        pending = [key for key in wanted if key not in done]
        missing = {need for key in pending for need in bench.dependencies(*key) if need not in wanted}
        if missing:
            raise UsageError(f"cannot run {[bench.key(*k) for k in pending]}: they need "
                             f"{sorted(bench.key(*k) for k in missing)} (add those rows)")
        failures = []
        with concurrent.futures.ThreadPoolExecutor(self.args.jobs) as pool:
            running = {}
            while pending or running:
                elsewhere, progressed = [], False  # held by another process; recorded by it since
                for key in list(pending):
                    if len(running) >= self.args.jobs or failures:
                        break
                    if not all(need in done for need in bench.dependencies(*key)):
                        continue
                    claimed = self.claim(*key)
                    if claimed is None:
                        elsewhere.append(key)
                        continue
                    pending.remove(key)
                    if (record := bench.load(*key)) is not None:  # the other process finished it meanwhile
                        claimed.close()
                        print(f"  {bench.key(*key)}: recorded by another process", flush=True)
                        done[key], progressed = record, True
                        continue
                    print(f"[{datetime.datetime.now():%H:%M:%S}] start {bench.key(*key)}", flush=True)
                    running[pool.submit(self.claimed_run, claimed, *key, dict(done))] = key
                if not running:
                    if failures:  # nothing more is started after a failure: report it, not the runs left
                        break
                    if progressed:  # what needed it may come before it: another pass
                        continue
                    print(f"  left to the other process (training {[bench.key(*k) for k in elsewhere]}): "
                          f"{[bench.key(*k) for k in pending]}", flush=True)
                    break
                finished, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in finished:
                    key = running.pop(future)
                    try:
                        done[key] = future.result()
                    except RuntimeError as e:
                        failures.append(str(e))
                        continue
                    r = done[key]
                    test = f"test BLEU {r['test_bleu']:.2f}, " if "test_bleu" in r else ""
                    print(f"[{datetime.datetime.now():%H:%M:%S}] done {bench.key(*key)}: {test}"
                          f"best dev BLEU {r['best_dev_bleu']}, {r['train_seconds']:.0f} s", flush=True)
                    bench.report(done)
        if failures:
            raise RuntimeError("\n".join(failures))
        return done

    def claim(self, row, seed):
        """The run's lock (an open file), or None where another process holds it.  The trained row also needs no
        other process to be training its teacher (the teacher's training then takes that lock itself; a run of
        this process that is training it is waited for there)."""
        if row == "l2t_dlf_trained" and not self.benchmark.teacher_training.lock.locked():
            training = claim(os.path.join(self.args.work, "teacher-training.lock"))
            if training is None:
                return None
            training.close()
        return claim(os.path.join(self.args.work, self.benchmark.key(row, seed) + ".lock"))

    def claimed_run(self, claimed, row, seed, done):
        with claimed:
            return self.benchmark.run(row, seed, done)
