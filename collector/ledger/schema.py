"""The ledger's tables, shared by SQLite and PostgreSQL.

Readings are keyed by (series_id, ts): one b-tree ordered the way every query reads it (one
series, a time range), and a replayed batch conflicts on that key instead of inserting twice.
`ts` is integer microseconds since the epoch, UTC, so both databases compare and bucket it
with plain integer arithmetic. Numbers and booleans go in `value`, text in `text`; the series'
`kind` says how to present `value`. An integer reading also keeps its exact value in
`value_int` (see `exact.py`: a double holds integers exactly only up to 2^53), and a reading
the source marked with a status code other than plain good keeps it in `status`.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

machines = Table(
    "machines",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200)),
    Column("area", String(200)),
    Column("line", String(200)),
    Column("box", String(64)),  # the collector box that owns this machine in a central ledger
)

series = Table(
    "series",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("machine_id", String(64), ForeignKey("machines.id"), nullable=False),
    Column("tag", String(64), nullable=False),
    Column("unit", String(32)),
    Column("source", String(64)),
    Column("protocol", String(16)),
    Column("kind", String(8)),  # number | bool | text, from the first value seen
    UniqueConstraint("machine_id", "tag", name="uq_series_machine_tag"),
)

readings = Table(
    "readings",
    metadata,
    Column("series_id", Integer, primary_key=True),  # no foreign key: see migration 0002
    Column("ts", BigInteger, primary_key=True, autoincrement=False),
    Column("value", Float(53)),
    Column("text", Text),
    Column("quality", SmallInteger, nullable=False, default=0),
    Column("value_int", BigInteger),  # the exact integer (exact.py); migration 0005
    Column("status", BigInteger),  # e.g. an OPC UA StatusCode (32 bits, unsigned)
    sqlite_with_rowid=False,
)

# readings not yet moved into `readings` (migration 0007): on SQLite the writer commits here
# and moves the rows over every minute in one sorted pass, so a commit writes a few pages
# of this small table instead of one page per series of `readings`. A reading is in exactly
# one of the two; the view `readings_all` (both, UNION ALL) is what readers read.
readings_recent = Table(
    "readings_recent",
    metadata,
    Column("series_id", Integer, primary_key=True),
    Column("ts", BigInteger, primary_key=True, autoincrement=False),
    Column("value", Float(53)),
    Column("text", Text),
    Column("quality", SmallInteger, nullable=False),
    Column("value_int", BigInteger),
    Column("status", BigInteger),
    sqlite_with_rowid=False,
)

# one row per series and UTC minute of the readings in `readings` (not yet of those in
# `readings_recent`), kept by the writer (see rollup.py); aggregates of whole
# minutes read this instead of 60x as many readings
readings_1m = Table(
    "readings_1m",
    metadata,
    Column("series_id", Integer, primary_key=True),
    Column("minute", BigInteger, primary_key=True, autoincrement=False),  # µs, start of minute
    Column("n", Integer, nullable=False),  # readings
    Column("nv", Integer, nullable=False),  # readings with a number (or bool) value
    Column("lo", Float(53)),
    Column("hi", Float(53)),
    Column("total", Float(53)),
    Column("last_ts", BigInteger, nullable=False),
    Column("last_value", Float(53)),
    Column("last_text", Text),
    Column("last_int", BigInteger),  # the newest reading's value_int (exact.py)
    sqlite_with_rowid=False,
)

# the newest reading of each series, kept by the writer: what dashboards poll most
latest_readings = Table(
    "latest_readings",
    metadata,
    Column("series_id", Integer, primary_key=True, autoincrement=False),
    Column("ts", BigInteger, nullable=False),
    Column("value", Float(53)),
    Column("text", Text),
    Column("quality", SmallInteger, nullable=False),
    Column("value_int", BigInteger),
    Column("status", BigInteger),
)

# --- the production ledger, derived from the readings (see collector/derive) -------------------

# what state each machine was in, as closed intervals [start_ts, end_ts); the open one is in
# production_checkpoints
state_intervals = Table(
    "state_intervals",
    metadata,
    Column("machine_id", String(64), primary_key=True),
    Column("start_ts", BigInteger, primary_key=True, autoincrement=False),
    Column("end_ts", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),  # running | idle | stopped | offline
    sqlite_with_rowid=False,
)

# parts counted at the reading that first showed them (configured roles; the others 0)
part_counts = Table(
    "part_counts",
    metadata,
    Column("machine_id", String(64), primary_key=True),
    Column("ts", BigInteger, primary_key=True, autoincrement=False),
    Column("total", BigInteger, nullable=False),
    Column("good", BigInteger, nullable=False),
    Column("reject", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

# the same per UTC minute, with the energy used in it: what shift and day figures read
production_1m = Table(
    "production_1m",
    metadata,
    Column("machine_id", String(64), primary_key=True),
    Column("minute", BigInteger, primary_key=True, autoincrement=False),  # µs, minute start
    Column("total", BigInteger, nullable=False),
    Column("good", BigInteger, nullable=False),
    Column("reject", BigInteger, nullable=False),
    Column("energy_kwh", Float(53), nullable=False),
    sqlite_with_rowid=False,
)

# the same per UTC hour, kept in step with the minutes: a day of a hundred machines is 2,400
# rows instead of 144,000 (shift edges off the hour take their minutes from production_1m)
production_1h = Table(
    "production_1h",
    metadata,
    Column("machine_id", String(64), primary_key=True),
    Column("hour", BigInteger, primary_key=True, autoincrement=False),  # µs, hour start
    Column("total", BigInteger, nullable=False),
    Column("good", BigInteger, nullable=False),
    Column("reject", BigInteger, nullable=False),
    Column("energy_kwh", Float(53), nullable=False),
    sqlite_with_rowid=False,
)

# where each machine's derivation stands: committed with what it produced, so a restart
# neither loses nor counts twice
production_checkpoints = Table(
    "production_checkpoints",
    metadata,
    Column("machine_id", String(64), primary_key=True),
    Column("upto", BigInteger, nullable=False),  # every reading at or before this was taken in
    Column("state", String(16)),  # the open state, since `since`
    Column("since", BigInteger),
    Column("data", Text, nullable=False),  # JSON: pending state, tag values, counter values
    Column("updated_at", BigInteger, nullable=False),
)

# what a supervisor said about a downtime, keyed by where the downtime starts
downtime_notes = Table(
    "downtime_notes",
    metadata,
    Column("machine_id", String(64), primary_key=True),
    Column("start_ts", BigInteger, primary_key=True, autoincrement=False),
    Column("reason", String(64)),
    Column("comment", Text),
    Column("updated_at", BigInteger, nullable=False),
)
