"""Where a test that shows something (a browser page) leaves the function that saves its screenshot.

conftest.py calls it right after the test body and adds the path to the test's report (printed
with a failure). The key lives here, not in conftest.py, because pytest imports conftest.py
under another module name than `tests.conftest`, which would make two different keys.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

SCREENSHOT = pytest.StashKey[Callable[[], Path]]()
