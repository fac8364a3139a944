"""What the rosbag2 readers return, and the damage entries they share.

``RawMessages`` (messages by topic plus the damage found) is the result of both the MCAP walker
(``robot_rl.data.bag_reader``) and the sqlite3 reader (``robot_rl.data.bag_db3``); the helpers here turn log times
into ``Damage`` time ranges the same way for both, so a lost stretch reads alike whatever the bag's format.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from robot_rl.data.checks import Damage

_NS = 1_000_000_000


@dataclass
class RawMessages:
    """Messages of a bag by topic: ``topic -> (msgtype, [(log_time_ns, cdr bytes)])`` plus the damage found."""

    topics: dict[str, tuple[str, list[tuple[int, bytes]]]] = field(default_factory=dict)
    damage: list[Damage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _damage(byte_range: tuple[int, int], lo_ns: int | None, hi_ns: int | None, what: str, lost: str,
            **kw) -> Damage:
    """A Damage whose time range is given as log times [ns] (either end may be unknown)."""
    tr = _t(lo_ns, hi_ns)
    exact = None if tr is None else (lo_ns if lo_ns is not None else hi_ns, hi_ns if hi_ns is not None else lo_ns)
    return Damage(byte_range, tr, what, lost, time_range_ns=exact, **kw)


def _t(lo_ns, hi_ns) -> tuple[float, float] | None:
    if lo_ns is None and hi_ns is None:
        return None
    lo = lo_ns if lo_ns is not None else hi_ns
    hi = hi_ns if hi_ns is not None else lo_ns
    return (lo / _NS, hi / _NS)


def _lost_text(counts: dict[int, int], channels: dict) -> str:
    parts = [f"{c} message(s) on {channels.get(cid, (f'channel {cid}',))[0]}" for cid, c in sorted(counts.items())]
    return ", ".join(parts)

