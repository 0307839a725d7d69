/* The status page: reads /api/status (then /api/events, server-sent
 * events; polling when they fail) and draws it. No library: the charts
 * are inline SVG made here. The figures never carry a name, a plate, a
 * picture or an ID number (see admin.h), so nothing here masks any. */
"use strict";

(function () {
  var STALE_MS = 15000;      /* nothing new for this long: say so */
  var POLL_MS = 5000;
  var SVG = "http://www.w3.org/2000/svg";
  var CLASS_NAMES = {
    access_gate: "门禁 Gates", vehicle_barrier: "道闸 Barriers", camera: "摄像机 Cameras",
    door_sensor: "门磁 Door sensors", peephole: "猫眼 Peepholes", gateway: "网关 Gateways",
    report_point: "报事点 Report points", unspecified: "其他 Other"
  };
  var CLASS_ORDER = ["access_gate", "vehicle_barrier", "camera", "door_sensor", "peephole",
    "gateway", "report_point", "unspecified"];

  var params = new URLSearchParams(window.location.search);
  var token = params.get("token");
  var theme = params.get("theme");
  if (theme === "light" || theme === "dark")
    document.documentElement.setAttribute("data-theme", theme);

  var last = null;            /* the last status */
  var lastAt = 0;             /* when it came (our clock) */
  var source = null;
  var pollTimer = null;

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function svg(tag, attrs, text) {
    var e = document.createElementNS(SVG, tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = String(text);
    return e;
  }

  function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); return e; }

  function withToken(path) {
    return token ? path + "?token=" + encodeURIComponent(token) : path;
  }

  function tzOffsetMin(tz) {
    var m = /^([+-])(\d\d):(\d\d)$/.exec(tz || "+08:00");
    if (!m) return 480;
    var v = parseInt(m[2], 10) * 60 + parseInt(m[3], 10);
    return m[1] === "-" ? -v : v;
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  /* a time in the communities' zone */
  function hms(ms, tz) {
    var d = new Date(ms + tzOffsetMin(tz) * 60000);
    return pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds());
  }
  function ymd(ms, tz) {
    var d = new Date(ms + tzOffsetMin(tz) * 60000);
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate());
  }
  function when(ms, tz) {
    if (last && ymd(ms, tz) === ymd(last.as_of_ms, tz)) return hms(ms, tz);
    return ymd(ms, tz) + " " + hms(ms, tz);
  }

  function className(c) { return CLASS_NAMES[c] || c; }
  function classColor(c) {
    var i = CLASS_ORDER.indexOf(c);
    return "var(--c" + (i < 0 ? 7 : i) + ")";
  }
  function pct(online, total) {
    return total > 0 ? (Math.round(online * 1000 / total) / 10).toFixed(1) + "%" : "–";
  }
  function rateClass(online, total) {
    var r = total > 0 ? online / total : 0;
    return r >= 0.95 ? "high" : r >= 0.8 ? "mid" : "low";
  }

  function drawOnline(s) {
    var box = clear($("online"));
    var classes = (s.devices && s.devices.classes) || [];
    classes.forEach(function (c) {
      var t = el("div", { "class": "tile" });
      t.appendChild(el("div", { "class": "label" }, className(c.device_class)));
      t.appendChild(el("div", {
        "class": "big rate " + rateClass(c.online, c.total),
        "data-testid": "online-rate-" + c.device_class,
        "data-online": c.online, "data-total": c.total
      }, pct(c.online, c.total)));
      t.appendChild(el("div", { "class": "sub" }, c.online + " / " + c.total));
      box.appendChild(t);
    });
    if (!classes.length) box.appendChild(el("div", { "class": "muted" }, "no devices known yet"));

    /* bars per community and class */
    var rows = ((s.devices && s.devices.communities) || []).slice(0, 40);
    var box2 = clear($("online-communities"));
    if (!rows.length) return;
    var rowH = 30, labelW = 430, w = 1000, h = rows.length * rowH + 4;
    var g = svg("svg", { viewBox: "0 0 " + w + " " + h, role: "img",
      "aria-label": "online rate per community and class" });
    rows.forEach(function (r, i) {
      var y = i * rowH + 2, frac = r.total > 0 ? r.online / r.total : 0;
      g.appendChild(svg("text", { x: 0, y: y + 21 }, r.community + " · " + className(r.device_class)));
      g.appendChild(svg("rect", { x: labelW, y: y + 4, width: w - labelW - 180, height: rowH - 10,
        fill: "none", stroke: "var(--line)" }));
      g.appendChild(svg("rect", { x: labelW, y: y + 4, width: Math.max(0, (w - labelW - 180) * frac),
        height: rowH - 10, fill: frac >= 0.95 ? "var(--ok)" : frac >= 0.8 ? "var(--warn)" : "var(--bad)",
        "data-testid": "online-bar" }));
      g.appendChild(svg("text", { x: w - 170, y: y + 21 }, pct(r.online, r.total) + " (" + r.online + "/" + r.total + ")"));
    });
    box2.appendChild(g);
  }

  function drawToday(s, f) {
    var sums = {};
    (f ? f.today : []).forEach(function (r) { sums[r.event_type] = (sums[r.event_type] || 0) + r.count; });
    ["person_passage", "vehicle_passage", "camera_alarm", "welfare_alert"].forEach(function (t) {
      var e = $("today-" + t);
      e.textContent = f ? String(sums[t] || 0) : "–";
      e.setAttribute("data-count", f ? String(sums[t] || 0) : "");
    });
    $("day").textContent = f ? ymd(f.day_start_ms, s.timezone) : "";
    if (f) $("day").setAttribute("data-day-start", String(f.day_start_ms));
    var body = clear($("today-all"));
    Object.keys(sums).sort().forEach(function (t) {
      var li = el("li", {}, t.replace(/_/g, " ") + " ");
      li.appendChild(el("b", { "data-testid": "today-all-" + t }, sums[t]));
      body.appendChild(li);
    });
  }

  function alarmText(a) {
    return (a.kind ? a.kind.replace(/_/g, " ") : "alarm") + " · " + a.community + " · " + a.device;
  }

  function drawAlarms(s, f) {
    var latest = clear($("latest-alarm"));
    var alarms = f ? f.alarms : [];
    if (alarms.length) {
      var a = alarms[0];
      latest.setAttribute("data-id", a.id);
      latest.setAttribute("data-time-ms", a.time_ms);
      latest.appendChild(el("div", { "class": "when" }, when(a.time_ms, s.timezone)));
      latest.appendChild(el("div", {}, alarmText(a)));
      latest.appendChild(el("div", { "class": "sub" }, a.severity));
    } else {
      latest.removeAttribute("data-id");
      latest.textContent = f ? "无 none" : "–";
    }
    var ul = clear($("alarms"));
    alarms.slice(1).forEach(function (a) {
      ul.appendChild(el("li", { "data-id": a.id }, when(a.time_ms, s.timezone) + " " + alarmText(a)));
    });

    /* the timeline: the last 24 hours, alarms and welfare alerts */
    var box = clear($("timeline"));
    var w = 1000, h = 90, end = s.as_of_ms, start = end - 24 * 3600000;
    var g = svg("svg", { viewBox: "0 0 " + w + " " + h, role: "img", "aria-label": "alarm timeline" });
    g.appendChild(svg("line", { x1: 10, y1: 50, x2: w - 10, y2: 50, "class": "axis", "stroke-width": 2 }));
    for (var k = 0; k <= 24; k += 6) {
      var x = 10 + (w - 20) * k / 24;
      g.appendChild(svg("line", { x1: x, y1: 44, x2: x, y2: 56, "class": "axis" }));
      g.appendChild(svg("text", { x: Math.min(Math.max(x, 25), w - 25), y: 82, "text-anchor": "middle" }, hms(start + k * 3600000, s.timezone).slice(0, 5)));
    }
    function dots(list, color, y) {
      list.forEach(function (a) {
        if (a.time_ms < start || a.time_ms > end + 600000) return;
        var x = 10 + (w - 20) * Math.min(1, (a.time_ms - start) / (end - start));
        g.appendChild(svg("circle", { cx: x, cy: y, r: 9, fill: color, opacity: 0.85 }));
      });
    }
    dots(alarms, "var(--bad)", 30);
    dots(f ? f.welfare : [], "var(--warn)", 30);
    box.appendChild(g);
  }

  function drawPerMinute(s, f) {
    var box = clear($("per-minute")), legend = clear($("legend"));
    var series = {};
    (f ? f.per_minute : []).forEach(function (r) {
      if (!series[r.device_class]) series[r.device_class] = new Array(60).fill(0);
      if (r.minute >= 0 && r.minute < 60) series[r.device_class][r.minute] += r.count;
    });
    var names = Object.keys(series).sort(function (a, b) {
      return CLASS_ORDER.indexOf(a) - CLASS_ORDER.indexOf(b);
    });
    var max = 1;
    names.forEach(function (n) { series[n].forEach(function (v) { if (v > max) max = v; }); });
    var w = 1000, h = 200, left = 44, bottom = 26, top = 20;
    var g = svg("svg", { viewBox: "0 0 " + w + " " + h, role: "img", "aria-label": "events per minute" });
    g.appendChild(svg("line", { x1: left, y1: h - bottom, x2: w, y2: h - bottom, "class": "axis" }));
    g.appendChild(svg("text", { x: 2, y: top + 4 }, max));
    g.appendChild(svg("text", { x: 2, y: h - bottom }, 0));
    [0, 15, 30, 45, 60].forEach(function (m) {
      var x = left + (w - left) * m / 60;
      g.appendChild(svg("text", { x: Math.min(Math.max(x, 30), w - 30), y: h - 4, "text-anchor": "middle" }, m === 60 ? "now" : "-" + (60 - m) + "m"));
    });
    names.forEach(function (n) {
      var pts = series[n].map(function (v, i) {
        var x = left + (w - left) * (i + 0.5) / 60;
        var y = h - bottom - (h - bottom - top) * v / max;
        return x.toFixed(1) + "," + y.toFixed(1);
      }).join(" ");
      g.appendChild(svg("polyline", { points: pts, fill: "none", stroke: classColor(n), "stroke-width": 3,
        "data-class": n }));
      var item = el("span");
      var sw = el("i");
      sw.style.background = classColor(n);
      item.appendChild(sw);
      item.appendChild(document.createTextNode(className(n)));
      legend.appendChild(item);
    });
    box.appendChild(g);
  }

  function drawWelfare(s, f) {
    var ul = clear($("welfare"));
    (f ? f.welfare : []).forEach(function (a) {
      ul.appendChild(el("li", { "data-id": a.id }, when(a.time_ms, s.timezone) + " " + alarmText(a)));
    });
    if (f && !f.welfare.length) ul.appendChild(el("li", { "class": "muted" }, "无 none"));
  }

  function drawReports(s, f) {
    $("overdue-total").textContent = f ? String(f.overdue_reports_total) : "–";
    $("overdue-total").setAttribute("data-count", f ? String(f.overdue_reports_total) : "");
    var ul = clear($("overdue"));
    (f ? f.overdue_reports : []).forEach(function (r) {
      ul.appendChild(el("li", {}, r.community + " · " + [r.building, r.door].filter(Boolean).join(" ") +
        (r.category ? " · " + r.category : "") + " · due " + when(r.deadline_ms, s.timezone)));
    });
  }

  function drawForward(s) {
    var ul = clear($("forward"));
    (s.forward || []).forEach(function (t) {
      var li = el("li", { "data-testid": "forward-" + t.target, "data-up": t.up ? "1" : "0",
        "data-pending": t.pending });
      li.appendChild(el("span", { "class": t.up ? "up" : "down" }, t.up ? "● up " : "● down "));
      li.appendChild(document.createTextNode(t.target + " · backlog " + t.pending +
        (t.pending ? " · oldest " + Math.round(t.oldest_pending_s) + " s" : "") + " · sent " + t.sent));
      ul.appendChild(li);
    });
    if (!(s.forward || []).length) ul.appendChild(el("li", { "class": "muted" }, "no target configured"));
  }

  function drawDaemon(s) {
    var ul = clear($("daemon"));
    var h = s.health;
    ul.appendChild(el("li", { "data-testid": "ready" }, h.ready ? "ready" : "not ready"));
    h.reasons.forEach(function (r) { ul.appendChild(el("li", { "class": "down" }, r)); });
    ul.appendChild(el("li", {}, "broker " + (h.broker_up ? "connected" : "not connected") +
      " · database " + (h.database_up ? "connected" : "not connected")));
    ul.appendChild(el("li", {}, "journal backlog " + h.journal_lag + (h.catching_up ? " (catching up)" : "")));
    ul.appendChild(el("li", { "class": "muted" }, "version " + s.version + " · up since " + when(s.started_ms, s.timezone)));
  }

  function render(s) {
    last = s;
    lastAt = Date.now();
    var f = s.db && s.db.figures;
    drawOnline(s);
    drawToday(s, f);
    drawAlarms(s, f);
    drawPerMinute(s, f);
    drawWelfare(s, f);
    drawReports(s, f);
    drawForward(s);
    drawDaemon(s);
    var db = $("dbstale");
    if (s.db.stale) {
      db.hidden = false;
      db.textContent = s.db.as_of_ms ? "数据库数据过期 database figures stale since " + hms(s.db.as_of_ms, s.timezone)
        : "数据库数据暂缺 database figures not available yet";
    } else {
      db.hidden = true;
    }
    $("asof").textContent = "as of " + hms(s.as_of_ms, s.timezone) + " (" + s.timezone + ")";
    document.body.setAttribute("data-as-of", s.as_of_ms);
    document.body.setAttribute("data-loaded", "1");
    tick();
  }

  function tick() {
    var now = Date.now();
    var tz = last ? last.timezone : "+08:00";
    var serverNow = last ? last.as_of_ms + (now - lastAt) : now;
    $("clock").textContent = hms(serverNow, tz).slice(0, 5);
    var stale = !last || now - lastAt > STALE_MS;
    var banner = $("stale"), badge = $("health");
    document.body.classList.toggle("stale", !!(last && stale));
    if (stale) {
      banner.hidden = false;
      banner.textContent = last ? "数据已过期 data stale since " + hms(last.as_of_ms, tz) + " — gridbridge not reachable"
        : "等待数据 waiting for data…";
      badge.className = "badge stale";
      badge.textContent = "stale";
    } else {
      banner.hidden = true;
      var ok = last.health.ready && !last.db.stale;
      badge.className = "badge " + (ok ? "ok" : "degraded");
      badge.textContent = ok ? "正常 healthy" : "降级 degraded";
    }
  }

  function poll() {
    fetch(withToken("api/status"), { cache: "no-store" }).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    }).then(render).catch(function () { tick(); });
  }

  function startPolling() {
    if (pollTimer === null) pollTimer = setInterval(poll, POLL_MS);
  }

  function startStream() {
    if (!window.EventSource) { startPolling(); return; }
    source = new EventSource(withToken("api/events"));
    source.onmessage = function (e) {
      try { render(JSON.parse(e.data)); } catch (err) { /* the next one */ }
      if (pollTimer !== null) { clearInterval(pollTimer); pollTimer = null; }
    };
    source.onerror = function () {
      /* EventSource reconnects by itself; poll meanwhile */
      startPolling();
    };
  }

  document.addEventListener("DOMContentLoaded", function () {
    var l = $("theme-light"), d = $("theme-dark");
    if (token) {
      l.href = "?theme=light&token=" + encodeURIComponent(token);
      d.href = "?theme=dark&token=" + encodeURIComponent(token);
    }
    poll();
    startStream();
    setInterval(tick, 1000);
  });
})();
