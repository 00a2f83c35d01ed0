"""The machine a benchmark runs on: its threads, its kernels, and keeping GPU and CPU records apart."""

import glob
import json
import os
import platform

import torch

from l2t_fairseq.errors import UsageError


def kernels(device):
    """What a run's arithmetic depends on beyond its command: the CPU's kernels, or the GPU and CUDA's version."""
    if device == "cuda":
        return f"{torch.cuda.get_device_name()}, CUDA {torch.version.cuda}, torch {torch.__version__}"
    return cpu_kernels()


def cpu_info():
    """The processor's model name and its feature flags (Linux: /proc/cpuinfo, where platform gives only the
    architecture)."""
    model, flags = platform.processor() or "unknown", ""
    if os.path.isfile("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
        model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), model)
        flags = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("flags")), "")
    return model, flags


def cpu_kernels(capability=None):
    """What a CPU run's arithmetic depends on beyond its command: the processor, the instruction set torch's
    kernels use (``capability``: the runs' own, where they are pinned; default this process's), torch's version (a
    run trained again where one of them differs may not be the recorded run)."""
    return f"{cpu_info()[0]}, {capability or torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}"


def environment_threads():
    """The threads per process that the environment asks for (``OMP_NUM_THREADS``, as torch reads it), or None."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def on_device(preset, device):
    """The preset as it trains and decodes on ``device``: on a GPU, its ``--cpu`` flags dropped."""
    if device == "cpu":
        return preset
    return {**preset, **{key: [f for f in preset[key] if f != "--cpu"] for key in ("train", "generate")}}


def check_device(out, device):
    """One line where OUT already holds records made on the other device: GPU and CPU rows are never mixed (their
    costs differ, and so can their arithmetic)."""
    for path in sorted(glob.glob(os.path.join(out, "records", "*.json"))):
        with open(path) as f:
            recorded = json.load(f).get("device", "cpu")
        if recorded != device:
            raise UsageError(f"--out {out}: holds records made on the {recorded} ({os.path.basename(path)}); "
                             f"give --device {device} runs a folder of their own")
