"""Damage-tolerant reading of rosbag2 files: raw (CDR) messages by topic, and the damage found.

MCAP: the default MCAP reader skips CRCs and returns nothing from a file cut mid-way. ``walk_mcap`` reads the file
record by record with the MCAP framing (opcode u8, length u64, body), verifies each chunk's CRC-32 when one is
stored, checks the framing of every record inside, and keeps every intact chunk; in a damaged or cut uncompressed
chunk it keeps every record that still frames (``_salvage``). Damage becomes a ``Damage`` entry (exact byte range,
log-time range of the messages lost, lost messages per topic from the chunk's message index). sqlite3 bags are read
with the standard library, row by row when a page is damaged. ``robot_rl.data.bags`` turns the messages into
episodes. The chunk framing and salvage live in ``robot_rl.data.mcap_chunks``, the sqlite3 reader in
``robot_rl.data.bag_db3``, the shared result type in ``robot_rl.data.bag_raw``.
"""

from __future__ import annotations

import struct
from collections import defaultdict
from pathlib import Path

from robot_rl.data.bag_db3 import _read_sqlite
from robot_rl.data.bag_raw import _NS, RawMessages, _damage, _lost_text
from robot_rl.data.checks import Damage
from robot_rl.data.mcap_chunks import (
    _KNOWN_OPS,
    MAGIC,
    _chunk,
    _chunk_head,
    _damage_of_salvage,
    _Framing,
    _parse_records,
    _salvage,
)


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
    and cannot be located), is lost whole. The pass and its state (read position, schemas and channels seen so far,
    last good log time, a damaged chunk waiting for its message index) live in ``_McapWalk``.
    """
    path = Path(path)
    walk = _McapWalk(path.read_bytes())
    walk.records()
    return walk.result(path)


class _McapWalk:
    """One pass over the bytes of an MCAP file (``walk_mcap``): what it has found so far and what it has kept."""

    def __init__(self, data: bytes):
        self.data = data
        self.buf = memoryview(data)
        self.size = len(data)
        self.out = RawMessages()
        self.schemas: dict[int, str] = {}
        self.channels: dict[int, tuple[str, int, str]] = {}
        self.msgs: list[tuple[int, int, bytes]] = []
        if bytes(self.buf[:8]) != MAGIC:
            self.out.damage.append(Damage((0, min(8, self.size)), None, "missing MCAP magic", "nothing (reading on)"))
        self.closed = False  # a data-end or footer record seen: the writer closed the file
        self.last_good_ns: int | None = None
        self.pending: dict | None = None  # a damaged chunk waiting for its message index

    def keep(self, cid: int, log_ns: int, payload: bytes) -> None:
        self.msgs.append((cid, log_ns, payload))
        self.last_good_ns = log_ns if self.last_good_ns is None else max(self.last_good_ns, log_ns)

    def records(self) -> None:
        """Walk the records from the leading magic to the footer or the end of the file (damage on the way)."""
        buf, size, out = self.buf, self.size, self.out
        pos = 8
        while pos < size:
            if pos + 9 > size:
                self.finish_pending()
                out.damage.append(_damage((pos, size), self.last_good_ns, None, "file ends inside a record header",
                                          "the rest of the recording (file truncated)"))
                break
            op, n = buf[pos], struct.unpack("<Q", buf[pos + 1:pos + 9])[0]
            end = pos + 9 + n
            nxt = self.resync(pos + 1) if op not in _KNOWN_OPS or end > size else size
            if nxt < size:  # bad opcode or a length past the end, yet intact chunks follow: framing damage, not a cut
                self.finish_pending()
                out.damage.append(_damage((pos, nxt), self.last_good_ns, _chunk_start_ns(buf, nxt),
                                          f"invalid record framing (opcode 0x{op:02x}, length {n})",
                                          f"every message in bytes [{pos}, {nxt})"))
                pos = nxt
                continue
            if op not in _KNOWN_OPS:
                out.damage.append(_damage((pos, size), self.last_good_ns, None, f"invalid record framing (opcode "
                                          f"0x{op:02x}) and no intact chunk after it", "the rest of the recording"))
                break
            if end > size:
                self.finish_pending()
                _cut_record(buf, pos, op, n, self.schemas, self.channels, self.keep, out, self.last_good_ns)
                break
            body = buf[pos + 9:end]
            if op == 0x06:
                nxt = self.chunk(pos, end, body)
                if nxt is not None:
                    pos = nxt
                    continue
            elif op == 0x07 and self.pending is not None:
                _index_entries(body, self.pending["index"])
            elif op in (0x03, 0x04):
                try:
                    _parse_records(buf[pos:end], self.schemas, self.channels, self.msgs)
                except (_Framing, struct.error, UnicodeDecodeError) as exc:
                    out.damage.append(Damage((pos, end), None, f"damaged schema/channel record: {exc}", "a channel"))
            elif op == 0x0F:
                self.finish_pending()
                self.closed = True
            elif op == 0x02:  # footer: only the closing magic follows
                self.closed = True
                if bytes(buf[end:end + 8]) != MAGIC:
                    out.notes.append(f"no closing MCAP magic after the footer at byte {pos}")
                break
            pos = end
        self.finish_pending()

    def chunk(self, pos: int, end: int, body: memoryview) -> int | None:
        """Keep the messages of the chunk record ``[pos, end)``; a damaged one waits for its message index. Returns
        where to read on when the chunk's own length field is damaged (resynced), else None (at ``end``).
        """
        self.finish_pending()
        head = None
        try:
            head = _chunk_head(pos + 9, body)
            raw = _chunk(head)
            chunk_msgs: list[tuple[int, int, bytes]] = []
            _parse_records(memoryview(raw), self.schemas, self.channels, chunk_msgs)
            for cid, log_ns, payload in chunk_msgs:
                self.keep(cid, log_ns, payload)
        except (_Framing, struct.error, UnicodeDecodeError) as exc:
            self.pending = {"head": head, "index": {}, "range": (pos, end), "why": f"damaged chunk ({exc})"}
            # A damaged length field would put the next record in the wrong place: check before trusting it.
            if end + 9 <= self.size and self.buf[end] not in _KNOWN_OPS:
                self.pending["head"] = None  # the chunk's own length is wrong: nothing inside can be placed
                self.finish_pending()
                nxt = self.resync(pos + 1)
                self.out.damage[-1].byte_range = (pos, max(nxt, end))
                return nxt
        return None

    def finish_pending(self) -> None:
        """Settle the damaged chunk waiting for its message index: salvage what frames, else report it lost."""
        pending, schemas, channels = self.pending, self.schemas, self.channels
        if pending is None:
            return
        head, index, byte_range, why = pending["head"], pending["index"], pending["range"], pending["why"]
        self.pending = None
        if head is not None and head.compression == "" and len(head.data) == head.compressed_size:
            sv = _salvage(head.data, head, schemas, channels, index or None, cut=False)
            if sv.bad:
                for _off, cid, log_ns, payload in sv.msgs:
                    self.keep(cid, log_ns, payload)
                self.out.damage.extend(_damage_of_salvage(sv, head, byte_range, self.size, index or None, channels,
                                                          why, cut=False))
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
            lo, hi = self.last_good_ns, None
        by_topic = {channels.get(cid, (f"channel {cid}",))[0]: c for cid, c in sorted(counts.items())}
        self.out.damage.append(_damage(byte_range, lo, hi, why, _lost_text(counts, channels) or "the chunk's messages",
                                       lost_messages=by_topic))

    def resync(self, start: int) -> int:
        """Next offset >= start where an intact chunk (or the data-end record) begins, else the file size."""
        data, buf, size = self.data, self.buf, self.size
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

    def result(self, path: Path) -> RawMessages:
        """The messages by topic, with the damage found (an unclosed file is damage at its end)."""
        out, size, channels = self.out, self.size, self.channels
        if not self.closed and not any(d.byte_range[1] == size for d in out.damage):
            out.damage.append(_damage((size, size), self.last_good_ns, None, "no data-end or footer record: the writer "
                                      "did not close the file (killed?)", "the messages of the writer's open chunk "
                                      "(not written before it stopped)"))
        for d in out.damage:
            d.file = str(path)
        for cid, t_ns, payload in self.msgs:
            if cid not in channels:
                out.notes.append(f"message on unknown channel {cid} at t={t_ns / _NS:.6f} s dropped")
                continue
            topic, sid, _encoding = channels[cid]
            entry = out.topics.setdefault(topic, (self.schemas.get(sid, ""), []))
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

