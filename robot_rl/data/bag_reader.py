"""Damage-tolerant reading of rosbag2 files: raw (CDR) messages by topic, and the damage found.

MCAP: the default MCAP reader skips CRCs and returns nothing from a file cut mid-way. ``walk_mcap`` reads the file
record by record with the MCAP framing (opcode u8, length u64, body), verifies each chunk's CRC-32 when one is
stored, checks the framing of every record inside, and keeps every intact chunk; in a damaged or cut uncompressed
chunk it keeps every record that still frames (``_salvage``). Damage becomes a ``Damage`` entry (exact byte range,
log-time range of the messages lost, lost messages per topic from the chunk's message index). sqlite3 bags are read
with the standard library, row by row when a page is damaged. ``robot_rl.data.bags`` turns the messages into
episodes.
"""

from __future__ import annotations

import struct
import tempfile
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
            encoding, p = _str(body, p)
            channels[cid] = (topic, sid, encoding)
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


@dataclass
class _ChunkHead:
    """A chunk record's header fields and where its (compressed) records lie in the file."""

    start_ns: int
    end_ns: int
    uncompressed_size: int
    crc: int
    compression: str
    data_offset: int
    """File offset [B] of the chunk's records."""
    data: memoryview
    """The records as stored (compressed or not); shorter than ``compressed_size`` when the file was cut."""
    compressed_size: int


def _chunk_head(body_offset: int, body: memoryview) -> _ChunkHead:
    """Header of a chunk whose body starts at ``body_offset``; ``body`` may be cut short (a truncated file)."""
    t0, t1, usize, crc = struct.unpack("<QQQI", _take(body, 0, 28)[0])
    comp, p = _str(body, 28)
    (clen,), p = struct.unpack("<Q", _take(body, p, 8)[0]), p + 8
    return _ChunkHead(t0, t1, usize, crc, comp, body_offset + p, body[p:p + clen], clen)


def _chunk(head: _ChunkHead) -> bytes:
    """Uncompressed records of a complete chunk; _Framing when damaged."""
    if len(head.data) != head.compressed_size:
        raise _Framing(f"chunk data ends {head.compressed_size - len(head.data)} bytes early")
    try:
        raw = _decompress(bytes(head.data), head.compression, head.uncompressed_size)
    except Exception as exc:  # zstd raises its own error types
        raise _Framing(f"chunk does not decompress ({exc})") from None
    if len(raw) != head.uncompressed_size:
        raise _Framing(f"chunk holds {len(raw)} bytes, header says {head.uncompressed_size}")
    if head.crc and zlib.crc32(raw) != head.crc:
        raise _Framing("chunk CRC-32 mismatch")
    if head.start_ns > head.end_ns:
        raise _Framing(f"chunk start time {head.start_ns} after end time {head.end_ns}")
    return raw


# --------------------------------------------------------------------------- salvage inside a damaged chunk

_INNER_OPS = (0x03, 0x04, 0x05)  # what a rosbag2 chunk holds: schema, channel, message records


@dataclass
class _Salvage:
    """What record-by-record parsing kept of one uncompressed chunk."""

    msgs: list[tuple[int, int, int, bytes]]
    """(offset in the chunk, channel id, log time [ns], payload) of every message record that frames."""
    bad: list[tuple[int, int]]
    """Chunk offsets [lo, hi) of bytes that do not frame (skipped up to the next record that does)."""
    kept_end: int
    """Chunk offset where the kept records end: the chunk's length, or where a cut chunk's last whole record ends."""


