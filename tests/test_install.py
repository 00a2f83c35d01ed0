"""The plugin installs as README's "On a GPU machine" says, into an environment that already has torch and fairseq
(here the CPU one; scripts/setup.sh installs fairseq-fixed with --no-deps the same way)."""

import importlib.metadata
import os
import re
import subprocess
import sys

import pytest
from conftest import REPO


def test_the_plugin_installs_with_no_deps_beside_an_existing_torch_and_fairseq(tmp_path):
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), REPO], capture_output=True, text=True,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    # from another folder, so that the import is the installed copy, not this checkout
    check = subprocess.run(
        [sys.executable, "-c", "import l2t_fairseq, fairseq, torch; print(l2t_fairseq.__file__); "
         "from fairseq.tasks import TASK_REGISTRY; print('l2t_translation' in TASK_REGISTRY)"],
        capture_output=True, text=True, cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(target)),
    )
    assert check.returncode == 0, check.stderr[-3000:]
    path, registered = check.stdout.split()[-2:]
    assert path.startswith(str(target)) and registered == "True", check.stdout


def install_block():
    """The command lines of README's "Install on a GPU machine" block."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        text = f.read()
    section = text[text.index("## Install on a GPU machine"):]
    block = section.split("```")[1]
    return [line.split("#")[0].strip() for line in block.strip().splitlines() if line.split("#")[0].strip()]


def requirement_closure(name):
    """``name`` and every distribution it requires (without extras), as installed here."""
    seen, todo = {}, [name]
    while todo:
        dist = importlib.metadata.distribution(todo.pop())
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key in seen or key in ("setuptools", "pip"):  # a fresh environment has its own
            continue
        seen[key] = dist
        for requirement in dist.requires or []:
            if "extra ==" not in requirement:
                todo.append(re.split(r"[ ;<>=!~\[]", requirement, maxsplit=1)[0])
    return seen.values()


@pytest.mark.slow  # minutes: pip installs fairseq's and the commands' dependencies
def test_the_install_block_as_written_in_a_fresh_environment_with_a_cpu_torch(tmp_path):
    """README's install block, line by line, in a new virtual environment that holds only a torch (this one's CPU
    torch and what it requires, linked in): the plugin imports, registers its task, and the commands start. The
    clone is this checkout; the last line, which asks for a CUDA device, is replaced by the same import; the four
    commands are installed, and one starts (they import the same modules)."""
    lines = install_block()
    assert lines[0].startswith("pip install --no-deps fairseq-fixed") and lines[-1].startswith("python -c")
    venv = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    for dist in requirement_closure("torch"):
        tops = {str(f).split("/")[0] for f in dist.files if not str(f).startswith("..")}
        for top in tops:
            source = dist.locate_file(top)
            if os.path.exists(source) and not os.path.exists(os.path.join(site, top)):
                os.symlink(source, os.path.join(site, top))
    # PIP_COMPILE=0 (pip install --no-compile): scipy's, pandas' and the others' bytecode is left to the first
    # import, which the check below makes for what the plugin needs
    env = dict(os.environ, PATH=f"{venv / 'bin'}:{os.environ['PATH']}", VIRTUAL_ENV=str(venv), PIP_COMPILE="0")
    env.pop("PYTHONPATH", None)
    for line in lines[:-1]:
        if line.startswith("git clone"):
            continue  # this checkout is the clone
        command = line.split("&&")[-1].strip() if line.startswith("cd ") else line
        if command.startswith("pip "):
            command = f"{python} -m {command}"
        result = subprocess.run(command, shell=True, capture_output=True, text=True, cwd=REPO, env=env)
        assert result.returncode == 0, f"{line}:\n{result.stderr[-3000:]}"
    check = subprocess.run(
        [python, "-c", "import l2t_fairseq, torch; from fairseq.tasks import TASK_REGISTRY; "
         "print(torch.__version__, 'l2t_translation' in TASK_REGISTRY)"],
        capture_output=True, text=True, cwd=tmp_path, env=env,
    )
    assert check.returncode == 0 and check.stdout.split()[-1] == "True", check.stderr[-3000:]
    for command in ("l2t-benchmark", "l2t-search", "l2t-plots", "l2t-train-teacher"):
        assert (venv / "bin" / command).is_file(), command
    started = subprocess.run([str(venv / "bin" / "l2t-benchmark"), "--help"], capture_output=True, text=True, env=env)
    assert started.returncode == 0, started.stderr[-3000:]
