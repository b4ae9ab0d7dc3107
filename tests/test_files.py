"""The one atomic writer every nablafx file goes through."""

import pytest
import soundfile as sf
import numpy as np

from nablafx.files import replaced_atomically, write_text_atomically


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "model.nam"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with replaced_atomically(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("the check failed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.nam"]


@pytest.mark.parametrize("durable", [False, True])
def test_a_whole_write_replaces_the_target(tmp_path, durable):
    target = tmp_path / "deep" / "results.json"
    with replaced_atomically(target, durable=durable) as temporary:
        assert temporary.parent == target.parent and temporary != target
        temporary.write_text("{}")
        assert not target.exists()  # nothing under the final name until the block ends
    assert target.read_text() == "{}"
    assert [p.name for p in target.parent.iterdir()] == ["results.json"]


def test_the_temporary_keeps_the_extension_writers_pick_the_format_from(tmp_path):
    target = tmp_path / "out.flac"
    with replaced_atomically(target) as temporary:
        assert temporary.suffix == ".flac"
        sf.write(temporary, np.zeros(480, dtype=np.float32), 48_000)  # format from the name
    assert sf.info(str(target)).format == "FLAC"


def test_text(tmp_path):
    write_text_atomically(tmp_path / "a.yaml", "k: é\n")
    assert (tmp_path / "a.yaml").read_text(encoding="utf-8") == "k: é\n"
