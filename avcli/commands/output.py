"""Printing machine-readable results: one JSON object per line on stdout."""

from __future__ import annotations

import json
import sys


def emit(record: dict) -> None:
    sys.stdout.write(json.dumps(record, default=str) + "\n")
    sys.stdout.flush()
