"""Files written whole: a reader (another process, or a run resumed after a cut) finds the old file or the new one,
never a part of one, and a write that fails leaves the old file as it was."""

import contextlib
import os


@contextlib.contextmanager
def replacing(path):
    """A temporary path to write ``path``'s new content to; it becomes ``path`` when the block ends without error."""
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        yield temporary
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    os.replace(temporary, path)


def write_whole(path, text):
    """Writes ``text`` to ``path`` whole."""
    with replacing(path) as temporary, open(temporary, "w", encoding="utf-8") as f:
        f.write(text)
