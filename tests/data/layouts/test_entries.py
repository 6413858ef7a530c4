"""List-file entries: each image once, and inside the data root."""
from __future__ import annotations

import pytest

from tta_bench.data.layouts.entries import check_entries
from tta_bench.errors import DataError


def test_entries_relative_to_the_root_and_listed_once_pass():
    check_entries(["a/1.jpg", "a/2.jpg", "b/1.jpg"], ["line 1", "line 2", "line 3"], "list.txt")


@pytest.mark.parametrize("path", ["../../etc/x.jpg", "a/../../x.jpg", "/data/x.jpg", "C:\\x.jpg", "a\\..\\..\\x.jpg"])
def test_paths_leaving_the_root_are_refused(path):
    with pytest.raises(DataError, match=r"list.txt: line 2 is .* outside the data root"):
        check_entries(["a/1.jpg", path], ["line 1", "line 2"], "list.txt")


def test_the_first_duplicate_is_named_with_both_places():
    with pytest.raises(DataError, match=r"list.txt: 'a/1.jpg' is listed twice \(line 1 and line 3\)"):
        check_entries(["a/1.jpg", "b/1.jpg", "a/1.jpg", "b/1.jpg"], ["line 1", "line 2", "line 3", "line 4"],
                      "list.txt")
    with pytest.raises(DataError, match="listed twice"):  # the same file spelt another way
        check_entries(["a/1.jpg", "a/./1.jpg"], ["line 1", "line 2"], "list.txt")