class _Framer:
    """Frames records inside uncompressed chunk data and checks each message record against what is known: its
    entry in the chunk's message index when there is one (exact offset, channel and log time), else a known channel
    and a log time inside the chunk's time range; a CDR payload must start with a CDR encapsulation header. A record
    is accepted only if the record after it frames too (or it ends the data), so a damaged length field that still
    lands inside the chunk, or damage that starts in a record's payload and runs into the next header, rejects the
    record it belongs to rather than a good neighbour.
    """

    def __init__(self, raw: memoryview, head: _ChunkHead, channels: dict, index: dict | None, cut: bool):
        self.raw, self.head, self.channels, self.index, self.cut = raw, head, channels, index, cut

    def frame(self, p: int) -> int | None:
        """End of a plausible record at chunk offset ``p``, else None."""
        raw = self.raw
        if p + 9 > len(raw) or raw[p] not in _INNER_OPS:
            return None
        end = p + 9 + struct.unpack_from("<Q", raw, p + 1)[0]
        if end > len(raw):
            return None
        if raw[p] == 0x05:
            if end - p < 9 + 22 + 4:  # header + CDR encapsulation
                return None
            cid, log_ns = struct.unpack_from("<H", raw, p + 9)[0], struct.unpack_from("<Q", raw, p + 15)[0]
            if self.index is not None:
                if self.index.get(p) != (cid, log_ns):
                    return None
            elif cid not in self.channels or not self.head.start_ns <= log_ns <= self.head.end_ns:
                return None
            if self.channels.get(cid, ("", 0, "cdr"))[2] == "cdr" and (raw[p + 31] != 0 or raw[p + 32] > 1):
                return None
        else:
            try:
                _parse_records(raw[p:end], {}, {}, [])
            except (_Framing, struct.error, UnicodeDecodeError):
                return None
        return end

    def is_cut_at(self, p: int) -> bool:
        """Whether the record at ``p`` is the one the end of a cut chunk runs through."""
        raw = self.raw
        if not self.cut:
            return False
        if p + 9 > len(raw):
            return p == len(raw) or raw[p] in _INNER_OPS
        return raw[p] in _INNER_OPS and p + 9 + struct.unpack_from("<Q", raw, p + 1)[0] > len(raw)

    def accept(self, p: int) -> int | None:
        """End of the record at ``p`` when it and the record after it frame, else None."""
        end = self.frame(p)
        if end is None:
            return None
        if end == len(self.raw) or self.is_cut_at(end) or self.frame(end) is not None:
            return end
        return None

    def resync(self, start: int) -> int:
        """First offset >= start where an acceptable record begins (the data's end when none)."""
        if self.index is not None:
            candidates = sorted(o for o in self.index if o >= start)
        else:
            raw = bytes(self.raw[start:])
            candidates = (start + i for i, b in enumerate(raw) if b in _INNER_OPS)
        for q in candidates:
            if self.accept(q) is not None or self.is_cut_at(q):
                return q
        return len(self.raw)


def _salvage(raw: memoryview, head: _ChunkHead, schemas: dict, channels: dict, index: dict | None,
             cut: bool) -> _Salvage:
    """Every record of a damaged or cut uncompressed chunk that frames (see ``_Framer``); never raises."""
    framer = _Framer(raw, head, channels, index, cut)
    out = _Salvage([], [], len(raw))
    p = 0
    while p < len(raw):
        end = framer.accept(p)
        if end is not None:
            if raw[p] == 0x05:
                cid, _seq, log_ns = struct.unpack_from("<HIQ", raw, p + 9)
                out.msgs.append((p, cid, log_ns, bytes(raw[p + 31:end])))
            else:
                _parse_records(raw[p:end], schemas, channels, [])
            p = end
            continue
        if framer.is_cut_at(p):
            out.kept_end = p
            break
        q = framer.resync(p + 1)
        out.bad.append((p, q))
        p = q
        if framer.is_cut_at(p) and framer.frame(p) is None:
            out.kept_end = p
            break
    if cut and out.bad and out.bad[-1][1] >= out.kept_end:  # damage that runs into the cut is part of the cut tail
        out.kept_end = out.bad.pop()[0]
    return out


