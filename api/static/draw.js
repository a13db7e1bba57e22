// What values look like on the status and ledger pages: numbers, durations, ages, clock,
// sparklines and state bars. Loaded before status.js and ledger.js, which take these from
// window.StatusDraw.
"use strict";
window.StatusDraw = (() => {
  const SVG = "http://www.w3.org/2000/svg";

  // A sparkline of aggregate buckets ({start, count, min, max, avg, last}) between s.t0 and
  // s.t1 (ms): the average as a line, min..max as a faint band; bool tags on a 0..1 scale.
  function sparkline(buckets, s, kind) {
    const numeric = buckets.filter((b) => b.avg !== null || b.count);
    if (!numeric.some((b) => b.avg !== null)) return document.createTextNode("");
    const W = 120, H = 30, pad = 2;
    let lo = Infinity, hi = -Infinity;
    for (const b of numeric) {
      if (b.min !== null) lo = Math.min(lo, b.min);
      if (b.max !== null) hi = Math.max(hi, b.max);
    }
    if (kind === "bool") { lo = 0; hi = 1; }
    if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
    const x = (ms) => ((ms - s.t0) / (s.t1 - s.t0)) * W;
    const y = (v) => H - pad - ((v - lo) / (hi - lo)) * (H - 2 * pad);
    // split into runs where the signal went bad (a bucket ending in a bad reading): the gap
    // a device that stopped answering leaves. Buckets without readings are no gap: a value
    // that does not change is only stored again at its heartbeat.
    const runs = [];
    let run = [];
    for (const b of numeric) {
      if (b.avg !== null) run.push({ at: Date.parse(b.start) + s.bucketMs / 2, b });
      if (b.last === null && run.length) { runs.push(run); run = []; }
    }
    if (run.length) runs.push(run);
    const tail = numeric[numeric.length - 1];
    const holds = tail.avg !== null && tail.last !== null; // the newest bucket ended good
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", `last ${Math.round((s.t1 - s.t0) / 60e3)} min, ` +
      `${fmtNumber(lo)} to ${fmtNumber(hi)}`);
    for (const r of runs) {
      const pts = r.map((p) => [x(p.at), y(p.b.avg)]);
      // the newest value holds until it changes: carry it on to now
      if (holds && r === runs[runs.length - 1]) pts.push([W, y(Number(tail.last))]);
      if (pts.length === 1) pts.push([pts[0][0] + 1, pts[0][1]]);
      if (kind !== "bool") {
        const band = [...r.map((p) => `${x(p.at)},${y(p.b.max)}`),
          ...r.slice().reverse().map((p) => `${x(p.at)},${y(p.b.min)}`)];
        svg.append(svgEl("polygon", { class: "band", points: band.join(" ") }));
      }
      svg.append(svgEl("polyline", { class: "line", points: pts.map((p) => p.join(",")).join(" ") }));
    }
    return svg;
  }

  function svgEl(name, attrs) {
    const el = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    return el;
  }

  function fmtNumber(v) {
    if (!isFinite(v)) return String(v);
    if (Number.isInteger(v)) return v.toLocaleString();
    const a = Math.abs(v);
    const d = a >= 100 ? 1 : a >= 1 ? 2 : 3;
    return v.toLocaleString(undefined, { minimumFractionDigits: d, maximumFractionDigits: d });
  }

  function fmtInt(n) { return Number(n).toLocaleString(); }

  function fmtSeconds(s) {
    return s < 1 ? `${(s * 1000).toFixed(s < 0.01 ? 1 : 0)} ms` : `${s.toFixed(2)} s`;
  }

  function fmtAge(ms) {
    const s = Math.max(0, ms) / 1000;
    if (s < 10) return `${s.toFixed(1)} s`;
    if (s < 90) return `${Math.round(s)} s`;
    if (s < 90 * 60) return `${Math.round(s / 60)} min`;
    if (s < 48 * 3600) return `${Math.round(s / 3600)} h`;
    return `${Math.round(s / 86400)} d`;
  }

  function clock(t) {
    return new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  }

  // seconds as hours and minutes, "7:45"; null as a dash
  function fmtHm(s) {
    if (s === null || s === undefined) return "—";
    const m = Math.round(s / 60);
    return `${Math.floor(m / 60)}:${String(m % 60).padStart(2, "0")}`;
  }

  // a ratio 0..1 as a percentage with one decimal, "72.4 %"; null (nothing to divide by) as a dash
  function fmtPct(r) {
    return r === null || r === undefined ? "—" : `${(r * 100).toFixed(1)} %`;
  }

  // a duration for people: "45 s", "12 min", "3 h 05 min"
  function fmtDuration(s) {
    if (s < 60) return `${Math.round(s)} s`;
    const m = Math.round(s / 60);
    return m < 60 ? `${m} min` : `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
  }

  // hh:mm in the plant's time zone (not the browser's), as the ledger's shifts are
  function plantClock(tz) {
    const f = new Intl.DateTimeFormat("en-GB", { timeZone: tz || "UTC", hour: "2-digit",
      minute: "2-digit", hourCycle: "h23" });
    return (t) => f.format(new Date(t));
  }

  // A thin bar of machine states ({state, start, end}) between t0 and t1 (ms): one coloured
  // (and, for stopped and idle, patterned) segment per state, each titled with its words.
  function stateBar(items, t0, t1, hm) {
    const bar = document.createElement("div");
    bar.className = "statebar";
    bar.setAttribute("role", "img");
    const spent = {};
    for (const it of items) {
      const a = Math.max(t0, Date.parse(it.start)), b = Math.min(t1, Date.parse(it.end));
      if (!(b > a)) continue;
      spent[it.state] = (spent[it.state] || 0) + (b - a) / 1000;
      const seg = document.createElement("span");
      seg.className = "seg";
      seg.dataset.state = it.state;
      seg.style.left = `${((a - t0) / (t1 - t0)) * 100}%`;
      seg.style.width = `${((b - a) / (t1 - t0)) * 100}%`;
      seg.title = `${it.state} ${hm(a)}–${hm(b)} (${fmtDuration((b - a) / 1000)})`;
      bar.append(seg);
    }
    bar.setAttribute("aria-label", Object.entries(spent)
      .map(([state, s]) => `${state} ${fmtDuration(s)}`).join(", "));
    return bar;
  }

  return { sparkline, fmtNumber, fmtInt, fmtSeconds, fmtAge, clock, fmtHm, fmtPct, fmtDuration,
    plantClock, stateBar };
})();
