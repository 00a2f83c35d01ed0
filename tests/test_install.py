"""The plugin installs as README's "On a GPU machine" says, into an environment that already has torch and fairseq
(here the CPU one; scripts/setup.sh installs fairseq-fixed with --no-deps the same way)."""

import os
import subprocess
import sys

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
