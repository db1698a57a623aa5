"""Splitting the reports between N runners so that each report lands on exactly one.

A report's shard comes from a hash of its name, not its position in the
config: adding or removing one report moves no other report to another
shard, so another shard's delivery ledger stays the one that knows it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from reporter.errors import UsageError

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Shard:
    index: int  # 1-based, as people and GitHub matrices count
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, name: str) -> bool:
        digest = hashlib.sha256(name.encode()).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index - 1

    def select(self, items: Iterable[T], name: Callable[[T], str]) -> list[T]:
        return [item for item in items if self.holds(name(item))]


def parse_shard(text: str) -> Shard:
    match = _SHARD.match(text)
    if not match:
        raise UsageError(
            f"--shard {text!r} is not I/N", hint="e.g. --shard 2/4 runs the second of four shares"
        )
    index, count = int(match[1]), int(match[2])
    if count < 1 or not 1 <= index <= count:
        raise UsageError(
            f"--shard {text}: I must be between 1 and N",
            hint=f"with N={count}, use 1/{count} to {count}/{count}" if count >= 1 else None,
        )
    return Shard(index, count)