def _damage_of_salvage(sv: _Salvage, head: _ChunkHead, chunk: tuple[int, int], size: int, index: dict | None,
                       channels: dict, why: str, cut: bool) -> list[Damage]:
    """Damage entries of a salvaged chunk: one per run of bytes that does not frame, one for a cut tail; the time
    range is that of the messages actually lost (the message index's log times when there is an index, else the
    kept messages on either side and the chunk's end time).
    """
    kept_at = {off for off, *_ in sv.msgs}
    times = [(off, t) for off, _c, t, _p in sv.msgs]
    out = []
    spans = list(sv.bad)
    if cut:
        spans.append((sv.kept_end, None))
    for lo, hi in spans:
        f_lo = head.data_offset + lo
        f_hi = head.data_offset + hi if hi is not None else min(chunk[1], size)
        lost = [(cid, t) for off, (cid, t) in (index or {}).items()
                if off not in kept_at and lo <= off and (hi is None or off < hi)]
        counts: dict[int, int] = defaultdict(int)
        for cid, _t_ns in lost:
            counts[cid] += 1
        if lost:
            t_lo, t_hi = min(t for _c, t in lost), max(t for _c, t in lost)
        else:
            before = [t for off, t in times if off < lo]
            after = [t for off, t in times if hi is not None and off >= hi]
            t_lo = max(before) if before else head.start_ns
            t_hi = min(after) if after else head.end_ns
        by_topic = {channels.get(cid, (f"channel {cid}",))[0]: c for cid, c in sorted(counts.items())}
        if hi is None:
            what = f"{why}: chunk cut after {lo} of its {head.uncompressed_size} bytes"
            text = (_lost_text(counts, channels) if counts else f"the messages after t={t_lo / _NS:.6f} s up to the "
                    f"chunk end t={t_hi / _NS:.6f} s") + f"; kept the {len(sv.msgs)} whole message(s) before the cut"
        else:
            what = f"{why}: records in chunk bytes [{lo}, {hi}) do not frame"
            text = (_lost_text(counts, channels) if counts else "every message between the kept ones at t="
                    f"{t_lo / _NS:.6f} s and t={t_hi / _NS:.6f} s") + f"; kept {len(sv.msgs)} message(s) of the chunk"
        out.append(Damage((f_lo, f_hi), _t(t_lo, t_hi), what, text, lost_messages=by_topic,
                          time_range_ns=(t_lo, t_hi)))
    return out


# --------------------------------------------------------------------------- the file


def _damage(byte_range: tuple[int, int], lo_ns: int | None, hi_ns: int | None, what: str, lost: str,
            **kw) -> Damage:
    """A Damage whose time range is given as log times [ns] (either end may be unknown)."""
    tr = _t(lo_ns, hi_ns)
    exact = None if tr is None else (lo_ns if lo_ns is not None else hi_ns, hi_ns if hi_ns is not None else lo_ns)
    return Damage(byte_range, tr, what, lost, time_range_ns=exact, **kw)


