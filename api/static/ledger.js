// The daily production ledger page: one day's shifts, totals and downtimes from the REST API,
// reasons set by a supervisor, CSV downloads, printable. Plain JS, nothing from the internet;
// every value goes into the page as text, never as HTML.
"use strict";
(() => {
  const REFRESH_MS = 60e3;           // today's ledger grows while the day runs
  const KEY_STORE = "collector.apiKey"; // the same key as the status page
  const { fmtInt, fmtHm, fmtPct, fmtDuration, plantClock } = window.StatusDraw;

  // [field, heading, kind, group]: the ledger's columns in the order shown
  const COLUMNS = [
    ["planned_s", "Planned", "hm", "time"], ["running_s", "Running", "hm", "time"],
    ["idle_s", "Idle", "hm", "time"], ["stopped_s", "Stopped", "hm", "time"],
    ["offline_s", "Offline", "hm", "time"],
    ["downtimes", "Downtimes", "int", "stops"], ["micro_stops", "Micro-stops", "int", "stops"],
    ["longest_downtime_s", "Longest downtime", "hm", "stops"],
    ["total", "Total", "int", "parts"], ["good", "Good", "int", "parts"],
    ["reject", "Reject", "int", "parts"],
    ["availability", "Availability", "pct", "oee"], ["performance", "Performance", "pct", "oee"],
    ["quality", "Quality", "pct", "oee"], ["oee", "OEE", "pct", "oee"],
    ["energy_kwh", "kWh", "kwh", "energy"],
  ];
  const GROUPS = { time: "Time (h:mm)", stops: "Stops", parts: "Parts", oee: "OEE", energy: "Energy" };

  const $ = (id) => document.getElementById(id);
  let apiKey = localStorage.getItem(KEY_STORE) || "";
  let skew = 0;            // server clock minus this browser's clock (ms)
  let shown = null;        // {day, downtimes: Map machine -> answer, at}
  let wanted = new URLSearchParams(location.search).get("date") || "";
  let loading = 0;         // the newest load; older answers are dropped
  const rows = new Map();  // downtime id -> its row, kept while being edited
  const feedback = new Map(); // downtime id -> {kind, text}: survives a refresh

  class KeyNeeded extends Error {}

  // ---------------------------------------------------------------------------------- API
  async function call(path, options = {}) {
    const headers = { Accept: "application/json", ...(options.headers || {}) };
    if (apiKey) headers["X-API-Key"] = apiKey;
    const r = await fetch(path, { ...options, headers, cache: "no-store" });
    noteServerTime(r.headers.get("Date"));
    if (r.status === 401) throw new KeyNeeded(apiKey ? "the API refused this key" : "the API needs a key");
    if (!r.ok) {
      let detail = `${r.status} ${r.statusText}`;
      try { detail = describe((await r.json()).detail) || detail; } catch (_) { /* not JSON */ }
      const err = new Error(detail);
      err.status = r.status;
      throw err;
    }
    return r;
  }

  const get = async (path) => (await call(path)).json();

  function describe(detail) {  // FastAPI's validation errors are a list
    if (Array.isArray(detail)) return detail.map((d) => d.msg || JSON.stringify(d)).join("; ");
    return detail ? String(detail) : "";
  }

  function noteServerTime(header) {
    const at = Date.parse(header || "");
    if (isNaN(at)) return;
    const estimate = at + 500 - Date.now();
    skew = Math.abs(estimate) > 2500 ? estimate : 0;
  }
  const now = () => Date.now() + skew;

  // ------------------------------------------------------------------------------- load
  async function load() {
    const mine = ++loading;
    try {
      const q = wanted ? `?date=${encodeURIComponent(wanted)}` : "";
      const day = await get(`/api/v1/ledger/daily${q}`);
      const downtimes = new Map();
      if (day.shifts.length) {
        const span = new URLSearchParams({ start: day.shifts[0].start,
          end: day.shifts[day.shifts.length - 1].end });
        for (const row of day.totals) {
          try {
            downtimes.set(row.machine, await get(
              `/api/v1/machines/${encodeURIComponent(row.machine)}/downtimes?${span}`));
          } catch (e) {
            if (e instanceof KeyNeeded) throw e;
            downtimes.set(row.machine, { error: e.message, items: [], reasons: [] });
          }
        }
      }
      if (mine !== loading) return;
      $("keyform").hidden = true;
      showBanner(null);
      shown = { day, downtimes, at: now() };
      wanted = day.date;
      render();
    } catch (e) {
      if (mine !== loading) return;
      if (e instanceof KeyNeeded) askForKey(e.message);
      else showBanner(`The ledger could not be read: ${e.message}`);
    }
  }

  // ----------------------------------------------------------------------------- render
  function render() {
    const { day, downtimes } = shown;
    const hm = plantClock(day.timezone);
    const today = localDate(now(), day.timezone);
    history.replaceState(null, "", `/ledger?date=${day.date}`);
    $("date").value = day.date;
    $("next").disabled = day.date >= today;
    $("today").disabled = day.date === today;
    for (const [id, lang, suffix] of [["csv-en", "en", ""], ["csv-zh", "zh-CN", "-zh-CN"]]) {
      $(id).href = `/api/v1/ledger/daily?date=${day.date}&format=csv&lang=${lang}`;
      $(id).setAttribute("download", `ledger-${day.date}${suffix}.csv`);
    }
    $("day").replaceChildren(longDate(day.date), " ",
      el("span", { class: "tz" }, `plant time ${day.timezone}${offsetOf(day.timezone)}`));
    const t = shown.at;
    const first = day.shifts[0], last = day.shifts[day.shifts.length - 1];
    $("asof").textContent = !first ? "No shifts on this day: nothing was planned."
      : t < Date.parse(first.start) ? "This day has not started yet."
        : t < Date.parse(last.end) ? `Day in progress: figures up to ${hm(t)}, refreshed every minute.`
          : "Complete day.";
    document.title = `${$("box").textContent} · ledger ${day.date}`;

    const names = new Map(day.totals.map((r) => [r.machine, r.name || r.machine]));
    $("shifts").replaceChildren(...day.shifts.map((s) => {
      const items = day.items.filter((r) => r.shift === s.name);
      const started = t >= Date.parse(s.start), over = t >= Date.parse(s.end);
      const sec = el("section", { class: `shift${started ? "" : " future"}`, "data-shift": s.name },
        el("h3", {}, `${capital(s.name)} shift`,
          el("span", { class: "span" }, ` ${hm(Date.parse(s.start))}–${hm(Date.parse(s.end))}` +
            ` · planned ${fmtHm(s.planned_s)}`),
          el("span", { class: "when" }, !started ? "not started" : over ? ""
            : `in progress, up to ${hm(t)}`)),
        items.length ? table(items, names) : el("p", { class: "none" }, "No machine has production rules."));
      return sec;
    }));
    $("totals").hidden = !day.totals.length;
    $("totals").replaceChildren(el("h3", {}, "Day totals",
      el("span", { class: "span" }, first ? ` ${hm(Date.parse(first.start))}–${hm(Date.parse(last.end))}` +
        (localDate(Date.parse(last.end), day.timezone) > day.date ? " next day" : "") : "")),
    table(day.totals, names));
    renderDowntimes(day, downtimes, names, hm);
  }

  function table(items, names) {
    const groups = [];
    for (const [, , , g] of COLUMNS) {
      if (groups.length && groups[groups.length - 1][0] === g) groups[groups.length - 1][1] += 1;
      else groups.push([g, 1]);
    }
    const head = el("thead", {},
      el("tr", { class: "groups" }, el("th", { rowspan: "2", class: "machine" }, "Machine"),
        ...groups.map(([g, n]) => el("th", { colspan: String(n), class: `g-${g}` }, GROUPS[g]))),
      el("tr", {}, ...COLUMNS.map(([key, label, , g]) =>
        el("th", { class: `g-${g}`, "data-key": key }, label))));
    const body = el("tbody", {}, ...items.map((row) => el("tr", { "data-machine": row.machine },
      el("th", { scope: "row", class: "machine" }, names.get(row.machine) || row.machine),
      ...COLUMNS.map(([key, , kind, g]) => {
        const v = row[key];
        const td = el("td", { class: `${kind} g-${g}`, "data-key": key,
          "data-value": v === null ? "" : String(v) }, format(v, kind));
        if (kind === "hm" && v) td.title = exact(v);
        return td;
      }))));
    return el("table", { class: "figures" }, head, body);
  }

  function format(v, kind) {
    if (v === null || v === undefined) return "—";
    if (kind === "hm") return fmtHm(v);
    if (kind === "pct") return fmtPct(v);
    if (kind === "kwh") return v.toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
    return fmtInt(v);
  }

  function exact(s) {
    const whole = Math.round(s);
    const h = Math.floor(whole / 3600), m = Math.floor((whole % 3600) / 60), sec = whole % 60;
    return `${h} h ${m} min ${sec} s`;
  }

  // -------------------------------------------------------------------------- downtimes
  function renderDowntimes(day, downtimes, names, hm) {
    const list = $("downtime-list");
    $("downtimes").hidden = !downtimes.size;
    const keep = new Map(); // rows being edited stay as they are
    for (const [id, rec] of rows) if (rec.dirty || rec.el.contains(document.activeElement)) keep.set(id, rec);
    rows.clear();
    list.replaceChildren(...[...downtimes].map(([machine, answer]) => {
      const items = answer.items || [];
      const sec = el("section", { class: "machine-downtimes", "data-machine": machine },
        el("h4", {}, names.get(machine) || machine, el("span", { class: "count" },
          answer.error ? ` · ${answer.error}`
            : ` · ${plural(items.length, "downtime")} · ${plural(answer.micro_stops || 0, "micro-stop")}`)));
      if (!items.length) {
        if (!answer.error) sec.append(el("p", { class: "none" }, "No downtimes."));
        return sec;
      }
      const body = el("tbody", {});
      for (const d of items) {
        const rec = keep.get(d.id) || downtimeRow(d, answer.reasons, day, hm);
        if (keep.has(d.id)) fill(rec, d, day, hm);
        rows.set(d.id, rec);
        body.append(rec.el);
      }
      const heads = [["from", "From"], ["to", "To"], ["duration", "Duration"], ["states", "States"],
        ["reason-cell", "Reason"], ["comment-cell", "Comment"], ["save-cell", ""]];
      sec.append(el("table", { class: "downtimes-table" },
        el("colgroup", {}, ...heads.map(([cls]) => el("col", { class: cls }))),
        el("thead", {}, el("tr", {}, ...heads.map(([cls, h]) => el("th", { class: cls }, h)))), body));
      return sec;
    }));
  }

  function downtimeRow(d, reasons, day, hm) {
    const select = el("select", { "aria-label": "reason", class: "reason" },
      el("option", { value: "" }, "— no reason —"),
      ...reasons.map((r) => el("option", { value: r.code },
        r.planned ? `${r.label} (planned)` : r.label)));
    if (d.reason && !reasons.some((r) => r.code === d.reason)) {  // a reason since removed from the config
      select.append(el("option", { value: d.reason }, d.reason_label || d.reason));
    }
    const comment = el("input", { type: "text", class: "comment", maxlength: "2000",
      placeholder: "comment", "aria-label": "comment" });
    const save = el("button", { type: "button", class: "save" }, "Save");
    const status = el("span", { class: "feedback", role: "status" });
    const printed = el("span", { class: "print-only" });
    const printedComment = el("span", { class: "print-only" });
    const cells = { from: el("td", { class: "from" }), to: el("td", { class: "to" }),
      duration: el("td", { class: "duration" }), states: el("td", { class: "states" }) };
    const row = el("tr", { "data-downtime": d.id },
      cells.from, cells.to, cells.duration, cells.states,
      el("td", { class: "reason-cell" }, select, printed),
      el("td", { class: "comment-cell" }, comment, printedComment),
      el("td", { class: "save-cell" }, save, status));
    const rec = { el: row, d, select, comment, save, status, cells, printed, printedComment,
      dirty: false };
    const touched = () => {
      rec.dirty = select.value !== (rec.d.reason || "") || comment.value !== (rec.d.comment || "");
      row.classList.toggle("dirty", rec.dirty);
    };
    select.addEventListener("change", touched);
    comment.addEventListener("input", touched);
    comment.addEventListener("keydown", (ev) => { if (ev.key === "Enter") saveReason(rec); });
    save.addEventListener("click", () => saveReason(rec));
    fill(rec, d, day, hm);
    showFeedback(rec);
    return rec;
  }

  // the row shows the stored downtime `d`; a reason or comment being edited stays as typed
  function fill(rec, d, day, hm) {
    rec.d = d;
    if (!rec.dirty) {
      rec.select.value = d.reason || "";
      rec.comment.value = d.comment || "";
    }
    rec.printed.textContent = d.reason_label || d.reason || "";
    rec.printedComment.textContent = d.comment || "";
    const when = (iso) => {
      const t = Date.parse(iso);
      const date = localDate(t, day.timezone);
      return date === day.date ? hm(t) : `${shortDate(date)} ${hm(t)}`;
    };
    rec.cells.from.textContent = when(d.start);
    rec.cells.to.textContent = d.ongoing ? "ongoing" : when(d.end);
    rec.cells.duration.textContent = fmtDuration(d.duration_s);
    rec.cells.duration.title = `${fmtHm(d.duration_s)} (h:mm)`;
    rec.cells.states.textContent = d.states.join(", ");
    rec.el.classList.toggle("planned", Boolean(d.planned));
    rec.el.classList.toggle("ongoing", Boolean(d.ongoing));
  }

  async function saveReason(rec) {
    const body = { reason: rec.select.value || null, comment: rec.comment.value.trim() || null };
    rec.save.disabled = true;
    feedback.set(rec.d.id, { kind: "busy", text: "saving…" });
    showFeedback(rec);
    try {
      const r = await call(`/api/v1/downtimes/${encodeURIComponent(rec.d.id)}`, {
        method: "PATCH", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      const saved = await r.json();
      rec.dirty = false;
      fill(rec, saved, shown.day, plantClock(shown.day.timezone));
      rec.el.classList.remove("dirty");
      feedback.set(rec.d.id, { kind: "ok", text: `Saved ${plantClock(shown.day.timezone)(now())}` });
      showFeedback(rec);
      load(); // a planned reason changes planned time and availability
    } catch (e) {
      const why = e instanceof KeyNeeded ? `${e.message}: enter a supervisor's key (Key button)`
        : e.message; // the API's own words: unknown reason, no write key, no such downtime
      feedback.set(rec.d.id, { kind: "error", text: `Not saved: ${why}` });
      showFeedback(rec);
      if (e instanceof KeyNeeded) askForKey(e.message);
    } finally {
      rec.save.disabled = false;
    }
  }

  function showFeedback(rec) {
    const f = feedback.get(rec.d.id);
    rec.status.textContent = f ? f.text : "";
    rec.status.dataset.kind = f ? f.kind : "";
  }

  // ------------------------------------------------------------------------ downloads
  async function download(ev) {
    if (!apiKey) return; // a plain link does it; with a key the request needs the header
    ev.preventDefault();
    const a = ev.currentTarget;
    try {
      const blob = await (await call(a.href, { headers: { Accept: "text/csv" } })).blob();
      const url = URL.createObjectURL(blob);
      const link = el("a", { href: url, download: a.getAttribute("download") });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10e3);
    } catch (e) {
      if (e instanceof KeyNeeded) askForKey(e.message);
      else showBanner(`The CSV could not be downloaded: ${e.message}`);
    }
  }

  // ---------------------------------------------------------------------- the controls
  function go(date) {
    if (!/^\d{4}-\d{2}-\d{2}$/.test(date)) return;
    wanted = date;
    rows.clear();
    load();
  }

  $("prev").addEventListener("click", () => go(addDays($("date").value, -1)));
  $("next").addEventListener("click", () => go(addDays($("date").value, 1)));
  $("today").addEventListener("click", () => go(shown ? localDate(now(), shown.day.timezone) : ""));
  $("date").addEventListener("change", () => go($("date").value));
  $("datebar").addEventListener("submit", (ev) => ev.preventDefault());
  $("print").addEventListener("click", () => window.print());
  $("csv-en").addEventListener("click", download);
  $("csv-zh").addEventListener("click", download);

  function askForKey(problem) {
    $("keyform").hidden = false;
    const err = $("keyerror");
    err.hidden = !problem;
    err.textContent = problem ? `${problem}; check it with whoever set up this collector.` : "";
    $("keyinput").focus();
  }

  $("keyform").addEventListener("submit", (ev) => {
    ev.preventDefault();
    apiKey = $("keyinput").value.trim();
    if (apiKey) localStorage.setItem(KEY_STORE, apiKey); else localStorage.removeItem(KEY_STORE);
    $("keyinput").value = "";
    $("keyform").hidden = true;
    load();
  });
  $("keybtn").addEventListener("click", () => {
    $("keyform").hidden = !$("keyform").hidden;
    if (!$("keyform").hidden) { $("keyerror").hidden = true; $("keyinput").focus(); }
  });

  function showBanner(text) {
    $("banner").hidden = !text;
    if (text) $("banner").textContent = text;
  }

  // ------------------------------------------------------------------------------ helpers
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    node.append(...children);
    return node;
  }

  function localDate(t, tz) {  // YYYY-MM-DD in the plant's time zone
    return new Intl.DateTimeFormat("en-CA", { timeZone: tz, year: "numeric", month: "2-digit",
      day: "2-digit" }).format(new Date(t));
  }

  function addDays(iso, n) {
    const d = new Date(`${iso}T12:00:00Z`);
    d.setUTCDate(d.getUTCDate() + n);
    return d.toISOString().slice(0, 10);
  }

  function longDate(iso) {
    return new Date(`${iso}T12:00:00Z`).toLocaleDateString("en-GB", { timeZone: "UTC",
      weekday: "long", day: "numeric", month: "long", year: "numeric" });
  }

  function shortDate(iso) {
    return new Date(`${iso}T12:00:00Z`).toLocaleDateString("en-GB", { timeZone: "UTC",
      day: "numeric", month: "short" });
  }

  function offsetOf(tz) {  // " (GMT+8)" for the heading, when the browser knows it
    try {
      const part = new Intl.DateTimeFormat("en-GB", { timeZone: tz, timeZoneName: "shortOffset" })
        .formatToParts(new Date(now())).find((p) => p.type === "timeZoneName");
      return part && part.value !== tz ? ` (${part.value})` : "";
    } catch (_) {
      return "";
    }
  }

  function capital(s) { return s ? s[0].toUpperCase() + s.slice(1) : s; }

  function plural(n, word) { return `${fmtInt(n)} ${word}${n === 1 ? "" : "s"}`; }

  load();
  setInterval(() => {
    if (!shown || document.hidden) return;
    const day = shown.day;
    const last = day.shifts[day.shifts.length - 1];
    if (last && now() < Date.parse(last.end) + REFRESH_MS) load(); // a day still running
  }, REFRESH_MS);
})();
