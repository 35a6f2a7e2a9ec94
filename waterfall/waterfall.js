// sluice request waterfall: draws one SVG bar per fetch attempt from the
// JSON in #data. No libraries, no network.
(function () {
  "use strict";
  const SVGNS = "http://www.w3.org/2000/svg";
  const LABEL_W = 96, AXIS_H = 26, RIGHT_PAD = 14, GROUP_GAP = 14;
  // Indexes into span.t (see jsSpan in render.go).
  const ENQ = 0, WS = 1, WE = 2, ST = 3, DNS_S = 4, DNS_D = 5, CON_S = 6, CON_D = 7, TLS_S = 8, TLS_D = 9, FB = 10, END = 11;
  const PHASES = [
    ["queued", "queued"], ["wait", "rate-limit wait"], ["lease", "proxy lease"], ["dns", "DNS"],
    ["connect", "connect"], ["tls", "TLS"], ["ttfb", "waiting for first byte"], ["body", "body"], ["fail", "failed, no response"],
  ];
  const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac", "#1b9e77", "#7570b3", "#d95f02", "#66a61e", "#e7298a", "#a6761d"];

  const errBox = document.getElementById("error");
  function fail(msg) {
    errBox.hidden = false;
    errBox.textContent = "waterfall error: " + msg;
    document.body.dataset.error = msg;
  }
  window.addEventListener("error", function (e) { fail(e.message); });

  const data = JSON.parse(document.getElementById("data").textContent);
  const spans = data.spans.map(function (s, i) { return build(s, i); });
  const svg = document.getElementById("chart");
  const box = document.getElementById("chart-box");
  const tip = document.getElementById("tip");
  const proxyColor = function (p) { return PALETTE[p % PALETTE.length]; };

  // Phases of one span, as [class, from, to] in ms.
  function build(s, i) {
    const t = s.t;
    const ph = [];
    const add = function (name, a, b) { if (a != null && b != null && b > a) ph.push([name, a, b]); };
    if (s.a === 1) add("queued", t[ENQ], t[WS]);
    add("wait", t[WS], t[WE]);
    add("lease", t[WE], t[ST]);
    add("dns", t[DNS_S], t[DNS_D]);
    add("connect", t[CON_S], t[CON_D]);
    add("tls", t[TLS_S], t[TLS_D]);
    let sent = t[ST];
    [DNS_D, CON_D, TLS_D].forEach(function (k) { if (t[k] != null && t[k] > sent) sent = t[k]; });
    if (t[FB] != null) {
      add("ttfb", sent, t[FB]);
      add("body", t[FB], t[END]);
    } else {
      add("fail", sent, t[END]);
    }
    const from = t[WS] != null ? t[WS] : t[ST];
    return { i: i, s: s, phases: ph, from: from, to: t[END], row: 0, y: 0 };
  }

  let t0 = Infinity, t1 = -Infinity;
  spans.forEach(function (sp) {
    sp.s.t.forEach(function (v) { if (v != null) { t0 = Math.min(t0, v); t1 = Math.max(t1, v); } });
  });
  if (!isFinite(t0)) { t0 = 0; t1 = 1; }
  if (t1 <= t0) t1 = t0 + 1;

  const state = { group: "proxy", layout: spans.length > 400 ? "lanes" : "rows", color: "phase", v0: t0, v1: t1 };
  readHash();

  let width = 0, plotW = 0, groups = [], bars = [], highlighted = null;
  const gridG = el("g", { id: "grid" }), groupG = el("g", { id: "groups" }), barG = el("g", { id: "bars" });
  const brush = el("rect", { id: "brush", height: 0, width: 0, visibility: "hidden" });
  svg.appendChild(el("defs", {}, [el("clipPath", { id: "plot-clip" }, [el("rect", { id: "clip-rect", x: LABEL_W, y: 0, width: 1, height: 1 })])]));
  svg.appendChild(gridG); svg.appendChild(groupG); svg.appendChild(barG); svg.appendChild(brush);
  barG.setAttribute("clip-path", "url(#plot-clip)");

  function el(name, attrs, kids) {
    const e = document.createElementNS(SVGNS, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    (kids || []).forEach(function (c) { e.appendChild(c); });
    return e;
  }

  function naturalLess(a, b) {
    const ma = /^(.*?)(\d+)$/.exec(a), mb = /^(.*?)(\d+)$/.exec(b);
    if (ma && mb && ma[1] === mb[1]) return Number(ma[2]) - Number(mb[2]);
    return a < b ? -1 : a > b ? 1 : 0;
  }

  // layout assigns every span a group, a row and a y; it builds the bars.
  function layout() {
    const keyOf = state.group === "proxy" ? function (sp) { return data.proxies[sp.s.p]; }
      : state.group === "domain" ? function (sp) { return data.domains[sp.s.d]; }
      : function () { return "all requests"; };
    const byKey = new Map();
    spans.forEach(function (sp) {
      const k = keyOf(sp);
      if (!byKey.has(k)) byKey.set(k, []);
      byKey.get(k).push(sp);
    });
    const keys = Array.from(byKey.keys()).sort(naturalLess);
    const n = spans.length;
    const rowH = state.layout === "lanes" ? 10 : Math.max(3, Math.min(14, Math.floor(9000 / Math.max(n, 1))));
    let y = AXIS_H + 4;
    groups = keys.map(function (k) {
      const list = byKey.get(k).slice().sort(function (a, b) { return a.from - b.from || a.i - b.i; });
      let rows = 0;
      if (state.layout === "lanes") {
        const ends = [];
        list.forEach(function (sp) {
          let r = ends.findIndex(function (e) { return e <= sp.from; });
          if (r < 0) { r = ends.length; ends.push(0); }
          ends[r] = sp.to;
          sp.row = r;
        });
        rows = ends.length;
      } else {
        list.forEach(function (sp, r) { sp.row = r; });
        rows = list.length;
      }
      const g = { key: k, top: y, height: rows * rowH, spans: list };
      list.forEach(function (sp) { sp.y = y + sp.row * rowH; sp.h = Math.max(rowH - 1, 2); });
      y += rows * rowH + GROUP_GAP;
      return g;
    });
    const height = y;
    svg.setAttribute("height", height);
    document.getElementById("clip-rect").setAttribute("height", height);

    while (groupG.firstChild) groupG.removeChild(groupG.firstChild);
    groups.forEach(function (g, gi) {
      groupG.appendChild(el("rect", { class: "band" + (gi % 2 ? " odd" : ""), x: 0, y: g.top - GROUP_GAP / 2, width: "100%", height: g.height + GROUP_GAP }));
      const label = el("text", { class: "group-label", x: 6, y: g.top + Math.min(g.height / 2 + 4, 14) });
      label.textContent = g.key + " (" + g.spans.length + ")";
      groupG.appendChild(label);
      if (state.group === "proxy") {
        const pi = data.proxies.indexOf(g.key);
        groupG.appendChild(el("rect", { x: 0, y: g.top, width: 3, height: Math.max(g.height, 2), fill: proxyColor(pi) }));
      }
    });

    while (barG.firstChild) barG.removeChild(barG.firstChild);
    bars = spans.map(function (sp) {
      const g = el("g", { class: "bar" + (sp.s.e ? " err" : ""), "data-i": sp.i, "data-proxy": data.proxies[sp.s.p] });
      const h = sp.h;
      const base = el("rect", { class: "base", y: sp.y, height: h, fill: proxyColor(sp.s.p) });
      const parts = sp.phases.map(function (p) {
        const thin = p[0] === "queued";
        const r = el("rect", { class: "ph ph-" + p[0], y: thin ? sp.y + h / 2 - 0.5 : sp.y, height: thin ? 1 : h });
        g.appendChild(r);
        return r;
      });
      g.insertBefore(base, g.firstChild);
      barG.appendChild(g);
      return { sp: sp, g: g, base: base, parts: parts };
    });
    svg.classList.toggle("by-proxy", state.color === "proxy");
    applyHighlight();
    resize();
  }

  function resize() {
    width = Math.max(box.clientWidth, 400);
    plotW = width - LABEL_W - RIGHT_PAD;
    svg.setAttribute("width", width);
    document.getElementById("clip-rect").setAttribute("width", plotW);
    draw();
  }

  const x = function (t) { return LABEL_W + (t - state.v0) / (state.v1 - state.v0) * plotW; };

  // draw places the bars and the axis for the current time window.
  function draw() {
    const k = plotW / (state.v1 - state.v0);
    for (let b = 0; b < bars.length; b++) {
      const bar = bars[b], sp = bar.sp;
      const bx = x(sp.from), bw = (sp.to - sp.from) * k;
      bar.base.setAttribute("x", bx.toFixed(2));
      bar.base.setAttribute("width", Math.max(bw, 1).toFixed(2));
      for (let p = 0; p < bar.parts.length; p++) {
        const ph = sp.phases[p];
        bar.parts[p].setAttribute("x", x(ph[1]).toFixed(2));
        bar.parts[p].setAttribute("width", Math.max((ph[2] - ph[1]) * k, 0.3).toFixed(2));
      }
    }
    drawAxis();
    document.getElementById("range").textContent = fmt(state.v0 - t0) + " – " + fmt(state.v1 - t0) + " of " + fmt(t1 - t0);
    writeHash();
  }

  function fmt(ms) {
    const a = Math.abs(ms);
    if (a >= 10000) return (ms / 1000).toFixed(1) + " s";
    if (a >= 1000) return (ms / 1000).toFixed(2) + " s";
    if (a >= 10) return ms.toFixed(0) + " ms";
    return ms.toFixed(2) + " ms";
  }

  // fmtTick labels a tick with as many decimals as its step needs, in
  // seconds once the window reaches past one second.
  function fmtTick(ms, step, far) {
    const inS = far >= 1000, unit = inS ? 1000 : 1;
    const dec = Math.max(0, Math.ceil(-Math.log10(step / unit) - 1e-9));
    return (ms / unit).toFixed(Math.min(dec, 6)) + (inS ? " s" : " ms");
  }

  function drawAxis() {
    while (gridG.firstChild) gridG.removeChild(gridG.firstChild);
    const span = state.v1 - state.v0;
    const raw = span / Math.max(plotW / 110, 2);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map(function (m) { return m * mag; }).find(function (s) { return s >= raw; });
    const h = svg.getAttribute("height");
    gridG.appendChild(el("rect", { class: "axis-bg", x: 0, y: 0, width: width, height: AXIS_H }));
    for (let t = Math.ceil((state.v0 - t0) / step) * step; t <= state.v1 - t0; t += step) {
      const px = x(t + t0);
      gridG.appendChild(el("line", { class: "tick", x1: px, x2: px, y1: AXIS_H - 6, y2: h }));
      const label = el("text", { class: "tick-label", x: px + 3, y: AXIS_H - 10 });
      label.textContent = fmtTick(t, step, state.v1 - t0);
      gridG.appendChild(label);
    }
  }

  // Zooming and panning keep the window inside the trace.
  function setView(a, b) {
    const full = t1 - t0, minSpan = 0.05;
    let w = Math.max(Math.min(b - a, full), minSpan);
    a = Math.max(t0, Math.min(a, t1 - w));
    state.v0 = a; state.v1 = a + w;
    scheduleDraw();
  }
  function zoomAt(t, factor) {
    setView(t - (t - state.v0) * factor, t + (state.v1 - t) * factor);
  }
  function pan(frac) {
    const w = state.v1 - state.v0;
    setView(state.v0 + w * frac, state.v1 + w * frac);
  }
  let pending = false;
  function scheduleDraw() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(function () { pending = false; draw(); });
  }
  const timeAt = function (px) { return state.v0 + (px - LABEL_W) / plotW * (state.v1 - state.v0); };
  const mid = function () { return (state.v0 + state.v1) / 2; };

  document.getElementById("zoom-in").onclick = function () { zoomAt(mid(), 0.5); };
  document.getElementById("zoom-out").onclick = function () { zoomAt(mid(), 2); };
  document.getElementById("pan-left").onclick = function () { pan(-0.25); };
  document.getElementById("pan-right").onclick = function () { pan(0.25); };
  document.getElementById("reset").onclick = function () { setView(t0, t1); };
  document.addEventListener("keydown", function (e) {
    if (e.target.tagName === "SELECT") return;
    if (e.key === "+" || e.key === "=") zoomAt(mid(), 0.5);
    else if (e.key === "-") zoomAt(mid(), 2);
    else if (e.key === "0") setView(t0, t1);
    else if (e.key === "ArrowLeft") pan(-0.25);
    else if (e.key === "ArrowRight") pan(0.25);
  });
  svg.addEventListener("wheel", function (e) {
    const px = e.clientX - svg.getBoundingClientRect().left;
    if (e.ctrlKey || e.metaKey || e.altKey) {
      e.preventDefault();
      zoomAt(timeAt(px), Math.exp(e.deltaY * 0.002));
    } else if (Math.abs(e.deltaX) > Math.abs(e.deltaY)) {
      e.preventDefault();
      pan(e.deltaX / plotW);
    }
  }, { passive: false });
  svg.addEventListener("dblclick", function (e) {
    zoomAt(timeAt(e.clientX - svg.getBoundingClientRect().left), 2);
  });

  let drag = null;
  svg.addEventListener("mousedown", function (e) {
    const px = e.clientX - svg.getBoundingClientRect().left;
    if (px < LABEL_W || e.button !== 0) return;
    drag = { x: px };
    e.preventDefault();
  });
  window.addEventListener("mousemove", function (e) {
    if (!drag) return;
    const px = Math.max(LABEL_W, Math.min(e.clientX - svg.getBoundingClientRect().left, LABEL_W + plotW));
    brush.setAttribute("x", Math.min(drag.x, px));
    brush.setAttribute("width", Math.abs(px - drag.x));
    brush.setAttribute("y", 0);
    brush.setAttribute("height", svg.getAttribute("height"));
    brush.setAttribute("visibility", "visible");
    drag.to = px;
  });
  window.addEventListener("mouseup", function () {
    if (!drag) return;
    brush.setAttribute("visibility", "hidden");
    if (drag.to != null && Math.abs(drag.to - drag.x) > 4) {
      const a = timeAt(Math.min(drag.x, drag.to)), b = timeAt(Math.max(drag.x, drag.to));
      setView(a, b);
    }
    drag = null;
  });

  // Tooltip.
  svg.addEventListener("mousemove", function (e) {
    const g = e.target.closest && e.target.closest("g.bar");
    if (!g || drag) { tip.hidden = true; return; }
    const sp = spans[Number(g.dataset.i)];
    const s = sp.s;
    const lines = [
      "<b>" + esc(s.u) + "</b>",
      "proxy " + esc(data.proxies[s.p]) + " · attempt " + s.a + " · " + (s.s ? "status " + s.s : "no response") +
        (s.e ? " · <span class=\"bad\">" + esc(s.e) + "</span>" : "") + " · " + s.b + " B" + (s.r ? " · reused connection" : "") +
        (s.q ? " · <span class=\"bad\">on probation</span>" : "") + (s.c ? " · cap " + s.c : "") +
        (s.l ? " · <span class=\"bad\">ran late</span>" : "") + (s.h ? " · hedge" : ""),
      "started at " + fmt(sp.from - t0) + ", took " + fmt(sp.to - sp.from),
    ];
    sp.phases.forEach(function (p) {
      lines.push("<span class=\"key ph-" + p[0] + "\"></span>" + label(p[0]) + ": " + fmt(p[2] - p[1]));
    });
    tip.innerHTML = lines.join("<br>");
    tip.hidden = false;
    const pad = 14;
    let left = e.pageX + pad, top = e.pageY + pad;
    if (left + tip.offsetWidth > window.scrollX + window.innerWidth) left = e.pageX - tip.offsetWidth - pad;
    tip.style.left = left + "px";
    tip.style.top = top + "px";
  });
  svg.addEventListener("mouseleave", function () { tip.hidden = true; });
  function label(name) {
    const p = PHASES.find(function (q) { return q[0] === name; });
    return p ? p[1] : name;
  }
  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) { return "&#" + c.charCodeAt(0) + ";"; });
  }

  // Highlight a proxy's requests from the summary table.
  document.querySelectorAll("tr.proxy-row").forEach(function (tr) {
    tr.addEventListener("click", function () {
      highlighted = highlighted === tr.dataset.proxy ? null : tr.dataset.proxy;
      applyHighlight();
    });
  });
  function applyHighlight() {
    svg.classList.toggle("highlighting", highlighted != null);
    bars.forEach(function (b) { b.g.classList.toggle("hl", b.g.dataset.proxy === highlighted); });
    document.querySelectorAll("tr.proxy-row").forEach(function (tr) { tr.classList.toggle("hl", tr.dataset.proxy === highlighted); });
  }
  document.querySelectorAll(".swatch").forEach(function (sw) {
    const i = data.proxies.indexOf(sw.dataset.proxy);
    if (i >= 0) sw.style.background = proxyColor(i);
  });

  // Legend.
  const legend = document.getElementById("legend");
  PHASES.forEach(function (p) {
    const item = document.createElement("span");
    item.className = "item";
    item.innerHTML = "<span class=\"key ph-" + p[0] + "\"></span>" + p[1];
    legend.appendChild(item);
  });

  // Controls and the URL hash (#from=ms&to=ms&group=&layout=&color=).
  ["group", "layout", "color"].forEach(function (name) {
    const sel = document.getElementById(name);
    sel.value = state[name];
    sel.addEventListener("change", function () { state[name] = sel.value; layout(); });
  });
  function readHash() {
    const h = new URLSearchParams(location.hash.slice(1));
    ["group", "layout", "color"].forEach(function (k) { if (h.get(k)) state[k] = h.get(k); });
    const a = parseFloat(h.get("from")), b = parseFloat(h.get("to"));
    if (isFinite(a) && isFinite(b) && b > a) { state.v0 = Math.max(t0, t0 + a); state.v1 = Math.min(t1, t0 + b); }
    if (state.v1 <= state.v0) { state.v0 = t0; state.v1 = t1; }
  }
  function writeHash() {
    const h = "from=" + (state.v0 - t0).toFixed(1) + "&to=" + (state.v1 - t0).toFixed(1) +
      "&group=" + state.group + "&layout=" + state.layout + "&color=" + state.color;
    try { history.replaceState(null, "", "#" + h); } catch (e) { /* some file: URLs refuse it */ }
  }
  window.addEventListener("resize", resize);

  layout();
  document.body.dataset.bars = String(bars.length);
  document.body.dataset.ready = "1";
})();
