import os

import pytest

from l2t_fairseq.whole_files import replacing, write_whole


def test_a_write_replaces_the_file_whole(tmp_path):
    path = str(tmp_path / "students.json")
    write_whole(path, "old")
    write_whole(path, "new")
    assert open(path).read() == "new"
    assert os.listdir(tmp_path) == ["students.json"]


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    path = str(tmp_path / "teacher.pt")
    write_whole(path, "old")
    with pytest.raises(KeyboardInterrupt):
        with replacing(path) as temporary:
            with open(temporary, "w") as f:
                f.write("half of the new")
            raise KeyboardInterrupt  # a cut in the middle of the write
    assert open(path).read() == "old"
    assert os.listdir(tmp_path) == ["teacher.pt"]
