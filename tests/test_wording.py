"""The project speaks of the project only: no words about how the work on it was organized."""

import os
import re

from conftest import REPO

# built from pieces so that this file does not name them itself
WORDS = re.compile(r"\b(" + "|".join([
    "sit" "tings?", "ses" "sions?", "iss" r"ues? #?\d+", "the " "brief",
]) + r")\b", re.IGNORECASE)
API = re.compile("scope=[\"']ses" "sion[\"']")  # pytest's fixture scope, a name of its API
QUOTED_WORD = re.compile(r"`[^`\s]+`")  # one quoted word: a vocabulary entry of the data (teacher.md's tables)
SKIPPED_FOLDERS = {".git", ".venv", "runs", "__pycache__", ".ruff_cache", ".pytest_cache", ".whl"}
# what the students translated and the corpora's references: the data's words, not the project's
DATA_SUFFIXES = (".hyp", ".png", ".pt", ".npy", ".idx", ".bin", ".gz", "reference.txt", "source.txt")


def project_files():
    for folder, folders, names in os.walk(REPO):
        folders[:] = [f for f in folders if f not in SKIPPED_FOLDERS and not f.endswith(".egg-info")]
        for name in names:
            if not name.endswith(DATA_SUFFIXES):
                yield os.path.join(folder, name)


def test_no_process_words_in_the_project():
    found = []
    for path in project_files():
        with open(path, encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, 1):
                match = WORDS.search(QUOTED_WORD.sub("", API.sub("", line)))
                if match:
                    found.append(f"{os.path.relpath(path, REPO)}:{number}: {match.group(0)!r}")
    assert not found, "\n".join(found)


def test_the_check_finds_them():
    assert WORDS.search("resumed in a later sit" "ting") and WORDS.search("see iss" "ue 45")
    assert not WORDS.search(API.sub("", '@pytest.fixture(scope="session")'))
    assert not WORDS.search(QUOTED_WORD.sub("", "| `sit" "ting` | 37 | 1.36 |"))
    assert WORDS.search(QUOTED_WORD.sub("", "`a` was weighted up in a later sit" "ting"))


def test_the_readme_is_for_a_user():
    """At most 250 lines, opening with exactly the two commands a fresh machine runs: the demo and the tests."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert len(lines) <= 250, len(lines)
    opening = lines[lines.index("```") + 1:lines.index("```", lines.index("```") + 1)]
    assert [line.split("#")[0].strip() for line in opening] == ["make demo", "make test"]
