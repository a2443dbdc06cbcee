"""Argument types for the command lines: a bad number is refused by argparse with a usage line, not a traceback."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0.0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0.0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def float_between(low: float, high: float):
    """An argument type for a number from ``low`` to ``high``, both included (inf and nan are refused too)."""
    def parse(text: str) -> float:
        value = float(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low:g} to {high:g}, not {text}")
        return value
    return parse


def fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {text}")
    return value


def name_and_weight(text: str) -> tuple[str, float]:
    """``NAME=W`` with W more than 0, e.g. ``rafdb=2``."""
    name, sep, number = text.partition("=")
    try:
        weight = float(number)
    except ValueError:
        weight = None
    if not sep or not name or weight is None:
        raise argparse.ArgumentTypeError(f"must be NAME=WEIGHT (e.g. rafdb=2), not {text}")
    return name, positive_float(number)
