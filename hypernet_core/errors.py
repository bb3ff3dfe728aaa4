"""Errors that tell the user which dataset, which field, and how to fix it."""

from __future__ import annotations


class FleetError(ValueError):
    """Bad input for one dataset of the fleet.

    The message always names the dataset and the field, and says what to do about it, because the
    person reading it usually owns one of fifty datasets and needs to know whether it is theirs.
    """

    def __init__(self, dataset: str, field: str, problem: str, fix: str):
        self.dataset, self.field, self.problem, self.fix = dataset, field, problem, fix
        super().__init__(f"dataset {dataset!r}, field {field!r}: {problem}. Fix: {fix}")
