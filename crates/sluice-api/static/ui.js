// sluice dashboard: plain JavaScript, no library. Posts actions without leaving the page,
// keeps the bulk action bar in step with the checkboxes, and applies live updates from
// /ui/live (SSE, authenticated by the session cookie) to the channel rows.
"use strict";

function notice(text, error) {
  const n = document.getElementById("notice");
  if (!n) return;
  n.textContent = text;
  n.className = "notice " + (error ? "error" : "ok");
}

// Forms marked js-action post with fetch; the server answers {error, text}.
document.addEventListener("submit", async (ev) => {
  const form = ev.target;
  if (!form.classList || !form.classList.contains("js-action")) return;
  ev.preventDefault();
  const body = new URLSearchParams(new FormData(form));
  if (ev.submitter && ev.submitter.name) body.append(ev.submitter.name, ev.submitter.value);
  const buttons = form.querySelectorAll("button");
  buttons.forEach((b) => (b.disabled = true));
  try {
    // getAttribute: a control named "action" would shadow form.action.
    const response = await fetch(form.getAttribute("action"), {
      method: "POST",
      body,
      credentials: "same-origin",
      headers: { "X-Sluice-Fetch": "1" },
    });
    const type = response.headers.get("content-type") || "";
    if (!type.startsWith("application/json")) {
      // Not an answer for a script (the session ended): show what the server shows.
      window.location.reload();
      return;
    }
    const answer = await response.json();
    if (answer.go) {
      window.location.href = answer.go;
      return;
    }
    notice(answer.text, answer.error);
    await refreshParts();
  } catch (e) {
    notice("the server could not be reached: " + e, true);
  } finally {
    buttons.forEach((b) => (b.disabled = false));
    updateBulkBar();
  }
});

// Re-reads the page and swaps in its parts marked data-refresh (the rows a change touched),
// keeping the selected checkboxes; the page itself (and its live stream) stays.
// Live updates applied so far: a page read while one arrives may predate it, so it is read again.
let liveSeq = 0;

async function refreshParts() {
  const parts = document.querySelectorAll("[data-refresh][id]");
  if (parts.length === 0) return;
  let fresh = null;
  for (let attempt = 0; attempt < 5; attempt++) {
    const before = liveSeq;
    const response = await fetch(window.location.href, { credentials: "same-origin" });
    if (!response.ok) return;
    const text = await response.text();
    if (liveSeq === before) {
      fresh = new DOMParser().parseFromString(text, "text/html");
      break;
    }
  }
  if (!fresh) return;
  const checked = new Set(Array.from(document.querySelectorAll("input.sel:checked")).map((c) => c.value));
  parts.forEach((part) => {
    const next = fresh.getElementById(part.id);
    if (next) part.innerHTML = next.innerHTML;
  });
  document.querySelectorAll("input.sel").forEach((c) => (c.checked = checked.has(c.value)));
  relativeTimes();
}

function updateBulkBar() {
  const table = document.getElementById("channels");
  if (!table) return;
  const n = table.querySelectorAll("input.sel:checked").length;
  const count = document.getElementById("selected-count");
  if (count) count.textContent = n + " selected";
  document.querySelectorAll("button[data-bulk]").forEach((b) => (b.disabled = n === 0));
}

document.addEventListener("change", (ev) => {
  if (ev.target.id === "select-all") {
    document.querySelectorAll("#channels input.sel").forEach((c) => (c.checked = ev.target.checked));
  }
  updateBulkBar();
});

// Times are shown relative ("5 min ago"), the absolute time (UTC) on hover.
function relativeTimes() {
  const now = Date.now();
  document.querySelectorAll("td.t, .t[data-abs]").forEach((cell) => {
    const text = cell.textContent.trim();
    const abs = /^\d{4}-\d\d-\d\d[ T]\d\d:\d\d/.test(text) ? text : cell.dataset.abs;
    if (!abs) return;
    const at = Date.parse(abs.replace(" ", "T") + (/Z|[+-]\d\d:?\d\d$/.test(abs) ? "" : "Z"));
    if (isNaN(at)) return;
    cell.dataset.abs = abs;
    cell.title = abs + " UTC";
    const s = Math.round((now - at) / 1000);
    let rel;
    if (s < 45) rel = "just now";
    else if (s < 90 * 60) rel = Math.round(s / 60) + " min ago";
    else if (s < 36 * 3600) rel = Math.round(s / 3600) + " h ago";
    else rel = Math.round(s / 86400) + " days ago";
    cell.textContent = rel;
  });
}

