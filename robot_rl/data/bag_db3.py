"""Damage-tolerant reading of the ``.db3`` files of a sqlite3 rosbag2 bag, with the standard library.

Split from ``robot_rl.data.bag_reader`` (which dispatches here when a bag directory holds no ``.mcap``): a cut file
is read through a copy whose header names the pages that are left, and a damaged messages table row by row by id,
each run of unreadable ids becoming one ``Damage`` entry.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from robot_rl.data.bag_raw import _NS, RawMessages, _damage
from robot_rl.data.checks import Damage


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
