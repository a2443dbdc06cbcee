"""Measurement scripts: each prints the figures the README cites, with the command that reproduces them."""

from __future__ import annotations

import sys
from collections.abc import Callable

from model.errors import ExpressionDetectorError


def run_script(main: Callable[[], int]) -> int:
    """``main()``'s exit status; a missing model, data folder or clip is one sentence on stderr and status 2."""
    try:
        return main()
    except ExpressionDetectorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
