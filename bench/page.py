"""What one 10,000-reading page of `/api/v1/readings` costs the event loop, without HTTP:
fetching its rows and writing its JSON, the way the route does it now (columns, C code) and
the way it did before (a row tuple per reading, an f-string per row), interleaved so that both
see the same machine speed.

    .venv/bin/python bench/page.py [--pages 300] [--backend sqlite|postgresql]

Uses the ledger of bench/api.py (built there when missing). Random windows of a 1 Hz tag of
the ten machines, as the API bench asks for them; the cyclic garbage collector runs, with
start-up objects frozen as in `collector run`. Prints mean milliseconds per page. "Before"
fetches its rows as the route did (a tuple of five per reading) but, like every direct SQLite
read now, with the collector paused during the fetch (which saves ~15% of a fetch with
start-up objects frozen, half of it without).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.output import QUALITY, reading_items  # noqa: E402
from api.params import ts_text  # noqa: E402
from bench.common import speed_reference  # noqa: E402
from collector.ledger import Ledger, PageQuery  # noqa: E402
from collector.ledger.pages import page_rows  # noqa: E402

# bench/api.py (its ledger and helpers), under a name that does not hide the `api` package
_spec = importlib.util.spec_from_file_location("bench_api", Path(__file__).parent / "api.py")
assert _spec is not None and _spec.loader is not None
bench_api = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_api)

ROWS = 10_000
S = 1_000_000


def before(rows: list[tuple], head: str) -> bytes:
    """The route's formatting before columns: an f-string per row, values through repr(),
    then a look for None/inf/nan that repr() would have written."""
    body = ",".join([f'{head}{ts_text(ts)}","value":{value!r},'
                     f'"quality":"{QUALITY[quality]}"}}' for _sid, ts, value, _t, quality in rows])
    assert not any(bad in body for bad in (":None", ":inf", ":-inf", ":nan"))
    return ('{"items":[' + body + '],"next":null}').encode()


async def run(backend: str, pages: int) -> None:
    url, schema = ((f"sqlite:///{bench_api.SQLITE_PATH}", None) if backend == "sqlite"
                   else (bench_api.PG, bench_api.PG_SCHEMA))
    ledger = Ledger(url, schema=schema)
    await ledger.open(migrate=False)
    try:
        sids = [s.id for m in range(10) for s in await ledger.catalogue.series(f"m{m:02d}")
                if s.tag == "t000"]
        head = '{"machine":"m00","tag":"t000","ts":"'
        heads = {sid: head.encode() for sid in sids}
        gc.collect()
        gc.freeze()
        rng = random.Random(7)
        cost: dict[str, list[float]] = {k: [] for k in
                                        ("rows fetch", "rows JSON", "columns fetch",
                                         "columns JSON")}
        for _ in range(pages):
            sid = rng.choice(sids)
            start = bench_api.START + rng.randrange(0, bench_api.DAY - (ROWS + 100) * S) // S * S
            query = PageQuery((sid,), start, bench_api.END, ROWS)
            t0 = time.process_time()
            rows = await page_rows(ledger.engine, query)
            t1 = time.process_time()
            old = before(rows, head)
            t2 = time.process_time()
            del rows
            page = await ledger.pages.columns(query)
            t3 = time.process_time()
            new = b'{"items":[' + b"".join(reading_items(page, heads, set())) + \
                b'],"next":null}'
            t4 = time.process_time()
            for key, took in zip(cost, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                cost[key].append(took * 1000)
            assert len(page) == ROWS
        assert json.loads(old) == json.loads(new)
        m = {k: statistics.mean(v) for k, v in cost.items()}
        print(f"{backend}: {pages} pages of {ROWS:,} readings, mean ms of the loop's CPU "
              f"(speed reference {speed_reference():.0f} ms)")
        print(f"  before (rows, f-strings): fetch {m['rows fetch']:5.1f}  JSON "
              f"{m['rows JSON']:5.1f}  total {m['rows fetch'] + m['rows JSON']:5.1f}")
        print(f"  now (columns, C code):    fetch {m['columns fetch']:5.1f}  JSON "
              f"{m['columns JSON']:5.1f}  total {m['columns fetch'] + m['columns JSON']:5.1f}")
    finally:
        await ledger.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    (bench_api.build_sqlite if args.backend == "sqlite" else bench_api.build_postgresql)(False)
    asyncio.run(run(args.backend, args.pages))
    return 0


if __name__ == "__main__":
    sys.exit(main())
