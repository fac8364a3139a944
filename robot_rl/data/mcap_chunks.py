"""MCAP record framing, chunk checks, and record-by-record salvage inside a damaged chunk.

The low-level half of ``robot_rl.data.bag_reader``'s ``walk_mcap``: the MCAP framing (opcode u8, length u64, body),
a chunk's header, decompression and CRC-32 check (``_chunk``), and, for an uncompressed chunk that is damaged or cut,
``_salvage`` (every record that still frames) with the ``Damage`` entries of what was lost. Kept apart so the file
walker reads as the file's structure and this module as the chunk's.
"""

from __future__ import annotations

import struct
import zlib
from collections import defaultdict
from dataclasses import dataclass

from robot_rl.data.bag_raw import _NS, _lost_text, _t
from robot_rl.data.checks import Damage

MAGIC = b"\x89MCAP0\r\n"
_KNOWN_OPS = set(range(0x01, 0x11))


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

