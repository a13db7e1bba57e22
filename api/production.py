"""The production ledger over HTTP: states, parts, downtimes (and their reasons), OEE per
machine and per line, the daily ledger per shift (JSON or CSV), the equipment networking rate."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request
from fastapi.responses import Response

from api.boundary import RuntimeView
from api.deps import require_key, require_write_key, runtime
from api.lookup import machine_exists, storable, unknown_machine
from api.output import csv_text
from api.params import BadParameter, parse_bucket, resolve_range
from api.schemas import (
    ERRORS,
    ConnectivityReport,
    DailyLedger,
    DowntimeItem,
    DowntimeList,
    DowntimeUpdate,
    Error,
    LineOee,
    Oee,
    ProductionCounts,
    StateList,
)
from collector.derive.report import (
    STATES,
    Downtime,
    ProductionReport,
    UnknownDowntime,
)
from collector.model import format_ts, now_us

router = APIRouter(prefix="/api/v1", tags=["production"], dependencies=[Depends(require_key)],
                   responses=ERRORS)

LEDGER_COLUMNS = (
    "date", "machine", "shift", "planned_s", "running_s", "idle_s", "stopped_s", "offline_s",
    "downtimes", "micro_stops", "longest_downtime_s", "total", "good", "reject",
    "availability", "performance", "quality", "oee", "energy_kwh",
)
ZH_COLUMNS = {
    "date": "日期", "machine": "设备", "shift": "班次", "planned_s": "计划时间(秒)",
    "running_s": "运行(秒)", "idle_s": "待机(秒)", "stopped_s": "停机(秒)", "offline_s": "离线(秒)",
    "downtimes": "停机次数", "micro_stops": "短停次数", "longest_downtime_s": "最长停机(秒)",
    "total": "总产量", "good": "合格品", "reject": "不合格品", "availability": "时间开动率",
    "performance": "性能开动率", "quality": "合格品率", "oee": "设备综合效率(OEE)",
    "energy_kwh": "能耗(kWh)",
}
ZH_STATES = {"running": "运行", "idle": "待机", "stopped": "停机", "offline": "离线"}
ZH_TOTAL = "合计"
MAX_PRODUCTION_BUCKETS = 10_000


def report_of(request: Request) -> ProductionReport:
    """The production report `create_app` made over the runtime's ledger."""
    report: ProductionReport = request.app.state.production
    return report


async def _machine(rt: RuntimeView, report: ProductionReport, machine: str) -> None:
    """404 for a machine that does not exist or has no production rules."""
    if not storable(machine) or not await machine_exists(rt, machine):
        raise unknown_machine(machine)
    if report.machine_rules(machine) is None:
        raise HTTPException(404, f"machine {machine!r} has no production rules: add a "
                            "`production:` section to it in the config (README, Production ledger)")


def _times(item: dict[str, Any], *keys: str) -> dict[str, Any]:
    for key in keys:
        if isinstance(item.get(key), int):
            item[key] = format_ts(item[key])
    return item


@router.get("/machines/{machine_id}/states", response_model=StateList,
            response_model_exclude_none=True, summary="The machine's states over a time range")
async def states(machine_id: str, request: Request, start: str | None = None,
                 end: str | None = None, codes: str | None = Query(
                     None, description="`umh`: add each state's code in the United "
                     "Manufacturing Hub numbering"),
                 rt: RuntimeView = Depends(runtime)) -> dict[str, Any]:
    report = report_of(request)
    await _machine(rt, report, machine_id)
    if codes not in (None, "umh"):
        raise BadParameter(f"codes={codes!r}: the only code set is umh")
    a, b = resolve_range(start, end)
    items = await report.states(machine_id, a, b, codes)
    return {"items": [_times(i, "start", "end") for i in items]}


@router.get("/machines/{machine_id}/production", response_model=ProductionCounts,
            response_model_exclude_none=True,
            summary="Parts made (total, good, reject), optionally per time bucket, shift or day")
async def production(machine_id: str, request: Request, start: str | None = None,
                     end: str | None = None, bucket: str | None = Query(
                         None, description="a duration (1m, 1h), `shift` or `day`"),
                     rt: RuntimeView = Depends(runtime)) -> dict[str, Any]:
    report = report_of(request)
    await _machine(rt, report, machine_id)
    a, b = resolve_range(start, end)
    size: str | int | None = bucket
    if bucket is not None and bucket not in ("shift", "day"):
        size = parse_bucket(bucket)
        if (min(b, now_us()) - a) // size > MAX_PRODUCTION_BUCKETS:
            raise BadParameter(f"bucket={bucket!r} makes more than {MAX_PRODUCTION_BUCKETS} "
                               "buckets in this range: choose a larger bucket or a shorter range")
    out = await report.production(machine_id, a, b, size)
    _times(out, "start", "end")
    if "items" in out:
        out["items"] = [_times(i, "start", "end") for i in out["items"]]
    return out


@router.get("/machines/{machine_id}/oee", response_model=Oee,
            summary="OEE (ISO 22400-2) of the machine over a time range")
async def oee(machine_id: str, request: Request, start: str | None = None,
              end: str | None = None, rt: RuntimeView = Depends(runtime)) -> dict[str, Any]:
    report = report_of(request)
    await _machine(rt, report, machine_id)
    a, b = resolve_range(start, end)
    return _times(await report.oee(machine_id, a, b), "start", "end")


