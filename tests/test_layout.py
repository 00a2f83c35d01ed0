"""The layout of the code (docs/layout.md): its layers import only down, and files written before the modules moved
into them still load."""

import ast
import os
import shutil

import torch
from conftest import REPO, teacher_state, train_in_process

PACKAGE = os.path.join(REPO, "l2t_fairseq")
OLD_FILES = os.path.join(REPO, "tests", "data", "written-before-layout")

# the layers under the refresh protocol, lowest first: each imports only from those before it and the top-level
# modules below them all
LAYERS = ("unroll", "dev_measure", "teacher", "refresh")
# the top-level modules every layer may use: they import no layer
GROUND = ("errors", "whole_files", "distributed", "diagnostics", "noise", "figures", "commands", "teacher_log")
# the fairseq adapters and the tools on top of the layers
ON_TOP = ("criterions", "tasks", "models", "benchmark", "train_teacher", "actor_critic")


def modules():
    """{dotted name: path} of every module of the plugin."""
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
                found[dotted.removesuffix(".__init__")] = path
    return found


def imports(path):
    """The plugin's modules ``path`` imports, anywhere in it (also inside functions)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    named = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            named.add(node.module)
            named.update(f"{node.module}.{alias.name}" for alias in node.names)
    known = modules()
    return {name for name in named if name in known and name != "l2t_fairseq"}


def part(module):
    """The first name under ``l2t_fairseq``: a layer, a folder or a top-level module."""
    return module.split(".")[1]


def test_at_most_12_modules_at_the_top_and_none_over_350_lines():
    top = [name for name in os.listdir(PACKAGE) if name.endswith(".py")]
    assert len(top) <= 12, sorted(top)
    for module, path in modules().items():
        with open(path, encoding="utf-8") as f:
            assert sum(1 for _ in f) <= 350, module


def test_every_part_is_placed_in_the_layout():
    parts = {part(module) for module in modules() if module != "l2t_fairseq"}
    assert parts == set(LAYERS) | set(GROUND) | set(ON_TOP)


def test_the_layers_import_only_down():
    for module, path in modules().items():
        if module == "l2t_fairseq":
            continue
        here = part(module)
        for imported in imports(path):
            there = part(imported)
            if here in GROUND:
                assert there in GROUND, f"{module} imports {imported}"
            elif here in LAYERS:
                below = LAYERS[: LAYERS.index(here) + 1]
                assert there in GROUND or there in below, f"{module} imports {imported}, above it"


def test_no_import_circle():
    graph = {module: imports(path) for module, path in modules().items()}

    def reaches(start, goal, seen):
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    # a package's __init__ importing its own modules (registering them) is no circle
    circles = [m for m in graph if m != "l2t_fairseq" and not modules()[m].endswith("__init__.py")
               and reaches(m, m, {m})]
    assert not circles


def test_the_walk_sees_imports_in_functions(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from l2t_fairseq.benchmark import runner\n")
    assert imports(str(path)) == {"l2t_fairseq.benchmark", "l2t_fairseq.benchmark.runner"}


# -- files written before the move ------------------------------------------------------------------------------

TINY = [
    os.path.join(OLD_FILES, "bin"), "--user-dir", PACKAGE, "--task", "l2t_translation", "--criterion", "l2t_dlf",
    "--arch", "transformer_l2t_toy", "--encoder-embed-dim", "16", "--decoder-embed-dim", "16",
    "--encoder-ffn-embed-dim", "16", "--decoder-ffn-embed-dim", "16", "--encoder-layers", "1", "--decoder-layers", "1",
    "--encoder-attention-heads", "2", "--decoder-attention-heads", "2", "--optimizer", "adam", "--lr", "2e-3",
    "--max-tokens", "500", "--teacher-interval", "3", "--unroll-steps", "2", "--no-epoch-checkpoints", "--cpu",
    "--seed", "1", "--teacher-dev-max-tokens", "256", "--teacher-candidates", "2", "--disable-validation",
]


def test_a_checkpoint_written_before_the_move_resumes_with_its_window(tmp_path, monkeypatch):
    """The old checkpoint was saved after update 3 with the window of the refresh at update 3 open: resumed, that
    refresh replays it: one worker takes part, with a dev expected BLEU (a refresh without its window has none)."""
    from l2t_fairseq import teacher_log

    shutil.copy(os.path.join(OLD_FILES, "checkpoint.pt"), tmp_path / "checkpoint_last.pt")
    saved = teacher_state(tmp_path / "checkpoint_last.pt")
    assert saved["window"] is not None
    train_in_process(monkeypatch, *TINY, "--save-dir", tmp_path, "--max-update", "4")
    (record,) = [r for r in teacher_log.read(str(tmp_path / "teacher.jsonl")) if r["update"] == 3]
    assert record["workers"] == 1 and record.get("dev_expected_bleu") is not None


def test_a_teacher_file_written_before_the_move_is_read_by_teacher_path(tmp_path, monkeypatch):
    teacher = torch.load(os.path.join(OLD_FILES, "teacher.pt"))["extra_state"]["L2TTranslationTask"]["teacher"]
    train_in_process(monkeypatch, *TINY, "--save-dir", tmp_path, "--max-update", "1",
                     "--teacher-path", os.path.join(OLD_FILES, "teacher.pt"), "--freeze-teacher")
    used = teacher_state(tmp_path / "checkpoint_last.pt")["teacher"]
    assert used.keys() == teacher.keys()
    assert all(torch.equal(used[name], teacher[name]) for name in teacher)