function setField(row, field, text, state) {
  const cell = row.querySelector('[data-field="' + field + '"]');
  if (!cell) return;
  if (state) {
    cell.innerHTML = "";
    const span = document.createElement("span");
    span.className = "state s-" + text;
    span.textContent = text;
    cell.appendChild(span);
  } else {
    cell.textContent = text;
    if (cell.classList.contains("t")) relativeTimes();
  }
}

function rowOf(data) {
  return document.querySelector('#channels tr[data-key="' + CSS.escape(data.hub + "/" + data.channel) + '"]');
}

function changed(row) {
  liveSeq++;
  row.classList.remove("changed");
  void row.offsetWidth;
  row.classList.add("changed");
}

// Pages other than the channel list re-read their live parts when their hub (and channel) has
// news, at most every half second.
let pending = null;
function refreshSoon() {
  if (pending) return;
  pending = setTimeout(async () => {
    pending = null;
    await refreshParts();
  }, 500);
}

function startPageLive(marker) {
  const hub = marker.dataset.hub;
  const channel = marker.dataset.channel;
  const source = new EventSource("/ui/live?hub=" + encodeURIComponent(hub));
  const dot = document.getElementById("live-state");
  source.onopen = () => dot && dot.classList.add("on");
  source.onerror = () => dot && dot.classList.remove("on");
  const news = (ev) => {
    const data = JSON.parse(ev.data);
    if (!channel || data.channel === channel) refreshSoon();
  };
  source.addEventListener("job", news);
  source.addEventListener("refresh", news);
  source.addEventListener("lag", refreshSoon);
}

function startLive() {
  if (!window.EventSource) return;
  const table = document.getElementById("channels");
  const marker = document.getElementById("live-hub");
  if (!table) {
    if (marker) startPageLive(marker);
    return;
  }
  const hub = table.dataset.hub;
  const source = new EventSource("/ui/live" + (hub ? "?hub=" + encodeURIComponent(hub) : ""));
  const dot = document.getElementById("live-state");
  let missed = false;
  source.onopen = () => {
    if (dot) dot.classList.add("on");
    // Back after a break: re-read the rows for what happened meanwhile.
    if (missed) refreshParts();
    missed = false;
  };
  source.onerror = () => {
    if (dot) dot.classList.remove("on");
    missed = true;
  };
  // The event hub skipped events for this slow stream: re-read the rows.
  source.addEventListener("lag", () => refreshParts());
  source.addEventListener("job", (ev) => {
    const data = JSON.parse(ev.data);
    const row = rowOf(data);
    if (!row) return;
    setField(row, "job_state", data.state, true);
    if (data.state === "RUNNING") setField(row, "sync_state", "syncing", true);
    changed(row);
    // The health word is the server's verdict over every fact: read the rows again.
    refreshSoon();
  });
  source.addEventListener("refresh", (ev) => {
    const data = JSON.parse(ev.data);
    const row = rowOf(data);
    if (!row) return;
    row.dataset.lastEvent = data.ev_id;
    setField(row, "last_state", data.state, true);
    setField(row, "last_start", data.start);
    if (data.state === "ACTIVE") {
      setField(row, "sync_state", "syncing", true);
    } else if (row.querySelector('[data-field="sync_state"]').textContent !== "") {
      setField(row, "sync_state", row.dataset.paused === "true" ? "paused" : row.dataset.manual === "true" ? "idle" : "scheduled", true);
    }
    if (data.state === "DONE") {
      setField(row, "last_success", data.finish);
      setField(row, "rows_moved", Number(data.rows).toLocaleString("en-US"));
    } else if (data.state === "FAILED") {
      setField(row, "last_failure", data.finish);
      const cell = row.querySelector('[data-field="last_failure"]');
      if (cell) cell.title = data.response || "";
    }
    changed(row);
    refreshSoon();
  });
  source.addEventListener("cutoff", () => {
    if (dot) dot.classList.remove("on");
    missed = true;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  updateBulkBar();
  relativeTimes();
  setInterval(relativeTimes, 30000);
  startLive();
});
