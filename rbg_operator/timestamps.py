"""Timestamps as the API server writes them: RFC 3339 in UTC, with a `Z`."""

from __future__ import annotations

import datetime


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def stamp(moment: datetime.datetime) -> str:
    """A metav1.Time: whole seconds."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_stamp(moment: datetime.datetime) -> str:
    """A metav1.MicroTime (a Lease's times): microseconds."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now() -> str:
    return stamp(utc_now())


def parse_or_none(value: str | None) -> datetime.datetime | None:
    return parse(value) if value else None


def parse(value: str) -> datetime.datetime:
    """Either stamp above (or any RFC 3339 time with an offset), as an aware datetime."""
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
