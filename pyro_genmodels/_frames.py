"""Where a frame's code lives: the package's own, or its caller's. A warning names the
user's line (:func:`outside_level`), and a check of the package may prefix a message
with the context of the call that made it (``_validation.with_context``)."""

from __future__ import annotations

import os
import sys

#: the package's directory: frames under it are the library's own
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def in_package(filename: str) -> bool:
    """Whether ``filename`` is one of the package's files."""
    return os.path.abspath(filename).startswith(PACKAGE_DIR + os.sep)


def outside_level() -> int:
    """The ``stacklevel`` (counted from its caller) of the first frame outside the package:
    a warning there names the user's line, however deep the package's calls go (a split
    by ``validation=`` checks the rows one call deeper). The frames of torch's decorators
    (``torch.no_grad()`` on a method) are passed over as the package's own."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and (in_package(frame.f_code.co_filename)
                                        or _decorator(frame.f_code.co_filename)):
        frame, level = frame.f_back, level + 1
    return level


def _decorator(filename: str) -> bool:
    return filename.endswith(os.path.join("torch", "utils", "_contextlib.py"))
