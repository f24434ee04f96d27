"""``_atomic.replace_with``: the one rename-over writer of the report's page, a
checkpoint and the command line's output files."""

from __future__ import annotations

import numpy as np
import pytest

from pyro_genmodels._atomic import replace_with


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path):
    target = tmp_path / "page.html"
    target.write_text("old", encoding="utf-8")

    def half_then_fail(tmp):
        tmp.write_text("half of the new", encoding="utf-8")
        raise KeyboardInterrupt

    for tmp in (None, tmp_path / ".page.html.tmp"):
        with pytest.raises(KeyboardInterrupt):
            replace_with(target, half_then_fail, tmp=tmp)
        assert target.read_text(encoding="utf-8") == "old"
        assert [p.name for p in tmp_path.iterdir()] == ["page.html"]
    assert replace_with(target, lambda t: t.write_text("new", encoding="utf-8")) == target
    assert target.read_text(encoding="utf-8") == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["page.html"]


def test_the_default_temporary_name_ends_as_the_target_does(tmp_path):
    """numpy.save appends .npy to a name without it: the rename would then miss."""
    target = tmp_path / "draws.npy"
    replace_with(target, lambda t: np.save(t, np.arange(3)))
    assert np.load(target).tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["draws.npy"]
