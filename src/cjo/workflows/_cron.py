"""Five-field cron, for campaigns' schedules: pure, so the campaign workflow replays alike."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

_CRON_NAMES = {
    3: {m: i + 1 for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())},
    4: {d: i for i, d in enumerate("SUN MON TUE WED THU FRI SAT".split())},
}
_CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_CRON_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def _cron_field(text: str, index: int) -> set[int]:
    low, high = _CRON_RANGES[index]
    names = _CRON_NAMES.get(index, {})
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if base == "*":
            start, stop = low, high
        else:
            first, _, last = base.partition("-")
            start = _cron_number(first, names)
            if last:
                stop = _cron_number(last, names)
            else:
                stop = high if step_text else start
        values.update(range(start, stop + 1, step))
    if index == 4 and 7 in values:  # Sunday is 0 or 7
        values.add(0)
    return values


def _cron_number(text: str, names: dict[str, int]) -> int:
    # The DSL validated the expression already; names and digits are all that remain.
    return int(text) if text.isdigit() else names[text.upper()]


def next_cron_fire(expression: str, zone: ZoneInfo, after: datetime) -> datetime:
    """The first moment after `after` that five-field cron `expression` names, in `zone`."""
    fields = _CRON_MACROS.get(expression.strip(), expression).split()
    minutes, hours, days, months, weekdays = (_cron_field(f, i) for i, f in enumerate(fields))
    any_day, any_weekday = fields[2] == "*", fields[4] == "*"
    local = after.astimezone(zone)
    for offset in range(0, 366 * 5):
        day = local.date() + timedelta(days=offset)
        if day.month not in months:
            continue
        weekday = (day.weekday() + 1) % 7  # cron counts from Sunday = 0
        by_month, by_week = day.day in days, weekday in weekdays
        # Cron's rule: when both day fields are restricted, either one may match.
        if any_day and any_weekday:
            matches = True
        elif any_day:
            matches = by_week
        elif any_weekday:
            matches = by_month
        else:
            matches = by_month or by_week
        if not matches:
            continue
        for hour in sorted(hours):
            for minute in sorted(minutes):
                candidate = datetime.combine(day, time(hour, minute), tzinfo=zone)
                if candidate > local:
                    return candidate
    raise ValueError(f"cron '{expression}' never fires")
