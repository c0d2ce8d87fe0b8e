"""One line for every failure: exception groups unwrapped, known causes given a remedy."""

from __future__ import annotations

import errno

from torrentfs.cli.errors import describe, root_cause
from torrentfs.cli.output import CliError


def test_emfile_inside_nested_groups_names_the_remedy():
    e = BaseExceptionGroup("outer", [ExceptionGroup("inner", [
        OSError(errno.EMFILE, "Too many open files")])])
    text = describe(e)
    assert text.startswith("too many open files")
    assert "ulimit -n" in text and "--max-open-files" in text
    assert "sub-exception" not in text and "\n" not in text


def test_user_error_wins_over_a_cancellation():
    e = ExceptionGroup("x", [KeyError("k"), CliError("cache folder /x: Permission denied")])
    assert describe(e) == "cache folder /x: Permission denied"
    assert isinstance(root_cause(e), CliError)


def test_known_causes():
    assert "--cache-size" in describe(OSError(errno.ENOSPC, "No space left", "/c/data/f"))
    assert "/c/data/f" in describe(OSError(errno.ENOSPC, "No space left", "/c/data/f"))
    assert "--port" in describe(OSError(errno.EADDRINUSE, "Address in use"))
    assert "--cache-dir" in describe(OSError(errno.EACCES, "Permission denied", "/c"))


def test_plain_error_is_one_line():
    assert describe(ValueError("a\nb")) == "a b"
    assert describe(ValueError()) == "ValueError"
