"""Damage-tolerant reading of rosbag2 files: raw (CDR) messages by topic, and the damage found.

MCAP: the default MCAP reader skips CRCs and returns nothing from a file cut mid-way. ``walk_mcap`` reads the file
record by record with the MCAP framing (opcode u8, length u64, body), verifies each chunk's CRC-32 when one is
stored, checks the framing of every record inside, and keeps every intact chunk. Damage becomes a ``Damage`` entry
(byte range, time range from the chunk header, lost messages per topic from the chunk's message index). sqlite3
bags are read with the standard library. ``robot_rl.data.bags`` turns the messages into episodes.
"""

from __future__ import annotations

import struct
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from robot_rl.data.checks import Damage

MAGIC = b"\x89MCAP0\r\n"
_KNOWN_OPS = set(range(0x01, 0x11))
_NS = 1_000_000_000


@dataclass
class RawMessages:
    """Messages of a bag by topic: ``topic -> (msgtype, [(log_time_ns, cdr bytes)])`` plus the damage found."""

    topics: dict[str, tuple[str, list[tuple[int, bytes]]]] = field(default_factory=dict)
    damage: list[Damage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class _Framing(Exception):
    pass


def _take(buf: memoryview, pos: int, n: int) -> tuple[memoryview, int]:
    if pos + n > len(buf):
        raise _Framing(f"record ends {pos + n - len(buf)} bytes past its container")
    return buf[pos:pos + n], pos + n


def _str(buf: memoryview, pos: int) -> tuple[str, int]:
    (n,), pos = struct.unpack("<I", _take(buf, pos, 4)[0]), pos + 4
    raw, pos = _take(buf, pos, n)
    return bytes(raw).decode("utf-8"), pos


def _parse_records(buf: memoryview, schemas: dict, channels: dict, msgs: list) -> None:
    """Schema / Channel / Message records of a byte range (a chunk's records or the file's top level)."""
    pos = 0
    while pos < len(buf):
        head, pos = _take(buf, pos, 9)
        op, n = head[0], struct.unpack("<Q", head[1:9])[0]
        if op not in _KNOWN_OPS:
            raise _Framing(f"unknown record opcode 0x{op:02x}")
        body, pos = _take(buf, pos, n)
        if op == 0x03:
            (sid,) = struct.unpack("<H", body[:2])
            name, p = _str(body, 2)
            schemas[sid] = name
        elif op == 0x04:
            cid, sid = struct.unpack("<HH", _take(body, 0, 4)[0])
            topic, p = _str(body, 4)
            channels[cid] = (topic, sid)
        elif op == 0x05:
            if n < 22:
                raise _Framing(f"message record of {n} bytes, shorter than its 22-byte header")
            cid, _seq, log_time = struct.unpack("<HIQ", body[:14])
            msgs.append((cid, log_time, bytes(body[22:])))


def _decompress(data: bytes, compression: str, size: int) -> bytes:
    if compression == "":
        return data
    if compression == "zstd":
        try:
            from compression import zstd  # Python >= 3.14
        except ImportError:
            from backports import zstd
        return zstd.decompress(data)
    raise _Framing(f"unsupported chunk compression {compression!r}")


def _chunk(buf: memoryview) -> tuple[int, int, bytes]:
    """(start_ns, end_ns, uncompressed records) of a chunk body; _Framing when damaged."""
    t0, t1, usize, crc = struct.unpack("<QQQI", _take(buf, 0, 28)[0])
    comp, p = _str(buf, 28)
    (clen,), p = struct.unpack("<Q", _take(buf, p, 8)[0]), p + 8
    data, p = _take(buf, p, clen)
    try:
        raw = _decompress(bytes(data), comp, usize)
    except Exception as exc:  # zstd raises its own error types
        raise _Framing(f"chunk does not decompress ({exc})") from None
    if len(raw) != usize:
        raise _Framing(f"chunk holds {len(raw)} bytes, header says {usize}")
    if crc and zlib.crc32(raw) != crc:
        raise _Framing("chunk CRC-32 mismatch")
    if t0 > t1:
        raise _Framing(f"chunk start time {t0} after end time {t1}")
    return t0, t1, raw


def walk_mcap(path: str | Path) -> RawMessages:
    """Read every intact chunk of an MCAP file; report damaged and missing byte ranges (never raises on damage)."""
    path = Path(path)
    data = path.read_bytes()
    buf = memoryview(data)
    size = len(data)
    out = RawMessages()
    schemas: dict[int, str] = {}
    channels: dict[int, tuple[str, int]] = {}
    msgs: list[tuple[int, int, bytes]] = []
    if bytes(buf[:8]) != MAGIC:
        out.damage.append(Damage((0, min(8, size)), None, "missing MCAP magic", "nothing (reading on)"))
    pos = 8
    closed = False  # a data-end or footer record seen: the writer closed the file
    last_good_ns: int | None = None
    pending: Damage | None = None  # a damaged chunk waiting for its message index (lost message counts)
    lost_counts: dict[int, int] = defaultdict(int)

    def finish_pending():
        nonlocal pending
        if pending is not None:
            pending.lost = _lost_text(lost_counts, channels) or pending.lost
            out.damage.append(pending)
            pending = None
            lost_counts.clear()

    def resync(start: int) -> int:
        """Next offset >= start where an intact chunk (or the data-end record) begins, else the file size."""
        q = start
        while True:
            q = data.find(b"\x06", q)
            if q < 0 or q + 9 > size:
                return size
            (n,) = struct.unpack("<Q", buf[q + 1:q + 9])
            if q + 9 + n <= size:
                try:
                    t0, t1, raw = _chunk(buf[q + 9:q + 9 + n])
                    _parse_records(memoryview(raw), {}, {}, [])
                    return q
                except (_Framing, struct.error, UnicodeDecodeError):
                    pass
            q += 1

    while pos < size:
        if pos + 9 > size:
            finish_pending()
            out.damage.append(Damage((pos, size), _t(last_good_ns, None), "file ends inside a record header",
                                     "the rest of the recording (file truncated)"))
            break
        op, n = buf[pos], struct.unpack("<Q", buf[pos + 1:pos + 9])[0]
        end = pos + 9 + n
        nxt = resync(pos + 1) if op not in _KNOWN_OPS or end > size else size
        if nxt < size:  # bad opcode or a length past the end, yet intact chunks follow: framing damage, not a cut
            finish_pending()
            out.damage.append(Damage((pos, nxt), _t(last_good_ns, _chunk_start_ns(buf, nxt)),
                                     f"invalid record framing (opcode 0x{op:02x}, length {n})",
                                     f"every message in bytes [{pos}, {nxt})"))
            pos = nxt
            continue
        if op not in _KNOWN_OPS:
            out.damage.append(Damage((pos, size), _t(last_good_ns, None), f"invalid record framing (opcode "
                                     f"0x{op:02x}) and no intact chunk after it", "the rest of the recording"))
            break
        if end > size:
            finish_pending()
            t_hi = None
            if op == 0x06 and pos + 9 + 16 <= size:
                t_hi = struct.unpack("<QQ", buf[pos + 9:pos + 25])[1]
            out.damage.append(Damage((pos, size), _t(last_good_ns, t_hi),
                                     f"record 0x{op:02x} of {n} bytes cut off at the end of the file ({size} B)",
                                     "the messages of the cut chunk and everything after it (file truncated)"))
            break
        body = buf[pos + 9:end]
        if op == 0x06:
            finish_pending()
            try:
                t0, t1, raw = _chunk(body)
                _parse_records(memoryview(raw), schemas, channels, msgs)
                last_good_ns = t1
            except (_Framing, struct.error, UnicodeDecodeError) as exc:
                hdr = struct.unpack("<QQ", body[:16]) if n >= 16 else None
                tr = (hdr[0], hdr[1]) if hdr and hdr[0] <= hdr[1] else (last_good_ns, None)
                pending = Damage((pos, end), _t(*tr), f"damaged chunk: {exc}", "the chunk's messages")
                # A damaged length field would put the next record in the wrong place: check before trusting it.
                if end + 9 <= size and buf[end] not in _KNOWN_OPS:
                    finish_pending()
                    nxt = resync(pos + 1)
                    out.damage[-1].byte_range = (pos, max(nxt, end))
                    pos = nxt
                    continue
        elif op == 0x07 and pending is not None:
            cid, = struct.unpack("<H", body[:2])
            (blen,) = struct.unpack("<I", body[2:6])
            lost_counts[cid] += blen // 16
        elif op in (0x03, 0x04):
            try:
                _parse_records(buf[pos:end], schemas, channels, msgs)
            except (_Framing, struct.error, UnicodeDecodeError) as exc:
                out.damage.append(Damage((pos, end), None, f"damaged schema/channel record: {exc}", "a channel"))
        elif op == 0x0F:
            finish_pending()
            closed = True
        elif op == 0x02:  # footer: only the closing magic follows
            closed = True
            if bytes(buf[end:end + 8]) != MAGIC:
                out.notes.append(f"no closing MCAP magic after the footer at byte {pos}")
            pos = size
            break
        pos = end
    finish_pending()
    if not closed and not any(d.byte_range[1] == size for d in out.damage):
        out.damage.append(Damage((size, size), _t(last_good_ns, None), "no data-end or footer record: the writer "
                                 "did not close the file (killed?)", "the messages of the writer's open chunk "
                                 "(not written before it stopped)"))
    for d in out.damage:
        d.file = str(path)
    for cid, t_ns, payload in msgs:
        if cid not in channels:
            out.notes.append(f"message on unknown channel {cid} at t={t_ns / _NS:.6f} s dropped")
            continue
        topic, sid = channels[cid]
        entry = out.topics.setdefault(topic, (schemas.get(sid, ""), []))
        entry[1].append((t_ns, payload))
    return out


def _chunk_start_ns(buf: memoryview, pos: int) -> int | None:
    return struct.unpack("<Q", buf[pos + 9:pos + 17])[0] if pos + 17 <= len(buf) and buf[pos] == 0x06 else None


def _t(lo_ns, hi_ns) -> tuple[float, float] | None:
    if lo_ns is None and hi_ns is None:
        return None
    lo = lo_ns if lo_ns is not None else hi_ns
    hi = hi_ns if hi_ns is not None else lo_ns
    return (lo / _NS, hi / _NS)


def _lost_text(counts: dict[int, int], channels: dict) -> str:
    parts = [f"{c} message(s) on {channels.get(cid, (f'channel {cid}',))[0]}" for cid, c in sorted(counts.items())]
    return ", ".join(parts)


def read_bag(path: str | Path) -> RawMessages:
    """Raw messages of a rosbag2 directory (MCAP or sqlite3) or a bare ``.mcap`` file, with damage found."""
    path = Path(path)
    if path.is_file() and path.suffix == ".mcap":
        return walk_mcap(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no bag at {path}")
    mcaps = sorted(path.glob("*.mcap"))
    if mcaps:
        merged = RawMessages()
        for f in mcaps:
            part = walk_mcap(f)
            for topic, (mt, items) in part.topics.items():
                merged.topics.setdefault(topic, (mt, []))[1].extend(items)
            merged.damage += part.damage
            merged.notes += part.notes
        return merged
    return _read_sqlite(path)


def _read_sqlite(path: Path) -> RawMessages:
    import sqlite3

    out = RawMessages()
    for db in sorted(path.glob("*.db3")):
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            topics = {tid: (name, mt) for tid, name, mt in con.execute("SELECT id, name, type FROM topics")}
            for tid, ts, payload in con.execute("SELECT topic_id, timestamp, data FROM messages ORDER BY timestamp"):
                name, mt = topics[tid]
                out.topics.setdefault(name, (mt, []))[1].append((int(ts), bytes(payload)))
            con.close()
        except sqlite3.DatabaseError as exc:
            size = db.stat().st_size
            kept = sum(len(v[1]) for v in out.topics.values())
            out.damage.append(Damage((0, size), None, f"sqlite3 error ({exc})",
                                     f"messages after the first {kept} read", file=str(db)))
    if not out.topics and not out.damage:
        raise FileNotFoundError(f"{path} holds neither .mcap nor .db3 files")
    return out
