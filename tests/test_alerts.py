"""Which alerts a month so far has earned, from literal daily figures."""

from __future__ import annotations

import datetime as dt
import tomllib

import pandas as pd

from reporter.alerts import AlertSettings, month_to_date
from reporter.periods import parse_period

NOVEMBER = parse_period("2026-11", today=dt.date(2026, 12, 1))
DEFAULT = AlertSettings(thresholds=[50, 80, 100], forecast=True, spike_factor=3.0)


def _tidy(daily: dict[dt.date, float]) -> pd.DataFrame:
    """Each day's credits split 3:1 between two tools and two users."""
    rows = []
    for day, credits in daily.items():
        rows.append((pd.Timestamp(day), "Image", "ann@company.com", 3, credits * 0.75))
        rows.append((pd.Timestamp(day), "Video", "bob@company.com", 1, credits * 0.25))
    return pd.DataFrame(rows, columns=["date", "tool", "user", "uses", "credits"])


def _days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


# October at 100 a day; November at 100 a day but 400 on the 12th. Budget 3,000:
# through the 12th 1,500 (50%), the 21st 2,400 (80%), the 27th 3,000 (100%).
SERIES = dict.fromkeys(_days(dt.date(2026, 10, 1), dt.date(2026, 10, 31)), 100.0) | {
    d: (400.0 if d.day == 12 else 100.0) for d in _days(NOVEMBER.start, NOVEMBER.end)
}


def _keys(through: dt.date, series: dict[dt.date, float] = SERIES) -> list[str]:
    upto = {d: c for d, c in series.items() if d <= through}
    return [a.key for a in month_to_date(_tidy(upto), NOVEMBER, through, 3000.0, DEFAULT).alerts]


def test_each_alert_first_holds_on_its_day() -> None:
    assert _keys(dt.date(2026, 11, 11)) == []  # 1,100 used; forecast exactly 3,000: not above
    assert _keys(dt.date(2026, 11, 12)) == [
        "alert:threshold:50",
        "alert:forecast",
        "alert:spike:2026-11-12",
    ]
    assert _keys(dt.date(2026, 11, 20)) == _keys(dt.date(2026, 11, 12))
    assert "alert:threshold:80" not in _keys(dt.date(2026, 11, 20))
    assert "alert:threshold:80" in _keys(dt.date(2026, 11, 21))
    assert "alert:threshold:100" not in _keys(dt.date(2026, 11, 26))
    day_27 = _keys(dt.date(2026, 11, 27))
    assert "alert:threshold:100" in day_27
    assert "alert:forecast" not in day_27  # over already: the threshold says so, not a forecast


def test_the_figures_an_alert_carries() -> None:
    through = dt.date(2026, 11, 12)
    upto = {d: c for d, c in SERIES.items() if d <= through}
    month = month_to_date(_tidy(upto), NOVEMBER, through, 3000.0, DEFAULT)
    assert month.used == 1500.0
    assert month.forecast == 1500.0 / 12 * 30  # 3,750: the PDF's run-rate forecast
    assert month.crossing == dt.date(2026, 11, 24)  # 125 a day reaches 3,000 on day 24
    spike = month.alerts[-1]
    assert (spike.day, spike.day_credits, spike.typical) == (through, 400.0, 100.0)
    assert [(t.name, t.credits) for t in spike.tools] == [("Image", 300.0), ("Video", 100.0)]
    assert [u.name for u in spike.users] == ["ann@company.com", "bob@company.com"]
    assert month.cumulative["credits"].tolist()[-1] == 1500.0
    assert len(month.cumulative) == 12


def test_settings_turn_alerts_off_and_no_budget_means_no_budget_alerts() -> None:
    through = dt.date(2026, 11, 27)
    tidy = _tidy({d: c for d, c in SERIES.items() if d <= through})
    off = AlertSettings(thresholds=[], forecast=False, spike_factor=0)
    assert month_to_date(tidy, NOVEMBER, through, 3000.0, off).alerts == []
    no_budget = month_to_date(tidy, NOVEMBER, through, None, DEFAULT)
    assert [a.key for a in no_budget.alerts] == ["alert:spike:2026-11-12"]
    assert no_budget.forecast is None


def test_a_day_with_too_little_history_raises_no_spike() -> None:
    # Usage starts on Nov 1: the 12th has 11 days of history and a median of 0 before it.
    fresh = {d: c for d, c in SERIES.items() if d >= NOVEMBER.start}
    assert "alert:spike:2026-11-12" not in _keys(dt.date(2026, 11, 30), fresh)
    # With the history, a factor of 5 is not reached by 4x a typical day.
    tidy = _tidy({d: c for d, c in SERIES.items() if d <= dt.date(2026, 11, 12)})
    strict = AlertSettings(thresholds=[], forecast=False, spike_factor=5.0)
    assert month_to_date(tidy, NOVEMBER, dt.date(2026, 11, 12), None, strict).alerts == []


def test_a_budget_already_passed_names_the_day_it_was_passed() -> None:
    through = dt.date(2026, 11, 30)  # 3,300 used: the run rate would say the 28th
    upto = {d: c for d, c in SERIES.items() if d <= through}
    month = month_to_date(_tidy(upto), NOVEMBER, through, 3000.0, DEFAULT)
    assert month.used >= 3000.0
    running = 0.0
    for day in sorted(d for d in upto if d >= NOVEMBER.start):
        running += upto[day]
        if running >= 3000.0:
            break
    assert month.crossing == day  # the day the cumulative credits first reached it


def test_a_run_rate_far_below_the_budget_crosses_no_day() -> None:
    through = dt.date(2026, 11, 1)
    month = month_to_date(_tidy({through: 1.0}), NOVEMBER, through, 1e12, DEFAULT)
    assert month.crossing is None
    assert month.alerts == []


def test_alert_settings_fall_back_from_report_to_defaults_to_built_in() -> None:
    from reporter.config import parse_config

    owner = '["a@company.com"]'
    config = parse_config(
        tomllib.loads(
            '[email]\nfrom = "r@company.com"\n[defaults]\nalert_thresholds = [90]\n'
            f'spike_factor = 2.5\n[[reports]]\nname = "plain"\nowners = {owner}\n'
            f'budget_credits = 10\n[[reports]]\nname = "own"\nowners = {owner}\n'
            "budget_credits = 10\nalert_thresholds = []\nforecast_alert = false\n"
            f'spike_factor = 0\n[[reports]]\nname = "nobudget"\nowners = {owner}\n'
        ),
        source="test",
    )
    plain, own, no_budget = config.reports
    assert config.thresholds_for(plain) == [90]
    assert config.forecast_alert_for(plain) is True
    assert config.spike_factor_for(plain) == 2.5
    assert config.thresholds_for(own) == []
    assert config.forecast_alert_for(own) is False
    assert config.spike_factor_for(own) == 0
    assert config.thresholds_for(no_budget) == []  # nothing to take a share of
    assert config.forecast_alert_for(no_budget) is False
    assert config.correction_threshold_for(no_budget) == 0.5
