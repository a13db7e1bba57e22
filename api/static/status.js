// Status page: polls the collector's REST API and keeps one card per machine up to date.
// Plain JS and SVG, no libraries, nothing from the internet. Every value is put into the page
// with textContent, never as HTML.
"use strict";
(() => {
  const REFRESH_MS = 2000;        // health, machines, latest values
  const HOUR_MS = 3600e3;
  // bucket sizes by how much history there is: a fresh collector gets a useful line too
  const TIERS = [[3 * 60e3, "2s", 2e3, 5000], [20 * 60e3, "10s", 10e3, 10000],
    [Infinity, "1m", 60e3, 30000]]; // [history shorter than, bucket, bucket ms, refresh ms]
  const MIN_SPAN_MS = 30e3;
  const PRODUCTION_MS = 30e3;     // the day's ledger: parts and the shift's OEE, all machines
  const TIMELINE_MS = 60e3;       // one machine's states of the last hours
  const TIMELINE_SPAN_MS = 8 * HOUR_MS;
  const KEY_STORE = "collector.apiKey";
  const { sparkline, fmtNumber, fmtInt, fmtSeconds, fmtAge, clock, fmtPct, fmtDuration,
    plantClock, stateBar } = window.StatusDraw;

  const $ = (id) => document.getElementById(id);
  let apiKey = localStorage.getItem(KEY_STORE) || "";
  let skew = 0;          // server clock minus this browser's clock (ms), when they disagree
  let lastUpdate = 0;    // when the page last had a full answer
  let refreshing = false;
  const cards = new Map();   // machine id -> card state
  const sparks = new Map();  // machine id -> {at, every, t0, t1, byTag}
  const historyStart = new Map(); // machine id -> start of its oldest bucket seen (ms)
  let today = null;               // {at, day, shift, totals, rows, hm} from the daily ledger
  const timelines = new Map();    // machine id -> {at, items} of /states
  let producing = false;

  class KeyNeeded extends Error {}

  // ---------------------------------------------------------------------------------- API
  async function get(path, auth = true) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), 8000);
    const headers = { Accept: "application/json" };
    if (auth && apiKey) headers["X-API-Key"] = apiKey;
    try {
      const r = await fetch(path, { headers, signal: ctl.signal, cache: "no-store" });
      if (r.status === 401) throw new KeyNeeded(apiKey ? "the API refused this key" : "");
      if (!r.ok) {
        let detail = `${r.status} ${r.statusText}`;
        try { detail = (await r.json()).detail || detail; } catch (_) { /* not JSON */ }
        throw new Error(detail);
      }
      noteServerTime(r.headers.get("Date"));
      return await r.json();
    } catch (e) {
      if (e.name === "AbortError") throw new Error("no answer within 8 s");
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  function noteServerTime(header) {
    const at = Date.parse(header || "");
    if (isNaN(at)) return;
    const estimate = at + 500 - Date.now(); // the header has whole seconds
    skew = Math.abs(estimate) > 2500 ? estimate : 0;
  }
  const now = () => Date.now() + skew;

  // ------------------------------------------------------------------------------ refresh
  async function refresh() {
    if (refreshing) return;
    refreshing = true;
    try {
      let health;
      try {
        health = await get("/api/v1/health", false);
      } catch (e) {
        showBanner(`The collector does not answer (${e.message}). ` +
          (lastUpdate ? `Values below are from ${clock(lastUpdate)}.` : "Retrying…"));
        document.body.classList.add("stale");
        return;
      }
      let machines = null, tags = null;
      try {
        [machines, tags] = await Promise.all([get("/api/v1/machines"), get("/api/v1/tags")]);
        $("keyform").hidden = true;
      } catch (e) {
        if (!(e instanceof KeyNeeded)) throw e;
        askForKey(e.message);
      }
      showBanner(null);
      document.body.classList.remove("stale");
      render(health, machines, tags);
      lastUpdate = Date.now();
      if (machines) {
        loadProduction(machines.items).catch(() => { /* next round */ });
        loadSparklines(machines.items).catch(() => { /* next round */ });
      }
    } catch (e) {
      showBanner(`The collector answered with an error: ${e.message}`);
    } finally {
      refreshing = false;
      tick();
    }
  }

  function showBanner(text) {
    const el = $("banner");
    el.hidden = !text;
    if (text) el.textContent = text;
  }

  // ---------------------------------------------------------------------------- API keys
  function askForKey(problem) {
    $("keyform").hidden = false;
    $("keybtn").hidden = false;
    const err = $("keyerror");
    err.hidden = !problem;
    err.textContent = problem ? `${problem}; check it with whoever set up this collector.` : "";
  }

  $("keyform").addEventListener("submit", (ev) => {
    ev.preventDefault();
    apiKey = $("keyinput").value.trim();
    if (apiKey) localStorage.setItem(KEY_STORE, apiKey); else localStorage.removeItem(KEY_STORE);
    $("keyinput").value = "";
    $("keyform").hidden = true;
    refresh();
  });
  $("keybtn").addEventListener("click", () => { $("keyform").hidden = !$("keyform").hidden; });
  if (apiKey) $("keybtn").hidden = false;

  // ------------------------------------------------------------------------------ render
  function render(health, machines, tags) {
    const sourcesOf = groupBy(health.sources.filter((s) => s.enabled !== false), (s) => s.machine);
    const order = [...sourcesOf.keys()];
    const rank = (id) => (order.includes(id) ? order.indexOf(id) : order.length);
    const list = machines ? machines.items.slice().sort((a, b) => rank(a.id) - rank(b.id))
      : order.map((id) => ({ id, name: id, tags: [] }));
    const tagsOf = groupBy(tags ? tags.items : [], (t) => t.machine);
    const counts = { ok: 0, partial: 0, nodata: 0, unknown: 0 };
    const grid = $("machines");
    $("empty").hidden = list.length > 0;
    if (!list.length) $("empty").textContent = "No machines are configured on this collector.";
    const seen = new Set();
    list.forEach((m, i) => {
      const card = cards.get(m.id) || makeCard(m.id);
      const status = machineStatus(sourcesOf.get(m.id) || []);
      counts[status.kind] += 1;
      updateCard(card, m, status, sourcesOf.get(m.id) || [], tagsOf.get(m.id) || []);
      if (grid.children[i + 1] !== card.el) grid.insertBefore(card.el, grid.children[i + 1] || null);
      seen.add(m.id);
    });
    for (const [id, card] of cards) {
      if (!seen.has(id)) { card.el.remove(); cards.delete(id); }
    }
    renderSummary(list.length, counts, health.ledger);
  }

  function machineStatus(sources) {
    const delivering = sources.filter((s) => s.connected && s.last_ok).length;
    if (!sources.length) return { kind: "unknown", label: "not read here" };
    if (delivering === 0) return { kind: "nodata", label: "no data" };
    if (delivering < sources.length) {
      const down = sources.length - delivering;
      return { kind: "partial", label: `${down} of ${sources.length} sources down` };
    }
    // every source delivers, but a tag that never reads or stopped updating is not fine
    const problems = sources.flatMap((s) => s.tag_problems || []);
    if (!problems.length) return { kind: "ok", label: "delivering" };
    const bad = problems.filter((p) => p.problem === "bad").length;
    const stale = problems.length - bad;
    const words = [];
    if (bad) words.push(`${bad} ${bad === 1 ? "tag" : "tags"} bad`);
    if (stale) words.push(bad ? `${stale} stale` : `${stale} ${stale === 1 ? "tag" : "tags"} stale`);
    return { kind: "partial", label: words.join(", "),
      title: problems.map((p) => `${p.tag} ${p.problem}: ${p.reason}`).join("\n") };
  }

  function renderSummary(total, counts, ledger) {
    const box = $("summary");
    box.replaceChildren(
      chip(null, total, total === 1 ? "machine" : "machines"),
      chip("ok", counts.ok, "delivering"),
      chip("partial", counts.partial, "need attention"),
      chip("nodata", counts.nodata, "no data"));
    const el = $("ledger");
    const bad = !ledger.ok || ledger.dropped > 0;
    el.classList.toggle("bad", bad);
    el.textContent = ledger.ok
      ? `ledger ok${ledger.backlog ? ` · ${fmtInt(ledger.backlog)} spooled` : ""}`
      : `ledger not writable · ${fmtInt(ledger.backlog)} readings spooled`;
    if (ledger.dropped) el.textContent += ` · ${fmtInt(ledger.dropped)} dropped`;
    el.title = ledger.last_error || "";
  }

  function chip(kind, n, text) {
    const el = document.createElement("span");
    el.className = "chip";
    if (kind) el.dataset.kind = kind;
    if (kind) el.append(span(`dot ${kind}`));
    el.append(span("", String(n), "b"), document.createTextNode(text));
    return el;
  }

  function makeCard(id) {
    const el = $("card-template").content.firstElementChild.cloneNode(true);
    el.dataset.machine = id;
    const section = el.querySelector(".production");
    const kpi = (name) => {
      const box = div(`kpi ${name}`);
      const k = span("k"), v = span("v", "—", "b"), sub = span("sub");
      box.append(k, v, sub);
      section.querySelector(".kpis").append(box);
      return { k, v, sub };
    };
    const parts = kpi("parts"), oee = kpi("oee");
    parts.k.textContent = "Parts today";
    const timeline = section.querySelector(".timeline");
    const head = div("timeline-head");
    const bar = div("timeline-bar"), axis = div("axis");
    timeline.append(head, bar, axis);
    const card = { el, sections: new Map(), prod: { section, parts, oee, head, bar, axis } };
    cards.set(id, card);
    return card;
  }

  function updateCard(card, m, status, sources, tags) {
    const el = card.el;
    el.dataset.status = status.kind;
    el.querySelector(".name").textContent = m.name || m.id;
    const where = el.querySelector(".where");
    const parts = [m.name && m.name !== m.id ? span("id", m.id) : null, m.area, m.line]
      .filter(Boolean);
    where.replaceChildren(...parts.flatMap((p, i) => (i ? [" · ", p] : [p])));
    el.querySelector(".status").textContent = status.label;
    el.querySelector(".status").title = status.title || "";
    const state = el.querySelector(".state");
    state.hidden = !m.state;
    if (m.state) { state.textContent = m.state; state.dataset.state = m.state; }
    updateProduction(card, m);
    // group the tags under their source, in the order the health lists the sources
    const bySource = groupBy(tags, (t) => t.source || "");
    const order = sources.map((s) => s.source);
    for (const key of bySource.keys()) if (!order.includes(key)) order.push(key);
    const holder = el.querySelector(".sources");
    const seen = new Set();
    order.forEach((sid, i) => {
      let sec = card.sections.get(sid);
      if (!sec) { sec = makeSection(sid); card.sections.set(sid, sec); }
      updateSection(sec, sources.find((s) => s.source === sid), bySource.get(sid) || [], m.id);
      if (holder.children[i] !== sec.el) holder.insertBefore(sec.el, holder.children[i] || null);
      seen.add(sid);
    });
    for (const [sid, sec] of card.sections) {
      if (!seen.has(sid)) { sec.el.remove(); card.sections.delete(sid); }
    }
  }

  function makeSection(sid) {
    const el = document.createElement("section");
    el.className = "source";
    el.dataset.source = sid;
    const head = div("source-head");
    head.append(span("dot"), span("sid", sid || "other"), span("proto"), span("conn"), span("facts"));
    const error = div("source-error");
    error.hidden = true;
    const tags = div("tags");
    el.append(head, error, tags);
    return { el, head, error, tags, rows: new Map() };
  }

  function updateSection(sec, health, tags, machine) {
    const h = sec.head;
    if (health) {
      const delivering = health.connected && health.last_ok;
      sec.el.dataset.connected = String(Boolean(health.connected));
      h.querySelector(".dot").className = `dot ${delivering ? "ok" : "nodata"}`;
      h.querySelector(".proto").textContent = health.protocol;
      h.querySelector(".conn").textContent = health.connected
        ? (health.last_ok ? "connected" : "connected, no data yet") : "not connected";
      const facts = [];
      if (health.connected && health.scan_time) facts.push(`scan ${fmtSeconds(health.scan_time)}`);
      if (health.last_ok) facts.push(span("", "", "span", { ts: health.last_ok, prefix: "data ", suffix: " ago" }));
      if (health.errors) facts.push(plural(health.errors, "error"));
      if (health.restarts) facts.push(plural(health.restarts, "restart"));
      const f = h.querySelector(".facts");
      f.replaceChildren();
      facts.forEach((x, i) => { if (i) f.append(" · "); f.append(x); });
      const err = sec.error;
      err.hidden = !health.last_error;
      if (health.last_error) {
        const old = health.connected && health.last_ok &&
          (!health.last_error_at || Date.parse(health.last_error_at) < Date.parse(health.last_ok));
        err.classList.toggle("old", Boolean(old));
        err.replaceChildren(old ? "last error " : "error ");
        if (health.last_error_at) err.append(span("", "", "span", { ts: health.last_error_at, suffix: " ago" }));
        err.append(`: ${health.last_error}`);
      }
    } else {
      sec.el.dataset.connected = "unknown";
      h.querySelector(".proto").textContent = tags[0] && tags[0].protocol || "";
      h.querySelector(".conn").textContent = "not read by this collector";
    }
    const problems = new Map(((health && health.tag_problems) || []).map((p) => [p.tag, p]));
    const seen = new Set();
    tags.forEach((t, i) => {
      let row = sec.rows.get(t.tag);
      if (!row) { row = makeRow(t.tag); sec.rows.set(t.tag, row); }
      updateRow(row, t, machine, problems.get(t.tag));
      if (sec.tags.children[i] !== row.el) sec.tags.insertBefore(row.el, sec.tags.children[i] || null);
      seen.add(t.tag);
    });
    for (const [name, row] of sec.rows) {
      if (!seen.has(name)) { row.el.remove(); sec.rows.delete(name); }
    }
  }

  function makeRow(tag) {
    const el = div("tag");
    el.dataset.tag = tag;
    const name = span("tname");
    // long names may wrap, but only after an underscore
    tag.split("_").forEach((part, i, all) => {
      name.append(i < all.length - 1 ? `${part}_` : part);
      if (i < all.length - 1) name.append(document.createElement("wbr"));
    });
    const val = span("val");
    const v = span("v"), u = span("u");
    val.append(v, u);
    const q = span("q"), age = span("age"), spark = span("spark");
    const why = div("why");  // why a tag is bad or stale, in the source's words
    why.hidden = true;
    el.append(name, val, q, age, spark, why);
    return { el, name, v, u, q, age, spark, why };
  }

  function updateRow(row, t, machine, problem) {
    const last = t.latest;
    row.kind = t.kind;
    if (problem) row.el.dataset.problem = problem.problem; else delete row.el.dataset.problem;
    row.why.hidden = !problem;
    row.why.textContent = problem ? `${problem.problem}: ${problem.reason}` : "";
    row.name.title = t.description ? `${t.tag}: ${t.description}` : t.tag;
    row.u.textContent = t.unit || "";
    row.el.dataset.quality = last ? last.quality : "none";
    row.q.textContent = last ? last.quality : "";
    const v = row.v;
    v.className = "v";
    if (!last) { v.textContent = "no reading yet"; v.classList.add("none", "text"); }
    else if (last.value === null) { v.textContent = "—"; v.classList.add("none"); }
    else if (typeof last.value === "boolean") {
      v.textContent = last.value ? "true" : "false";
      v.classList.add("bool");
      v.classList.toggle("on", last.value);
    } else if (typeof last.value === "number") { v.textContent = fmtNumber(last.value); }
    else { v.textContent = String(last.value); v.classList.add("text"); v.title = String(last.value); }
    row.age.dataset.ts = last ? last.ts : "";
    const s = sparks.get(machine);
    const key = s && `${s.t1}`;
    if (s && row.sparkKey !== key) {
      row.sparkKey = key;
      row.spark.replaceChildren(sparkline(s.byTag.get(t.tag) || [], s, t.kind));
    }
  }

  // -------------------------------------------------------------------------- production
  // Only machines with production rules have a state; one daily-ledger call serves them all,
  // one /states call per machine a minute draws the bar, and the bar's end follows the state.
  async function loadProduction(machines) {
    const ruled = machines.filter((m) => m.state);
    if (producing || !ruled.length) return;
    producing = true;
    try {
      if (!today || Date.now() - today.at >= PRODUCTION_MS) {
        try {
          today = await loadToday();
        } catch (e) {
          if (e instanceof KeyNeeded) throw e;
          today = { at: Date.now(), error: e.message };
        }
      }
      for (const m of ruled) {
        const seen = timelines.get(m.id);
        if (seen && Date.now() - seen.at < TIMELINE_MS) continue;
        const t1 = now();
        const q = new URLSearchParams({ start: String(Math.floor(t1 - TIMELINE_SPAN_MS)),
          end: String(Math.ceil(t1)) });
        try {
          const got = await get(`/api/v1/machines/${encodeURIComponent(m.id)}/states?${q}`);
          timelines.set(m.id, { at: Date.now(), items: got.items });
        } catch (e) {
          if (e instanceof KeyNeeded) throw e;
          timelines.set(m.id, { at: Date.now(), items: [], error: e.message });
        }
      }
    } finally {
      producing = false;
    }
    for (const m of ruled) {
      const card = cards.get(m.id);
      if (card) updateProduction(card, m);
    }
  }

  // The production day now: the ledger date whose shift runs now (a night shift that began
  // yesterday belongs to yesterday, as in the ledger), its totals and the current shift's rows.
  async function loadToday() {
    const t = now();
    const inside = (s) => Date.parse(s.start) <= t && t < Date.parse(s.end);
    let day = await get("/api/v1/ledger/daily");
    if (!day.shifts.some(inside) && day.shifts.length && t < Date.parse(day.shifts[0].start)) {
      const before = await get(`/api/v1/ledger/daily?date=${previousDate(day.date)}`);
      if (before.shifts.some(inside)) day = before;
    }
    const shift = day.shifts.find(inside) || null;
    return {
      at: Date.now(), day, shift, hm: plantClock(day.timezone),
      totals: new Map(day.totals.map((r) => [r.machine, r])),
      rows: new Map(shift ? day.items.filter((r) => r.shift === shift.name)
        .map((r) => [r.machine, r]) : []),
    };
  }

  function previousDate(iso) {
    const d = new Date(`${iso}T12:00:00Z`);
    d.setUTCDate(d.getUTCDate() - 1);
    return d.toISOString().slice(0, 10);
  }

  function updateProduction(card, m) {
    const p = card.prod;
    p.section.hidden = !m.state;
    if (!m.state) return;
    const day = today && !today.error ? today : null;
    const total = day && day.totals.get(m.id);
    const row = day && day.rows.get(m.id);
    p.parts.v.textContent = total ? fmtInt(total.total) : "—";
    p.parts.sub.textContent = !total ? (today && today.error ? today.error : "")
      : [`this shift ${row ? fmtInt(row.total) : "—"}`,
        total.reject ? `${fmtInt(total.reject)} rejects today` : null].filter(Boolean).join(" · ");
    p.parts.k.title = day ? `production day ${day.day.date} (plant time ${day.day.timezone})` : "";
    p.oee.k.textContent = day && day.shift ? `OEE ${day.shift.name} shift` : "OEE";
    p.oee.v.textContent = row ? fmtPct(row.oee) : "—";
    p.oee.sub.textContent = row
      ? `availability ${pct(row.availability)} · performance ${pct(row.performance)} · quality ${pct(row.quality)}`
      : (day && !day.shift ? "no shift now" : "");
    drawTimeline(p, m, day ? day.hm : plantClock());
  }

  function pct(r) { return r === null ? "—" : `${Math.round(r * 100)}%`; }

  function drawTimeline(p, m, hm) {
    const seen = timelines.get(m.id);
    if (!seen) return;
    const t1 = now(), t0 = t1 - TIMELINE_SPAN_MS;
    // the bar runs on to now in the state /machines reports, until the next /states answer
    const items = seen.items.map((it) => ({ ...it }));
    const last = items[items.length - 1];
    if (last && last.state === m.state) last.end = new Date(t1).toISOString();
    else if (last) items.push({ state: m.state, start: last.end, end: new Date(t1).toISOString() });
    p.bar.replaceChildren(stateBar(items, t0, t1, hm));
    const current = items[items.length - 1];
    const head = [span("", `last ${Math.round(TIMELINE_SPAN_MS / HOUR_MS)} h`)];
    if (current) {
      const since = Math.max(t0, Date.parse(current.start));
      head.push(" · ", span("now", `${current.state} ${Date.parse(current.start) <= t0
        ? `all ${Math.round(TIMELINE_SPAN_MS / HOUR_MS)} h` : `since ${hm(since)} (${fmtDuration((t1 - since) / 1000)})`}`));
    }
    if (seen.error) head.push(" · ", span("error", seen.error));
    p.head.replaceChildren(...head);
    // ticks on the whole hours, every two, in plant time
    const ticks = [];
    for (let t = Math.ceil(t0 / (2 * HOUR_MS)) * 2 * HOUR_MS; t < t1 - 0.6 * HOUR_MS; t += 2 * HOUR_MS) {
      const tick = span("tick", hm(t));
      tick.style.left = `${((t - t0) / (t1 - t0)) * 100}%`;
      ticks.push(tick);
    }
    const end = span("tick now", "now");
    end.style.left = "100%";
    p.axis.replaceChildren(...ticks, end);
  }

  // -------------------------------------------------------------------------- sparklines
  async function loadSparklines(machines) {
    for (const m of machines) {
      const s = sparks.get(m.id);
      if (s && Date.now() - s.at < s.every) continue;
      await loadSparkline(m.id);
      const card = cards.get(m.id);
      if (card) for (const sec of card.sections.values()) {
        for (const [tag, row] of sec.rows) {
          const fresh = sparks.get(m.id);
          row.sparkKey = `${fresh.t1}`;
          row.spark.replaceChildren(sparkline(fresh.byTag.get(tag) || [], fresh, row.kind));
        }
      }
    }
  }

  async function loadSparkline(machine) {
    const t1 = now();
    const tier = (from) => TIERS.find(([upto]) => from !== undefined && t1 - from < upto) || TIERS[2];
    const range = (from) => Math.max(t1 - HOUR_MS, from === undefined ? 0 : from - tier(from)[2]);
    let first = historyStart.get(machine);
    let items = await aggregate(machine, range(first), t1, tier(first)[1]);
    const oldest = Math.min(...items.map((b) => Date.parse(b.start)));
    if (isFinite(oldest) && (first === undefined || oldest < first)) {
      const before = tier(first);
      first = oldest;
      historyStart.set(machine, first);
      if (tier(first) !== before) items = await aggregate(machine, range(first), t1, tier(first)[1]);
    }
    const [, , bucketMs, slow] = tier(first);
    const every = first === undefined ? 4000 : slow; // nothing stored yet: look again soon
    // the line spans the history there is, up to an hour, so a young one is readable too
    const t0 = Math.min(t1 - MIN_SPAN_MS, Math.max(t1 - HOUR_MS, first === undefined ? t1 : first));
    sparks.set(machine, { at: Date.now(), every, t0, t1, bucketMs,
      byTag: groupBy(items, (b) => b.tag) });
  }

  async function aggregate(machine, start, end, bucket) {
    const q = new URLSearchParams({ machine, start: String(Math.floor(start)),
      end: String(Math.ceil(end)), bucket });
    return (await get(`/api/v1/readings/aggregate?${q}`)).items;
  }

  // ----------------------------------------------------------------------- clock and ages
  function tick() {
    const t = now();
    $("clock").textContent = clock(t);
    const upd = $("updated");
    const since = lastUpdate ? Date.now() - lastUpdate : null;
    upd.textContent = since === null ? "connecting…" : `updated ${fmtAge(since)} ago`;
    upd.classList.toggle("stale", since === null || since > 15000);
    for (const el of document.querySelectorAll(".age")) {
      const ts = Date.parse(el.dataset.ts || "");
      el.textContent = isNaN(ts) ? "" : fmtAge(t - ts);
      el.classList.toggle("old", !isNaN(ts) && t - ts > 5 * 60e3);
    }
    for (const el of document.querySelectorAll("[data-ts-prefix], [data-ts-suffix]")) {
      const ts = Date.parse(el.dataset.ts);
      el.textContent = `${el.dataset.tsPrefix || ""}${fmtAge(t - ts)}${el.dataset.tsSuffix || ""}`;
    }
  }

  // ------------------------------------------------------------------------------ helpers
  function groupBy(items, key) {
    const out = new Map();
    for (const item of items) {
      const k = key(item);
      if (!out.has(k)) out.set(k, []);
      out.get(k).push(item);
    }
    return out;
  }

  function span(cls, text, tag = "span", age = null) {
    const el = document.createElement(tag);
    if (cls) el.className = cls;
    if (text) el.textContent = text;
    if (age) {
      el.dataset.ts = age.ts;
      el.dataset.tsPrefix = age.prefix || "";
      el.dataset.tsSuffix = age.suffix || "";
      el.textContent = `${age.prefix || ""}${fmtAge(now() - Date.parse(age.ts))}${age.suffix || ""}`;
    }
    return el;
  }

  function div(cls) { return span(cls, "", "div"); }

  function plural(n, word) { return `${fmtInt(n)} ${word}${n === 1 ? "" : "s"}`; }

  refresh();
  setInterval(refresh, REFRESH_MS);
  setInterval(tick, 1000);
})();
