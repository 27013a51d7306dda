// reconciler ui: renders the fleet from server-sent snapshots.
//
// Every string from the fleet (node names, versions, reasons: they come
// from node reports) is set with textContent or setAttribute, never as
// markup. The page only reads: it has no forms and sends no writes.
"use strict";

(function () {
  let snap = null;      // the latest snapshot
  let received = 0;     // performance.now() when it arrived
  let filter = "";      // "key=value" label filter of the matrix

  // el builds an element: el("td", {class: "x"}, "text", child...).
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null && v !== false) e.setAttribute(k, String(v));
    }
    for (const k of kids) {
      if (k === null || k === undefined || k === false) continue;
      e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    }
    return e;
  }
  const short = (c) => (c || "").slice(0, 12);
  const dash = (s) => (s ? s : "–");
  const words = (s) => (s || "").replace(/_/g, " ");
  // when is a time for people; Go's zero time (0001-01-01) is none.
  const when = (t) => (t && !t.startsWith("0001-") ? new Date(t).toLocaleString() : "–");

  function secs(n) {
    n = Math.max(0, Math.round(n));
    if (n < 60) return n + "s";
    const m = Math.floor(n / 60), s = n % 60;
    if (m < 60) return m + "m" + (s ? s + "s" : "");
    return Math.floor(m / 60) + "h" + (m % 60) + "m";
  }
  const sinceSnap = () => (performance.now() - received) / 1000;

  function route() {
    const h = location.hash.replace(/^#\/?/, "");
    if (h.startsWith("node/")) {
      let node = h.slice(5);
      try { node = decodeURIComponent(node); } catch (e) { /* a malformed link: show it as typed */ }
      return { view: "node", node: node };
    }
    if (h === "rollouts" || h === "history") return { view: h };
    return { view: "matrix" };
  }

  function render() {
    if (!snap) return;
    const banner = document.getElementById("banner");
    banner.hidden = !snap.error && !snap.reading;
    banner.classList.toggle("info", !!snap.reading);
    banner.textContent = snap.error ? "Cannot read the fleet: " + snap.error + (snap.nodes.length ? " (showing the last state read)" : "") :
      snap.reading ? "Reading the fleet…" : "";
    const warn = document.getElementById("warnings");
    warn.replaceChildren(...(snap.warnings || []).map((w) => el("div", {}, "warning: " + w)));
    warn.hidden = !(snap.warnings || []).length;
    document.getElementById("source").textContent =
      "repo " + dash(snap.repo) + " · branch " + dash(snap.branch) + " at " + dash(short(snap.tip)) +
      " · shared state " + dash(snap.shared) + " · read " + (snap.time ? new Date(snap.time).toLocaleTimeString() : "–");
    const r = route();
    for (const a of document.querySelectorAll("header nav a")) {
      a.classList.toggle("active", a.dataset.view === r.view);
    }
    const view = document.getElementById("view");
    view.dataset.view = r.view;
    const body = { matrix: matrix, rollouts: rollouts, history: history, node: node }[r.view](r);
    view.replaceChildren(...body);
  }

  // ---- the fleet matrix: nodes × apps ----
  function labelsOf(n) { return Object.entries(n.labels || {}).map(([k, v]) => k + "=" + v); }

  function matrix() {
    const all = new Set();
    for (const n of snap.nodes) labelsOf(n).forEach((l) => all.add(l));
    const sel = el("select", { id: "label-filter", "aria-label": "filter by label" }, el("option", { value: "" }, "all nodes"));
    for (const l of [...all].sort()) sel.append(el("option", { value: l, selected: l === filter }, l));
    sel.addEventListener("change", () => { filter = sel.value; render(); });
    const nodes = snap.nodes.filter((n) => !filter || labelsOf(n).includes(filter));
    const head = el("tr", {}, el("th", {}, "node"), el("th", {}, "labels"),
      ...snap.apps.map((a) => el("th", { "data-app": a.name }, a.name, el("br"), el("small", {}, "target " + a.target + (a.paused ? " (paused)" : "")))));
    const rows = nodes.map((n) => {
      const cells = snap.apps.map((a) => cell(n, a));
      return el("tr", { "data-node": n.name },
        el("td", {}, el("a", { href: "#/node/" + encodeURIComponent(n.name) }, n.name), n.report && n.report.stale ? el("small", {}, " (stale)") : null),
        el("td", {}, el("small", {}, labelsOf(n).join(", "))), ...cells);
    });
    const table = nodes.length ? el("table", { id: "matrix" }, el("thead", {}, head), el("tbody", {}, ...rows))
      : el("p", { class: "empty" }, snap.nodes.length ? "No node has the label " + filter + "." :
        snap.error ? "Nothing to show until the fleet can be read." : "No node is declared or has reported yet.");
    return [el("h2", {}, "Fleet"), el("div", { class: "filter" }, "Label ", sel), table];
  }

  function cell(n, a) {
    const rep = n.report && n.report.apps && n.report.apps[a.name];
    if (!rep) return el("td", { class: "cell s-unknown", "data-app": a.name, "data-node": n.name }, el("span", { class: "state" }, n.report ? "not installed" : "no report"));
    const toward = rep.target && rep.target !== rep.version ? rep.target : a.target !== rep.version ? a.target : "";
    return el("td", { class: "cell s-" + rep.state, "data-app": a.name, "data-node": n.name, "data-version": rep.version || "", "data-state": rep.state },
      el("span", { class: "version" }, dash(rep.version)),
      toward ? el("span", { class: "target" }, " → " + toward) : null,
      el("span", { class: "state" }, words(rep.state)),
      rep.error ? el("span", { class: "err" }, rep.error) : null);
  }

  // ---- live rollouts ----
  function rollouts() {
    if (!snap.rollouts.length) return [el("h2", {}, "Rollouts"), el("p", { class: "empty" }, "No app in the specs.")];
    return [el("h2", {}, "Rollouts"), ...snap.rollouts.map(rolloutCard)];
  }

  function rolloutCard(st) {
    const nodes = [].concat(...st.waves);
    const done = nodes.filter((n) => ["upgraded", "skipped"].includes(n.state)).length;
    const live = st.state === "progressing";
    const elapsed = (st.elapsedSeconds || 0) + (live ? sinceSnap() : 0);
    const what = st.rollout ? (st.atOnce ? "rollback at once" : st.rollback ? "rollback in waves" : "rollout") +
      " of " + dash(st.rolloutTarget) + " from " + dash(st.from) + ", commit " + short(st.rollout) : "no rollout recorded";
    const times = [];
    if (st.rollout) times.push("elapsed " + secs(elapsed));
    if (live && done > 0 && done < nodes.length) times.push("about " + secs(elapsed * (nodes.length - done) / done) + " left");
    const card = el("section", { class: "rollout", "data-app": st.app, "data-state": st.state },
      el("h2", {}, st.app + " ", el("span", { class: "badge s-" + st.state, "data-role": "state" }, words(st.state)), " target " + st.target),
      el("div", { class: "meta" }, what + (times.length ? " · " + times.join(" · ") : "")),
      el("div", { class: "progress", title: done + " of " + nodes.length + " nodes done", "data-done": done, "data-total": nodes.length },
        el("div", { style: null })),
      el("div", { class: "meta" }, done + " of " + nodes.length + " nodes done"));
    card.querySelector(".progress > div").style.width = (nodes.length ? 100 * done / nodes.length : 0) + "%";
    if (st.nextWave) {
      const left = (st.nextWave.opensInSeconds || 0) - sinceSnap();
      const canary = st.waves.length > 1 && st.nextWave.wave === 2 && isCanary(st);
      card.append(el("div", { class: "countdown", "data-role": "countdown" },
        (canary ? "canary monitor: " : "") + "wave " + st.nextWave.wave + " opens in " + secs(left)));
    }
    if (st.approval) {
      card.append(el("div", { class: "countdown", "data-role": "approval" },
        "wave " + st.approval.wave + " waits for approval: " + st.approval.command));
    }
    if (st.reason) card.append(el("div", { class: "reason", "data-role": "reason" }, st.reason));
    st.waves.forEach((w, k) => card.append(el("div", { class: "wave", "data-wave": k + 1 },
      el("span", { class: "name" }, "wave " + (k + 1) + (k === 0 && isCanary(st) ? " (canary)" : "")), ...w.map(nodeChip))));
    if ((st.others || []).length) card.append(el("div", { class: "wave" }, el("span", { class: "name" }, "not in plan"), ...st.others.map(nodeChip)));
    const leases = (st.leases || []).map((l) => "slot " + l.slot + ": " + l.holder + " (" + l.state + ", renewed " + secs(l.unchangedSeconds || 0) + " ago, ttl " + l.ttl + ")");
    card.append(el("div", { class: "leases", "data-role": "leases" }, leases.length ? "leases: " + leases.join("; ") : "no lease held"));
    return card;
  }

  function isCanary(st) {
    const app = snap.apps.find((a) => a.name === st.app);
    return !!(app && app.strategy === "canary");
  }

  function nodeChip(n) {
    return el("span", { class: "node s-" + n.state, "data-node": n.node, "data-state": n.state, title: n.reason || "" },
      n.node + " ", el("small", {}, dash(n.version) + " " + words(n.state) + (n.stale ? " (stale)" : "")));
  }

  // ---- history ----
  function history() {
    const rows = (snap.history || []).map((h) => el("tr", { "data-commit": h.commit, "data-kind": h.kind },
      el("td", { class: "mono" }, short(h.commit)), el("td", {}, when(h.time)),
      el("td", {}, h.author), el("td", {}, dash(h.signer)), el("td", {}, dash(h.app)),
      el("td", {}, change(h)), el("td", { class: h.outcome ? "s-" + h.outcome : "" }, dash(words(h.outcome))),
      el("td", { "data-role": "reason" }, h.reason || "")));
    const head = el("tr", {}, ...["commit", "time", "author", "signer", "app", "change", "outcome", "reason"].map((t) => el("th", {}, t)));
    return [el("h2", {}, "History"), rows.length ? el("table", { id: "history" }, el("thead", {}, head), el("tbody", {}, ...rows))
      : el("p", { class: "empty" }, "No app changes on the tracked branch.")];
  }

  function change(h) {
    if (!h.from && h.to) return h.kind + " " + h.to;
    if (h.from !== h.to) return h.kind + " " + dash(h.from) + " → " + dash(h.to);
    return h.kind;
  }

  // ---- one node ----
  function node(r) {
    const n = snap.nodes.find((x) => x.name === r.node);
    if (!n) return [el("h2", {}, "Node " + r.node), el("p", { class: "empty" }, "No such node in the specs or the reports.")];
    const rep = n.report || {};
    const errors = [];
    if (rep.specError) errors.push("spec: " + rep.specError);
    if (rep.untrusted) errors.push(rep.untrusted);
    if (rep.conflict) errors.push(rep.conflict);
    for (const [app, a] of Object.entries(rep.apps || {})) if (a.error) errors.push(app + ": " + a.error);
    const facts = el("dl", {},
      el("dt", {}, "labels"), el("dd", {}, dash(labelsOf(n).join(", "))),
      el("dt", {}, "agent"), el("dd", {}, dash(rep.agentVersion)),
      el("dt", {}, "reported"), el("dd", {}, rep.time ? when(rep.time) + (rep.stale ? " (stale: its agent is not alive in the shared state)" : "") : "never"),
      el("dt", {}, "spec commit"), el("dd", { class: "mono" }, dash(short(rep.specCommit))));
    const apps = Object.entries(rep.apps || {}).sort().map(([app, a]) => el("tr", { "data-app": app },
      el("td", {}, app), el("td", { class: "s-" + a.state }, words(a.state)), el("td", { class: "mono" }, dash(a.version)),
      el("td", { class: "mono" }, dash(a.previous)), el("td", { class: "mono" }, dash(a.target)),
      el("td", {}, when(a.since)), el("td", {}, a.error || "")));
    const events = (n.events || []).map((e) => el("tr", {},
      el("td", {}, when(e.time)), el("td", {}, e.app), el("td", {}, words(e.type)),
      el("td", { class: "mono" }, short(e.rollout)), el("td", {}, e.reason || "")));
    return [
      el("h2", {}, "Node " + n.name), facts,
      el("h2", {}, "Errors"),
      errors.length ? el("ul", { id: "node-errors" }, ...errors.map((e) => el("li", { class: "reason" }, e))) : el("p", { class: "empty" }, "none"),
      el("h2", {}, "Apps"),
      apps.length ? el("table", {}, el("thead", {}, el("tr", {}, ...["app", "state", "version", "previous", "target", "since", "error"].map((t) => el("th", {}, t)))), el("tbody", {}, ...apps))
        : el("p", { class: "empty" }, "none reported"),
      el("h2", {}, "History"),
      events.length ? el("table", {}, el("thead", {}, el("tr", {}, ...["time", "app", "event", "rollout", "reason"].map((t) => el("th", {}, t)))), el("tbody", {}, ...events))
        : el("p", { class: "empty" }, "no rollout event names this node"),
    ];
  }

  // ---- the live feed ----
  function connect() {
    const live = document.getElementById("live");
    const es = new EventSource("api/events");
    es.addEventListener("snapshot", (ev) => {
      snap = JSON.parse(ev.data);
      received = performance.now();
      live.className = "live on";
      live.textContent = "live";
      render();
    });
    es.onerror = () => {
      live.className = "live off";
      live.textContent = "reconnecting…"; // EventSource retries by itself
    };
  }

  window.addEventListener("hashchange", render);
  // Countdowns and elapsed times tick between snapshots.
  setInterval(() => { if (snap && route().view === "rollouts") render(); }, 1000);
  connect();
})();
