"""The verdict journal's tables (journal.py opens, migrates and writes them).

Tables
------
``verdicts``   one row per published verdict, ``UNIQUE(station, seq)``, the
               exact wire JSON in ``json``.
``late``       results that arrived after their frame was already published as
               TIMEOUT; linked by ``(station, published_seq)``; never published.
``seqs``       the last seq handed out per station (the counter survives
               pruning old verdicts with `prune`).
``meta``       ``journal_id`` (random, made once per file: lets a subscriber
               tell "the daemon restarted on another journal" from a gap).
``acquired``   one row per frame acquired and not yet given its verdict: written
               (committed) when the frame is taken from the source, before it
               is inspected, and deleted in the same transaction that commits
               its verdict.  Rows left after a crash are the frames the crash
               interrupted: the next start publishes them as ERROR INTERRUPTED
               before any new frame (`unfinished`).
"""

__all__ = ["SCHEMA", "SCHEMA_VERSION"]

SCHEMA_VERSION = 2  # 2: the acquired table (a version-1 file gets it on open)

SCHEMA = """
CREATE TABLE IF NOT EXISTS verdicts (
    id INTEGER PRIMARY KEY,
    station TEXT NOT NULL,
    seq INTEGER NOT NULL,
    frame_id TEXT NOT NULL,
    part_id TEXT,
    result TEXT NOT NULL,
    t_acquired_ns INTEGER NOT NULL,
    t_published_ns INTEGER NOT NULL,
    json TEXT NOT NULL,
    UNIQUE (station, seq)
);
CREATE TABLE IF NOT EXISTS late (
    id INTEGER PRIMARY KEY,
    station TEXT NOT NULL,
    published_seq INTEGER NOT NULL,
    frame_id TEXT NOT NULL,
    result TEXT NOT NULL,
    t_received_ns INTEGER NOT NULL,
    json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS late_by_seq ON late (station, published_seq);
CREATE INDEX IF NOT EXISTS verdicts_by_time ON verdicts (t_published_ns);
CREATE TABLE IF NOT EXISTS seqs (station TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS acquired (
    id INTEGER PRIMARY KEY,
    station TEXT NOT NULL,
    frame_id TEXT NOT NULL,
    part_id TEXT,
    t_acquired_ns INTEGER NOT NULL,
    t_journaled_ns INTEGER NOT NULL,
    source TEXT NOT NULL
);
"""
