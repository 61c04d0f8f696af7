"""Cron expressions as aiocron 2 runs them, checked before the service starts.

aiocron 2 hands an expression to cronsim, so cronsim is the judge: `validate_cron` accepts exactly what
cronsim parses, translates the `@hourly` family (which cronsim lacks) to the five-field form cron(8)
gives it, and explains a refusal by field name and position. A six-field expression has its seconds
field FIRST (cronsim's order, not croniter's last). What looks like croniter's seconds-last order
('*' seconds with a '*/N' weekday) is refused with the corrected expression although cronsim would
run it, because it would fire every second.
"""

from __future__ import annotations

from datetime import UTC, datetime

from cronsim import CronSim, CronSimError

__all__ = ["CRON_NICKNAMES", "validate_cron"]

# cronsim (aiocron 2's parser) has no "@" nicknames; the usual ones are translated (cron(8)'s meaning)
CRON_NICKNAMES: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_CRON_FIELDS_5 = ("minute", "hour", "day of month", "month", "weekday")
_CRON_FIELDS_6 = ("seconds", *_CRON_FIELDS_5)
# cronsim's "Bad <field>" names -> our field names
_CRONSIM_FIELD = {
    "second": "seconds",
    "minute": "minute",
    "hour": "hour",
    "day-of-month": "day of month",
    "month": "month",
    "day-of-week": "weekday",
}


def validate_cron(spec: str) -> str:
    """Return the expression aiocron will run for `spec`, else raise ValueError with the reason.

    Five fields are `minute hour day month weekday`. Six fields put **seconds first** (aiocron 2 hands
    the expression to cronsim, which reads `seconds minute hour day month weekday`). The `@hourly` family
    is translated to its five-field form; `@reboot` has no schedule and is refused (pull_at_startup does
    that job).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("empty")
    nick = spec.strip().lower()
    if nick.startswith("@"):
        if nick in CRON_NICKNAMES:
            return CRON_NICKNAMES[nick]
        if nick == "@reboot":
            raise ValueError("'@reboot' is not a schedule; pull_at_startup (default true) pulls at start-up")
        raise ValueError(f"unknown nickname {spec.strip()!r}; known: {', '.join(CRON_NICKNAMES)}")
    fields = spec.split()
    if len(fields) not in (5, 6):
        raise ValueError(f"has {len(fields)} fields")
    names = _CRON_FIELDS_6 if len(fields) == 6 else _CRON_FIELDS_5
    try:
        CronSim(spec, datetime.now(UTC))
    except (CronSimError, ValueError, KeyError, IndexError) as exc:
        reason = str(exc) or type(exc).__name__
        bad = reason.removeprefix("Bad ").strip().lower()
        if bad in _CRONSIM_FIELD and _CRONSIM_FIELD[bad] in names:
            name = _CRONSIM_FIELD[bad]
            pos = names.index(name)
            reason = f"field {pos + 1} ({name}) {fields[pos]!r} is out of range or malformed"
            if len(fields) == 6 and name == "weekday":  # perhaps meant as seconds (croniter's order)
                reason += _SECONDS_FIRST
                if _seconds_last(fields):
                    reason += f", did you mean '{' '.join([fields[5], *fields[:5]])}'?"
        raise ValueError(reason) from None
    if len(fields) == 6 and fields[0] == "*" and fields[5].startswith("*/"):
        # valid, but "every second on some weekdays": the seconds-last mistake (croniter's order)
        raise ValueError(
            f"field 6 (weekday) {fields[5]!r} with field 1 (seconds) '*' runs every second on some weekdays"
            + f"{_SECONDS_FIRST}, did you mean '{' '.join([fields[5], *fields[:5]])}'?"
        )
    return spec


_SECONDS_FIRST = (
    "; in a 6-field expression the seconds field comes FIRST ('seconds minute hour day month weekday')"
)


def _seconds_last(fields: list[str]) -> bool:
    """True if `fields` parse once the last field is moved to the front (seconds written last)."""
    try:
        CronSim(" ".join([fields[5], *fields[:5]]), datetime.now(UTC))
    except (CronSimError, ValueError, KeyError, IndexError):
        return False
    return True