def _downtime(d: Downtime, report: ProductionReport, window: tuple[int, int] | None = None
              ) -> dict[str, Any]:
    """A downtime as the API shows it, clipped to the asked window (its id is not)."""
    reason = report.reasons.get(d.reason or "")
    start, end = (max(d.start, window[0]), min(d.end, window[1])) if window else (d.start, d.end)
    return {"id": d.id, "machine": d.machine, "start": format_ts(start),
            "end": format_ts(end), "duration_s": round((end - start) / 1e6, 3),
            "states": d.states,
            "reason": d.reason, "reason_label": reason.label if reason else None,
            "planned": bool(reason and reason.planned), "comment": d.comment,
            "ongoing": d.ongoing}


@router.get("/machines/{machine_id}/downtimes", response_model=DowntimeList,
            summary="Downtimes (stops of at least micro_stop in planned time) and micro-stops")
async def downtimes(machine_id: str, request: Request, start: str | None = None,
                    end: str | None = None, rt: RuntimeView = Depends(runtime)) -> dict[str, Any]:
    report = report_of(request)
    await _machine(rt, report, machine_id)
    a, b = resolve_range(start, end)
    micro, found = await report.downtimes(machine_id, a, b)
    return {"micro_stops": micro, "items": [_downtime(d, report, (a, b)) for d in found],
            "reasons": [{"code": r.code, "label": r.label or r.code, "planned": r.planned}
                        for r in report.reasons.values()]}


@router.patch("/downtimes/{downtime_id}", response_model=DowntimeItem,
              dependencies=[Depends(require_write_key)],
              responses={403: {"model": Error, "description": "no key of api.write_keys given"}},
              summary="Set a downtime's reason and comment (needs a key of api.write_keys)")
async def set_downtime(downtime_id: str, request: Request,
                       body: Annotated[DowntimeUpdate, Body()]) -> dict[str, Any]:
    report = report_of(request)
    if body.comment is not None and len(body.comment) > 2000:
        raise BadParameter("comment: at most 2000 characters")
    try:
        keep = tuple(f for f in ("reason", "comment") if f not in body.model_fields_set)
        found = await report.set_reason(downtime_id, body.reason, body.comment, keep)
    except UnknownDowntime as exc:
        raise HTTPException(404, str(exc)) from None
    except ValueError as exc:
        raise BadParameter(f"reason: {exc}") from None
    return _downtime(found, report)


@router.get("/ledger/daily", response_model=DailyLedger,
            summary="The daily production ledger: one row per machine and shift",
            responses={200: {"content": {"text/csv": {}}}})
async def daily(request: Request, date_: str | None = Query(None, alias="date",
                                                             description="YYYY-MM-DD, local to "
                                                             "plant.timezone; default today"),
                format: str = "json", lang: str = "en") -> dict[str, Any] | Response:
    report = report_of(request)
    if format not in ("json", "csv"):
        raise BadParameter(f"format={format!r}: use json or csv")
    if lang not in ("en", "zh-CN"):
        raise BadParameter(f"lang={lang!r}: use en or zh-CN")
    if date_ is None:
        day = report.calendar.local_date(now_us())
    else:
        try:
            day = date.fromisoformat(date_)
        except ValueError:
            raise BadParameter(f"date={date_!r} is not a date: use YYYY-MM-DD") from None
    rows, totals = await report.daily(day)
    if format == "csv":
        return _ledger_csv(day, rows + totals, lang)
    shifts = [{"name": s.name, "start": format_ts(s.start), "end": format_ts(s.end),
               "planned_s": sum(b - a for a, b in s.planned) / 1e6}
              for s in report.calendar.shifts_on(day)]
    names = {m.id: m.display_name for m in report.config.machines}
    for row in rows + totals:
        row["name"] = names.get(row["machine"], row["machine"])
        _times(row, "start", "end")
    out: dict[str, Any] = {"date": day.isoformat(), "timezone": report.calendar.tz.key,
                           "shifts": shifts, "items": rows, "totals": totals}
    if lang == "zh-CN":
        out["labels"] = {**ZH_COLUMNS, **ZH_STATES, "total": ZH_TOTAL}
    return out


def _ledger_csv(day: date, rows: list[dict[str, Any]], lang: str) -> Response:
    header = [ZH_COLUMNS[c] for c in LEDGER_COLUMNS] if lang == "zh-CN" else list(LEDGER_COLUMNS)
    lines = []
    for row in rows:
        cells = [row.get(c) for c in LEDGER_COLUMNS]
        if lang == "zh-CN" and row.get("shift") == "total":
            cells[2] = ZH_TOTAL
        lines.append(cells)
    body = "\ufeff" + csv_text([header]) + csv_text(lines)  # the BOM makes Excel read UTF-8
    name = f"ledger-{day.isoformat()}.csv"
    return Response(body.encode("utf-8"), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/lines/{line}/oee", response_model=LineOee,
            summary="OEE of a production line: its machines' sums first, then the ratios")
async def line_oee(line: str, request: Request, start: str | None = None,
                   end: str | None = None) -> dict[str, Any]:
    report = report_of(request)
    a, b = resolve_range(start, end)
    if not any(r.line == line for r in report.rules.values()):
        lines = sorted({r.line for r in report.rules.values() if r.line})
        raise HTTPException(404, f"line {line!r} has no machine with production rules"
                            + (f" (lines: {', '.join(lines)})" if lines else ""))
    return _times(await report.line_oee(line, a, b), "start", "end")


@router.get("/connectivity", response_model=ConnectivityReport,
            summary="Equipment networking rate: per machine the share of time with good data")
async def connectivity(request: Request, start: str | None = None, end: str | None = None,
                       rt: RuntimeView = Depends(runtime)) -> dict[str, Any]:
    report = report_of(request)
    a, b = resolve_range(start, end)

    out = await report.connectivity(a, b, rt.ledger.aggregates.minutes_with_values)
    return _times(out, "start", "end")


__all__ = ["router", "STATES"]
