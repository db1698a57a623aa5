"""A report's price per credit, and the day each price takes effect. Pure, and light:
the config builds it, so it imports nothing a refused config should not load."""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal


@dataclass(frozen=True, slots=True)
class Prices:
    """A report's price per credit, in ``currency``, from each start date on."""

    currency: str  # ISO 4217, checked by the config
    starts: tuple[dt.date, ...]  # ascending: the day each price takes effect
    prices: tuple[Decimal, ...]  # money per credit, one per start

    @classmethod
    def schedule(cls, currency: str, table: Mapping[dt.date, Decimal]) -> Prices:
        days = sorted(table)
        return cls(currency, tuple(days), tuple(table[day] for day in days))

    def on(self, day: dt.date) -> Decimal | None:
        """The price in force on ``day``; None before the first one starts."""
        index = bisect.bisect_right(self.starts, day)
        return self.prices[index - 1] if index else None

    def covers(self, start: dt.date) -> bool:
        """Whether every day from ``start`` on has a price."""
        return self.starts[0] <= start

    def in_force(self, start: dt.date, end: dt.date) -> list[tuple[dt.date, Decimal]]:
        """The prices that apply between ``start`` and ``end``, each with the day it applies
        from within them (the first from ``start``)."""
        first = self.on(start)
        spans = [(start, first)] if first is not None else []
        spans += [
            (day, price)
            for day, price in zip(self.starts, self.prices, strict=True)
            if start < day <= end
        ]
        return spans

    @property
    def quantum(self) -> Decimal:
        """The currency's minor unit: 0.01 for EUR, 1 for JPY."""
        from babel.numbers import get_currency_precision

        return Decimal(1).scaleb(-get_currency_precision(self.currency))

    def round(self, amount: Decimal) -> Decimal:
        return amount.quantize(self.quantum, ROUND_HALF_UP)

    def credits_for(self, amount: Decimal, first: dt.date, last: dt.date) -> float | None:
        """The credits a budget of ``amount`` buys from ``first`` to ``last``: an equal
        share of it each day, at that day's price (exactly ``amount / price`` when one
        price holds throughout). None when a day has no price."""
        days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
        share = amount / len(days)
        total = Decimal(0)
        for day in days:
            price = self.on(day)
            if price is None:
                return None
            total += share / price
        return float(total)

    def amount_for(self, credits: float, first: dt.date, last: dt.date) -> Decimal | None:
        """What ``credits`` spread evenly over ``first`` to ``last`` cost at each day's
        price: a budget in credits, in money. None when a day has no price."""
        days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
        share = Decimal(repr(round(credits, 6))) / len(days)
        total = Decimal(0)
        for day in days:
            price = self.on(day)
            if price is None:
                return None
            total += share * price
        return self.round(total)
