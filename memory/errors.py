"""Errors raised by the memory manager."""

from __future__ import annotations


class BudgetError(ValueError):
    """A policy cannot fit the byte budget (raised at creation), or a cache without eviction ran out of it."""


class UnknownPolicyError(KeyError):
    """A policy name (or a policy override) that does not exist; the message lists what does."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])
