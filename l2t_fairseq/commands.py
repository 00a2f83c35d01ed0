"""fairseq's and this plugin's console commands, run by the Python that runs this one: its environment, whichever
it is (a virtual environment, a conda one, the system's), and wherever pip put the commands' launchers."""

import sys

MODULES = {
    "fairseq-preprocess": "fairseq_cli.preprocess",
    "fairseq-train": "fairseq_cli.train",
    "fairseq-generate": "fairseq_cli.generate",
    "l2t-benchmark": "l2t_fairseq.benchmark.cli",
    "l2t-search": "l2t_fairseq.benchmark.search",
    "l2t-plots": "l2t_fairseq.benchmark.plots",
    "l2t-train-teacher": "l2t_fairseq.train_teacher",
}


def command(name):
    """``[python, -m, module]`` of the console command ``name``."""
    return [sys.executable, "-m", MODULES[name]]