def _index_entries(body: memoryview, index: dict[int, tuple[int, int]]) -> None:
    """Add a message index record's ``offset -> (channel id, log time)`` entries (a damaged one adds what parses)."""
    try:
        cid, blen = struct.unpack_from("<HI", body, 0)
        for k in range(min(blen, len(body) - 6) // 16):
            log_ns, off = struct.unpack_from("<QQ", body, 6 + 16 * k)
            index[off] = (cid, log_ns)
    except struct.error:
        pass


def walk_mcap(path: str | Path) -> RawMessages:
    """Read every intact record of an MCAP file; report damaged and missing byte ranges (never raises on damage).

    Intact chunks are kept whole. In an uncompressed chunk that is damaged (CRC-32 mismatch, records that do not
    frame) or cut by the end of the file, every record that still frames is kept (``_salvage``); the damage entries
    name the bytes that do not frame and the time range of the messages lost there. A compressed chunk that is
    damaged or cut, or a damaged chunk in which every record frames (the damaged bytes lie inside a message value
    and cannot be located), is lost whole.
    """
    path = Path(path)
    data = path.read_bytes()
    buf = memoryview(data)
    size = len(data)
    out = RawMessages()
    schemas: dict[int, str] = {}
    channels: dict[int, tuple[str, int, str]] = {}
    msgs: list[tuple[int, int, bytes]] = []
    if bytes(buf[:8]) != MAGIC:
        out.damage.append(Damage((0, min(8, size)), None, "missing MCAP magic", "nothing (reading on)"))
    pos = 8
    closed = False  # a data-end or footer record seen: the writer closed the file
    last_good_ns: int | None = None
    pending: dict | None = None  # a damaged chunk waiting for its message index

    def keep(cid: int, log_ns: int, payload: bytes) -> None:
        nonlocal last_good_ns
        msgs.append((cid, log_ns, payload))
        last_good_ns = log_ns if last_good_ns is None else max(last_good_ns, log_ns)

    def finish_pending() -> None:
        nonlocal pending
        if pending is None:
            return
        head, index, byte_range, why = pending["head"], pending["index"], pending["range"], pending["why"]
        pending = None
        if head is not None and head.compression == "" and len(head.data) == head.compressed_size:
            sv = _salvage(head.data, head, schemas, channels, index or None, cut=False)
            if sv.bad:
                for _off, cid, log_ns, payload in sv.msgs:
                    keep(cid, log_ns, payload)
                out.damage.extend(_damage_of_salvage(sv, head, byte_range, size, index or None, channels, why,
                                                     cut=False))
                return
            if "CRC" in why:
                why += " although every record frames: the damaged bytes lie inside a message and cannot be located"
        counts: dict[int, int] = defaultdict(int)
        for cid, _t_ns in index.values():
            counts[cid] += 1
        if index:
            lo, hi = min(t for _c, t in index.values()), max(t for _c, t in index.values())
        elif head is not None and head.start_ns <= head.end_ns:
            lo, hi = head.start_ns, head.end_ns
        else:
            lo, hi = last_good_ns, None
        by_topic = {channels.get(cid, (f"channel {cid}",))[0]: c for cid, c in sorted(counts.items())}
        out.damage.append(_damage(byte_range, lo, hi, why,
                                  _lost_text(counts, channels) or "the chunk's messages", lost_messages=by_topic))

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
                    raw = _chunk(_chunk_head(q + 9, buf[q + 9:q + 9 + n]))
                    _parse_records(memoryview(raw), {}, {}, [])
                    return q
                except (_Framing, struct.error, UnicodeDecodeError):
                    pass
            q += 1

    while pos < size:
        if pos + 9 > size:
            finish_pending()
            out.damage.append(_damage((pos, size), last_good_ns, None, "file ends inside a record header",
                                      "the rest of the recording (file truncated)"))
            break
        op, n = buf[pos], struct.unpack("<Q", buf[pos + 1:pos + 9])[0]
        end = pos + 9 + n
        nxt = resync(pos + 1) if op not in _KNOWN_OPS or end > size else size
        if nxt < size:  # bad opcode or a length past the end, yet intact chunks follow: framing damage, not a cut
            finish_pending()
            out.damage.append(_damage((pos, nxt), last_good_ns, _chunk_start_ns(buf, nxt),
                                      f"invalid record framing (opcode 0x{op:02x}, length {n})",
                                      f"every message in bytes [{pos}, {nxt})"))
            pos = nxt
            continue
        if op not in _KNOWN_OPS:
            out.damage.append(_damage((pos, size), last_good_ns, None, f"invalid record framing (opcode "
                                      f"0x{op:02x}) and no intact chunk after it", "the rest of the recording"))
            break
        if end > size:
            finish_pending()
            _cut_record(buf, pos, op, n, schemas, channels, keep, out, last_good_ns)
            break
        body = buf[pos + 9:end]
        if op == 0x06:
            finish_pending()
            head = None
            try:
                head = _chunk_head(pos + 9, body)
                raw = _chunk(head)
                chunk_msgs: list[tuple[int, int, bytes]] = []
                _parse_records(memoryview(raw), schemas, channels, chunk_msgs)
                for cid, log_ns, payload in chunk_msgs:
                    keep(cid, log_ns, payload)
            except (_Framing, struct.error, UnicodeDecodeError) as exc:
                pending = {"head": head, "index": {}, "range": (pos, end), "why": f"damaged chunk ({exc})"}
                # A damaged length field would put the next record in the wrong place: check before trusting it.
                if end + 9 <= size and buf[end] not in _KNOWN_OPS:
                    pending["head"] = None  # the chunk's own length is wrong: nothing inside can be placed
                    finish_pending()
                    nxt = resync(pos + 1)
                    out.damage[-1].byte_range = (pos, max(nxt, end))
                    pos = nxt
                    continue
        elif op == 0x07 and pending is not None:
            _index_entries(body, pending["index"])
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
        out.damage.append(_damage((size, size), last_good_ns, None, "no data-end or footer record: the writer did "
                                  "not close the file (killed?)", "the messages of the writer's open chunk (not "
                                  "written before it stopped)"))
    for d in out.damage:
        d.file = str(path)
    for cid, t_ns, payload in msgs:
        if cid not in channels:
            out.notes.append(f"message on unknown channel {cid} at t={t_ns / _NS:.6f} s dropped")
            continue
        topic, sid, _encoding = channels[cid]
        entry = out.topics.setdefault(topic, (schemas.get(sid, ""), []))
        entry[1].append((t_ns, payload))
    return out


def _cut_record(buf: memoryview, pos: int, op: int, n: int, schemas: dict, channels: dict, keep, out: RawMessages,
                last_good_ns: int | None) -> None:
    """The record at ``pos`` runs past the end of the file: keep the whole records of a cut uncompressed chunk."""
    size = len(buf)
    what = f"record 0x{op:02x} of {n} bytes cut off at the end of the file ({size} B)"
    head = None
    if op == 0x06:
        try:
            head = _chunk_head(pos + 9, buf[pos + 9:size])
        except (_Framing, struct.error, UnicodeDecodeError):
            head = None
    if head is not None and head.compression == "":
        sv = _salvage(head.data, head, schemas, channels, None, cut=True)
        for _off, cid, log_ns, payload in sv.msgs:
            keep(cid, log_ns, payload)
        for d in _damage_of_salvage(sv, head, (pos, pos + 9 + n), size, None, channels, "file truncated", cut=True):
            d.lost += " (and everything after the chunk)" if d.byte_range[1] == size else ""
            out.damage.append(d)
        return
    t_hi = head.end_ns if head is not None else None
    lost = "the messages of the cut chunk and everything after it (file truncated)"
    if head is not None:
        lost = f"the {head.compression}-compressed chunk (cannot be decompressed cut) and everything after it " \
               "(file truncated)"
    out.damage.append(_damage((pos, size), last_good_ns, t_hi, what, lost))


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
    """Messages of the ``.db3`` files of a sqlite3 bag. When the messages table cannot be read in one query (a cut
    or damaged file), rows are read one by one by id: every row whose pages are intact is kept, and each run of
    unreadable ids becomes a damage entry whose time range lies between the kept rows on either side.
    """
    out = RawMessages()
    for db in sorted(path.glob("*.db3")):
        with tempfile.TemporaryDirectory() as tmp:
            _read_one_db3(path, db, Path(tmp), out)
    if not out.topics and not out.damage:
        raise FileNotFoundError(f"{path} holds neither .mcap nor .db3 files")
    return out


def _read_one_db3(path: Path, db: Path, tmp: Path, out: RawMessages) -> None:
    import sqlite3

    data = db.read_bytes()
    page = int.from_bytes(data[16:18], "big") if len(data) >= 100 else 0
    page = 65536 if page == 1 else page
    n_pages = int.from_bytes(data[28:32], "big") if len(data) >= 100 else 0
    source = db
    if page and n_pages * page > len(data):
        # A cut file: sqlite trusts the header's page count and calls the whole file malformed. A copy that says
        # how many whole pages there are reads every table page that survived.
        whole = len(data) // page
        patched = bytearray(data[:whole * page])
        patched[28:32] = whole.to_bytes(4, "big")
        source = tmp / db.name
        source.write_bytes(bytes(patched))
        out.notes.append(f"{db}: file cut at {len(data)} B, its header says {n_pages * page} B: read the "
                         f"{whole} whole page(s) that are left")
    con = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        topics = {tid: (name, mt) for tid, name, mt in con.execute("SELECT id, name, type FROM topics")}
    except sqlite3.DatabaseError as exc:
        con.close()
        out.damage.append(Damage((0, db.stat().st_size), None, f"sqlite3 error ({exc}) in the topics table",
                                 "every message of the file", file=str(db)))
        return
    try:
        rows = list(con.execute("SELECT id, topic_id, timestamp, data FROM messages ORDER BY timestamp"))
        if source is not db and len(rows) < _sqlite_count_hint(path, db):
            raise sqlite3.DatabaseError(f"{len(rows)} rows left in a cut file")
    except sqlite3.DatabaseError as exc:
        rows = _sqlite_rows_by_id(con, _sqlite_count_hint(path, db), db, exc, topics, out)
    con.close()
    for _id, tid, ts, payload in rows:
        if tid not in topics:
            out.notes.append(f"{db}: message on unknown topic id {tid} at t={ts / _NS:.6f} s dropped")
            continue
        name, mt = topics[tid]
        out.topics.setdefault(name, (mt, []))[1].append((int(ts), bytes(payload)))


def _sqlite_count_hint(path: Path, db: Path) -> int:
    """Message count of ``db`` from the bag's metadata.yaml (0 when unknown)."""
    import yaml

    try:
        meta = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        return max(int(f["message_count"]) for f in meta["files"] if Path(f["path"]).name == db.name)
    except Exception:  # a missing or damaged metadata.yaml: probe the ids instead
        return 0


def _sqlite_rows_by_id(con, count_hint: int, db: Path, exc: Exception, topics: dict, out: RawMessages) -> list:
    """Rows of a damaged messages table read one id at a time (ids are rosbag2's 1-based INTEGER PRIMARY KEY)."""
    import sqlite3

    try:
        (max_id,) = con.execute("SELECT max(id) FROM messages").fetchone()
    except sqlite3.DatabaseError:
        max_id = None
    # without a readable max(id) or metadata count, probe on until 4096 ids in a row are unreadable or absent
    last = max(max_id or 0, count_hint)
    rows, bad, misses, i = [], [], 0, 0
    while i < last or (not last and misses < 4096):
        i += 1
        try:
            row = con.execute("SELECT id, topic_id, timestamp, data FROM messages WHERE id = ?", (i,)).fetchone()
        except sqlite3.DatabaseError:
            bad.append(i)
            misses += 1
            continue
        if row is None:
            misses += 1
            if i <= last:  # rosbag2 ids run 1..N: a missing one was lost with a damaged page
                bad.append(i)
            continue
        misses = 0
        rows.append(row)
    rows.sort(key=lambda r: r[2])
    by_id = sorted((r[0], r[2]) for r in rows)
    size = db.stat().st_size
    runs = []
    for i in bad:
        if runs and runs[-1][1] == i - 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    for lo_id, hi_id in runs:
        before = [t for rid, t in by_id if rid < lo_id]
        after = [t for rid, t in by_id if rid > hi_id]
        lo_ns, hi_ns = (before[-1] if before else None), (after[0] if after else None)
        end = "" if after else " (the end of the table: file truncated?)"
        out.damage.append(_damage((0, size), lo_ns, hi_ns, f"sqlite3 error ({exc}): message rows id {lo_id}.."
                                  f"{hi_id} unreadable{end}", f"{hi_id - lo_id + 1} message(s) between the kept "
                                  f"rows on either side; kept {len(rows)} row(s)", file=str(db)))
    if not runs:
        out.notes.append(f"{db}: the messages table failed one query ({exc}) but every row read by id")
    return rows
