"""Pinning torch's CPU kernels, and the kernel fingerprint that says which runs may be compared.

A CPU run's arithmetic depends on the kernels that torch's dispatch, its BLAS
(MKL) and oneDNN pick for the processor: the same command, initial weights and
batches gave 13.83 test BLEU on one machine and 29.95 on another.  The benchmark
and the search pin them to the AVX2 code paths (``PINNED``, passed on to every
run they start; ``--no-pin-kernels`` leaves the machine's own choice), and each
record carries a **kernel fingerprint**: the digest of the weights after a few
updates of the benchmark's Transformer student from a fixed seed, computed in a
process of its own under the runs' settings (the pins, the threads per run).  Two
runs are compared, paired, only where their fingerprints are equal.  A
fingerprint is computed once per machine and settings and cached
(``$XDG_CACHE_HOME/l2t-fairseq/kernel-fingerprints.json``).

    python -m l2t_fairseq.benchmark.kernels [--threads N] [--no-pin-kernels]   # this machine's fingerprint
"""

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys

import torch

from l2t_fairseq.benchmark.scheduler import held
from l2t_fairseq.whole_files import write_whole

# the instruction set torch's own kernels are dispatched to, MKL's conditional numerical reproducibility code path,
# and oneDNN's largest instruction set: AVX2, which every machine met so far (Intel Xeon AVX512, AMD EPYC AVX2 and
# AVX512) has, at about the speed of each one's own choice (MKL_CBWR=COMPATIBLE costs 2.5x)
PINNED = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
FINGERPRINT_UPDATES = 10
DIGEST_CHARS = 16


def pin_kernels(pinned=True, environ=os.environ):
    """Pins ``environ`` (which the runs inherit) to ``PINNED``, or, with ``pinned`` false, leaves the machine's own
    choice (removing earlier pins); returns the pins in force."""
    for name, value in PINNED.items():
        if pinned:
            environ[name] = value
        else:
            environ.pop(name, None)
    return pins_in_force(environ)


def pins_in_force(environ=os.environ):
    """The pins that ``environ`` holds, set by ``pin_kernels`` or by hand."""
    return {name: environ[name] for name in PINNED if name in environ}


def kernel_identity(record):
    """What pairs a record's run with others: its kernel fingerprint; for a record without one (made on a GPU, or
    before fingerprints), its ``kernels`` (processor, instruction set and torch; GPU, CUDA and torch)."""
    return record.get("kernel_fingerprint") or record.get("kernels")


def cpu_flags():
    """The processor's model name and a digest of its feature flags (the same model name can hide other
    instruction sets on a virtual machine)."""
    model, flags = platform.processor() or "unknown", ""
    if os.path.isfile("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
        model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), model)
        flags = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("flags")), "")
    return model, hashlib.sha256(" ".join(sorted(flags.split())).encode()).hexdigest()[:DIGEST_CHARS]


def settings_key(threads, environ=os.environ):
    """What a fingerprint is cached under: the processor, torch's version, the pins and the threads per run."""
    model, flags = cpu_flags()
    pins = ",".join(f"{name}={environ[name]}" for name in sorted(PINNED) if name in environ)
    return f"{model} [{flags}] torch {torch.__version__} threads {threads} pins [{pins}]"


def cache_path():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "l2t-fairseq", "kernel-fingerprints.json")


def fingerprint(threads, environ=None, cache=None):
    """The kernel fingerprint of runs with ``threads`` threads under ``environ`` (default: this process's, which
    the runs inherit), from the cache, or computed in a process of its own and cached: {``kernel_fingerprint``,
    ``capability`` (the instruction set torch dispatched to there)}."""
    environ = dict(os.environ if environ is None else environ)
    cache = cache or cache_path()
    key = settings_key(threads, environ)
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    with held(cache + ".lock"):  # runs started at once compute it once
        known = json.load(open(cache)) if os.path.isfile(cache) else {}
        if key not in known:
            known[key] = computed(threads, environ)
            write_whole(cache, json.dumps(known, indent=1, sort_keys=True))
    return known[key]


def computed(threads, environ):
    """The fingerprint and the capability, computed in a child process under ``environ`` (torch reads the pins
    when it starts)."""
    env = dict(environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    result = subprocess.run([sys.executable, "-m", "l2t_fairseq.benchmark.kernels", "--here"], capture_output=True,
                            text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"kernel fingerprint failed: {result.stderr.strip().splitlines()[-1:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def student_updates(updates=FINGERPRINT_UPDATES, seed=1):
    """The weights' digest after ``updates`` Adam updates of the benchmark's Transformer student
    (``transformer_l2t_toy``, dropout on) on fixed random batches, from ``seed``: the kernels of its forward and
    backward, Adam, and the random numbers of dropout."""
    from argparse import Namespace

    from fairseq.data import Dictionary, LanguagePairDataset
    from fairseq.models import transformer

    from l2t_fairseq.models import toy_architecture

    torch.manual_seed(seed)
    dictionary = Dictionary()
    for i in range(200):
        dictionary.add_symbol(f"w{i}")
    args = Namespace(dropout=0.1, max_source_positions=64, max_target_positions=64)
    toy_architecture(args)
    model = transformer.TransformerModel.build_model(args, Namespace(source_dictionary=dictionary,
                                                                     target_dictionary=dictionary)).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3, betas=(0.9, 0.98))

    def sentence():
        length = int(torch.randint(4, 20, ()))
        return torch.cat([torch.randint(dictionary.nspecial, len(dictionary), (length,)),
                          torch.tensor([dictionary.eos()])])

    for _ in range(updates):
        pairs = [(sentence(), sentence()) for _ in range(32)]
        dataset = LanguagePairDataset([s for s, _ in pairs], [len(s) for s, _ in pairs], dictionary,
                                      [t for _, t in pairs], [len(t) for _, t in pairs], dictionary)
        batch = dataset.collater([dataset[i] for i in range(len(pairs))])
        logits, _ = model(**batch["net_input"])
        loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), batch["target"].view(-1),
                                                 ignore_index=dictionary.pad())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:DIGEST_CHARS]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="threads per run (default: 1)")
    parser.add_argument("--no-pin-kernels", action="store_true", help="the machine's own kernels, unpinned")
    parser.add_argument("--here", action="store_true", help=argparse.SUPPRESS)  # the computation, in this process
    args = parser.parse_args(argv)
    if args.here:
        print(json.dumps({"kernel_fingerprint": student_updates(),
                          "capability": torch.backends.cpu.get_cpu_capability()}), flush=True)
        return 0
    pin_kernels(not args.no_pin_kernels)
    print(json.dumps({"settings": settings_key(args.threads), **fingerprint(args.threads)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
