// The interactive map of `ml4ms map -o FILE.html`: a canvas scatter with hover, pick, copy, zoom and pan.
// Data come from the JSON element #map-data; every user string is shown with textContent, never as HTML.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("map-data").textContent);
  var n = data.x.length;
  var root = document.getElementById("map");
  var base = document.getElementById("map-points");
  var over = document.getElementById("map-overlay");
  var tip = document.getElementById("map-tip");
  var selectedId = document.getElementById("map-selected-id");
  var selectedProps = document.getElementById("map-selected-props");
  var copyButton = document.getElementById("map-copy");
  var statusText = document.getElementById("map-status");
  var MISSING = "#8c8c8c";
  var MARGIN = {left: 66, right: 14, top: 10, bottom: 48};  // CSS pixels around the plot area
  var RADIUS = 3.2, HIT = 9;
  var i;

  // colour of each point; drawing order: low values (or the first category) first, records without a value last
  var colour = new Array(n), hollow = new Uint8Array(n), rank = new Float64Array(n);
  if (data.values) {
    var span = data.vmax - data.vmin, pal = data.palette;
    for (i = 0; i < n; i++) {
      var v = data.values[i];
      if (v === null) { hollow[i] = 1; colour[i] = MISSING; rank[i] = Infinity; continue; }
      var t = span > 0 ? (v - data.vmin) / span : 0.5;
      colour[i] = pal[Math.max(0, Math.min(pal.length - 1, Math.round(t * (pal.length - 1))))];
      rank[i] = v;
    }
  } else {
    for (i = 0; i < n; i++) {
      var k = data.labels[i];
      if (k === null) { hollow[i] = 1; colour[i] = MISSING; rank[i] = Infinity; }
      else { colour[i] = data.categories[k].colour; rank[i] = k; }
    }
  }
  var order = [];
  for (i = 0; i < n; i++) order.push(i);
  order.sort(function (a, b) { return (rank[a] - rank[b]) || (a - b); });
  var highlighted = data.highlight.filter(function (j) { return j >= 0 && j < n; });

  function padded(values) {
    var lo = Infinity, hi = -Infinity;
    for (var j = 0; j < values.length; j++) {
      if (values[j] < lo) lo = values[j];
      if (values[j] > hi) hi = values[j];
    }
    var pad = hi > lo ? 0.05 * (hi - lo) : Math.max(0.5, Math.abs(lo) * 0.1);
    return [lo - pad, hi + pad];
  }
  var full = {x: padded(data.x), y: padded(data.y)};
  var view = {x: full.x.slice(), y: full.y.slice()};
  var width = 0, height = 0, dpr = 1;
  var px = new Float64Array(n), py = new Float64Array(n);
  var selected = -1, hovered = -1;

  function plotW() { return width - MARGIN.left - MARGIN.right; }
  function plotH() { return height - MARGIN.top - MARGIN.bottom; }
  function toX(x) { return MARGIN.left + (x - view.x[0]) / (view.x[1] - view.x[0]) * plotW(); }
  function toY(y) { return height - MARGIN.bottom - (y - view.y[0]) / (view.y[1] - view.y[0]) * plotH(); }
  function fromX(sx) { return view.x[0] + (sx - MARGIN.left) / plotW() * (view.x[1] - view.x[0]); }
  function fromY(sy) { return view.y[0] + (height - MARGIN.bottom - sy) / plotH() * (view.y[1] - view.y[0]); }
  function inPlot(sx, sy) {
    return sx >= MARGIN.left && sx <= width - MARGIN.right && sy >= MARGIN.top && sy <= height - MARGIN.bottom;
  }

  function ticks(lo, hi, count) {
    var raw = (hi - lo) / Math.max(count, 1), mag = Math.pow(10, Math.floor(Math.log10(raw))), r = raw / mag;
    var step = (r < 1.5 ? 1 : r < 3 ? 2 : r < 7 ? 5 : 10) * mag, out = [];
    for (var t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) {
      out.push(Math.abs(t) < step * 1e-9 ? 0 : t);
    }
    var digits = Math.min(10, Math.max(0, -Math.floor(Math.log10(step) + 1e-9)));
    return out.map(function (value) { return {value: value, text: value.toFixed(digits)}; });
  }

  function number(v) {
    if (typeof v !== "number") return String(v);
    return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(6)));
  }

  function resize() {
    dpr = window.devicePixelRatio || 1;
    width = Math.max(320, Math.round(base.parentNode.clientWidth));
    height = Math.round(Math.max(260, Math.min(width * 0.72, 760)));
    [base, over].forEach(function (c) {
      c.width = Math.round(width * dpr);
      c.height = Math.round(height * dpr);
      c.style.height = height + "px";
    });
  }

  function drawAxes(ctx) {
    ctx.font = "11px system-ui, sans-serif";
    ctx.lineWidth = 1;
    var x0 = MARGIN.left, y0 = height - MARGIN.bottom, x1 = width - MARGIN.right, y1 = MARGIN.top;
    ticks(view.x[0], view.x[1], Math.round(plotW() / 90)).forEach(function (t) {
      var sx = Math.round(toX(t.value)) + 0.5;
      ctx.strokeStyle = "#ececec"; ctx.beginPath(); ctx.moveTo(sx, y0); ctx.lineTo(sx, y1); ctx.stroke();
      ctx.strokeStyle = "#444"; ctx.beginPath(); ctx.moveTo(sx, y0); ctx.lineTo(sx, y0 + 4); ctx.stroke();
      ctx.fillStyle = "#333"; ctx.textAlign = "center"; ctx.textBaseline = "top"; ctx.fillText(t.text, sx, y0 + 6);
    });
    ticks(view.y[0], view.y[1], Math.round(plotH() / 60)).forEach(function (t) {
      var sy = Math.round(toY(t.value)) + 0.5;
      ctx.strokeStyle = "#ececec"; ctx.beginPath(); ctx.moveTo(x0, sy); ctx.lineTo(x1, sy); ctx.stroke();
      ctx.strokeStyle = "#444"; ctx.beginPath(); ctx.moveTo(x0 - 4, sy); ctx.lineTo(x0, sy); ctx.stroke();
      ctx.fillStyle = "#333"; ctx.textAlign = "right"; ctx.textBaseline = "middle"; ctx.fillText(t.text, x0 - 6, sy);
    });
    ctx.strokeStyle = "#444";
    ctx.strokeRect(x0 + 0.5, y1 + 0.5, plotW(), plotH());
    ctx.font = "12px system-ui, sans-serif";
    ctx.fillStyle = "#222";
    ctx.textAlign = "center"; ctx.textBaseline = "bottom";
    ctx.fillText(data.axis_names[0], x0 + plotW() / 2, height - 4);
    ctx.save();
    ctx.translate(14, y1 + plotH() / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textBaseline = "middle";
    ctx.fillText(data.axis_names[1], 0, 0);
    ctx.restore();
  }

  function draw() {
    var ctx = base.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, width, height);
    drawAxes(ctx);
    ctx.save();
    ctx.beginPath();
    ctx.rect(MARGIN.left, MARGIN.top, plotW(), plotH());
    ctx.clip();
    var drawn = 0, start = 0, j;
    for (j = 0; j < n; j++) { px[j] = toX(data.x[j]); py[j] = toY(data.y[j]); }
    ctx.globalAlpha = 0.85;
    while (start < n) {  // one path per run of points of the same colour: fast for many points
      var c = colour[order[start]], h = hollow[order[start]], end = start;
      ctx.beginPath();
      for (; end < n && colour[order[end]] === c && hollow[order[end]] === h; end++) {
        j = order[end];
        if (!inPlot(px[j], py[j])) continue;
        ctx.moveTo(px[j] + RADIUS, py[j]);
        ctx.arc(px[j], py[j], RADIUS, 0, 2 * Math.PI);
        drawn++;
      }
      if (h) { ctx.strokeStyle = c; ctx.lineWidth = 1; ctx.stroke(); } else { ctx.fillStyle = c; ctx.fill(); }
      start = end;
    }
    ctx.globalAlpha = 1;
    if (highlighted.length) {
      ctx.beginPath();
      highlighted.forEach(function (k) {
        ctx.moveTo(px[k] + 6.5, py[k]);
        ctx.arc(px[k], py[k], 6.5, 0, 2 * Math.PI);
      });
      ctx.strokeStyle = "#000"; ctx.lineWidth = 1; ctx.stroke();
    }
    ctx.restore();
    root.dataset.pointsDrawn = String(drawn);
    drawOverlay();
  }

  function ring(ctx, j, r, style, lw) {
    if (j < 0 || !inPlot(px[j], py[j])) return;
    ctx.beginPath();
    ctx.arc(px[j], py[j], r, 0, 2 * Math.PI);
    ctx.strokeStyle = style; ctx.lineWidth = lw; ctx.stroke();
  }

  function drawOverlay() {
    var ctx = over.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ring(ctx, hovered, 5.5, "#222", 1.5);
    ring(ctx, selected, 8, "#fff", 4);
    ring(ctx, selected, 8, "#d62728", 2);
  }

  var pending = false;
  function redraw() {
    if (pending) return;
    pending = true;
    window.requestAnimationFrame(function () { pending = false; draw(); });
  }

  function nearest(sx, sy) {
    var best = -1, bestD = HIT * HIT;
    for (var m = 0; m < n; m++) {  // in drawing order: of two points on top of each other, the visible one wins
      var j = order[m], dx = px[j] - sx, dy = py[j] - sy, d = dx * dx + dy * dy;
      if (d <= bestD && inPlot(px[j], py[j])) { bestD = d; best = j; }
    }
    return best;
  }

  function rows(j) {
    var out = [["index", String(j)], [data.axis_names[0], number(data.x[j])], [data.axis_names[1], number(data.y[j])]];
    if (data.values) {
      out.push([data.color_label, data.values[j] === null ? "no value" : number(data.values[j])]);
    } else {
      out.push([data.color_label, data.labels[j] === null ? "no value" : data.categories[data.labels[j]].name]);
    }
    Object.keys(data.properties).forEach(function (key) {
      var value = data.properties[key][j];
      if (value !== null && value !== undefined && key !== "id") out.push([key, number(value)]);
    });
    return out;
  }

  function fillRows(dl, j) {
    dl.replaceChildren();
    if (j < 0) return;
    rows(j).forEach(function (row) {
      var dt = document.createElement("dt"), dd = document.createElement("dd");
      dt.textContent = row[0]; dt.title = row[0];
      dd.textContent = row[1]; dd.title = row[1];
      dl.append(dt, dd);
    });
  }

  function showTip(j, sx, sy) {
    if (j < 0) { tip.hidden = true; return; }
    tip.replaceChildren();
    var head = document.createElement("b"), dl = document.createElement("dl");
    head.textContent = "id: " + data.ids[j];
    fillRows(dl, j);
    tip.append(head, dl);
    tip.hidden = false;
    var scale = over.getBoundingClientRect().width / width;
    var left = sx * scale + 14, top = sy * scale + 12;
    if (left + tip.offsetWidth > over.clientWidth) left = Math.max(0, sx * scale - 14 - tip.offsetWidth);
    if (top + tip.offsetHeight > over.clientHeight) top = Math.max(0, sy * scale - 12 - tip.offsetHeight);
    tip.style.left = left + "px";
    tip.style.top = top + "px";
  }

  function select(j) {
    selected = j;
    statusText.textContent = "";
    selectedId.textContent = j < 0 ? "none" : data.ids[j];
    copyButton.disabled = j < 0;
    root.dataset.selected = j < 0 ? "" : data.ids[j];
    fillRows(selectedProps, j);
    drawOverlay();
  }

  copyButton.addEventListener("click", function () {
    if (selected < 0) return;
    var id = data.ids[selected];
    function byHand() {  // no clipboard access (an old browser, a page that is not trusted): select the text instead
      window.getSelection().selectAllChildren(selectedId);
      statusText.textContent = "press Ctrl+C (Cmd+C) to copy";
    }
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(id).then(function () { statusText.textContent = "copied"; }, byHand);
    } else {
      byHand();
    }
  });

  document.getElementById("map-find").addEventListener("submit", function (event) {
    event.preventDefault();
    var wanted = document.getElementById("map-find-id").value.trim(), j = data.ids.indexOf(wanted);
    if (j < 0) {
      var lower = wanted.toLowerCase();
      j = data.ids.findIndex(function (id) { return id.toLowerCase() === lower; });
    }
    if (j < 0) { statusText.textContent = "no point has the id " + wanted; return; }
    if (!inPlot(px[j], py[j])) { view = {x: full.x.slice(), y: full.y.slice()}; draw(); }
    select(j);
  });

  function position(event) {
    var rect = over.getBoundingClientRect();
    return [(event.clientX - rect.left) * width / rect.width, (event.clientY - rect.top) * height / rect.height];
  }

  var drag = null;
  over.addEventListener("pointerdown", function (event) {
    var p = position(event);
    drag = {sx: p[0], sy: p[1], view: {x: view.x.slice(), y: view.y.slice()}, moved: false};
    try { over.setPointerCapture(event.pointerId); } catch (e) { /* a synthetic event: no pointer to capture */ }
  });
  over.addEventListener("pointermove", function (event) {
    var p = position(event);
    if (drag) {
      if (!drag.moved && Math.abs(p[0] - drag.sx) + Math.abs(p[1] - drag.sy) < 4) return;
      drag.moved = true;
      over.classList.add("dragging");
      tip.hidden = true;
      var kx = (drag.view.x[1] - drag.view.x[0]) / plotW(), ky = (drag.view.y[1] - drag.view.y[0]) / plotH();
      view.x = [drag.view.x[0] - (p[0] - drag.sx) * kx, drag.view.x[1] - (p[0] - drag.sx) * kx];
      view.y = [drag.view.y[0] + (p[1] - drag.sy) * ky, drag.view.y[1] + (p[1] - drag.sy) * ky];
      redraw();
      return;
    }
    var j = nearest(p[0], p[1]);
    if (j !== hovered) { hovered = j; drawOverlay(); }
    showTip(j, p[0], p[1]);
  });
  over.addEventListener("pointerup", function (event) {
    var p = position(event), wasDrag = drag && drag.moved;
    drag = null;
    over.classList.remove("dragging");
    if (!wasDrag) select(nearest(p[0], p[1]));
  });
  over.addEventListener("pointerleave", function () {
    if (drag) return;
    hovered = -1; tip.hidden = true; drawOverlay();
  });
  over.addEventListener("wheel", function (event) {
    event.preventDefault();
    var p = position(event), cx = fromX(p[0]), cy = fromY(p[1]), f = Math.exp(Math.max(-3, Math.min(3, event.deltaY * 0.0015)));
    view.x = [cx + (view.x[0] - cx) * f, cx + (view.x[1] - cx) * f];
    view.y = [cy + (view.y[0] - cy) * f, cy + (view.y[1] - cy) * f];
    tip.hidden = true;
    redraw();
  }, {passive: false});
  over.addEventListener("dblclick", function () { view = {x: full.x.slice(), y: full.y.slice()}; redraw(); });
  over.addEventListener("keydown", function (event) { if (event.key === "Escape") select(-1); });

  function legendItem(list, swatchClass, swatchColour, text) {
    var li = document.createElement("li"), sw = document.createElement("span"), label = document.createElement("span");
    sw.className = "swatch" + (swatchClass ? " " + swatchClass : "");
    if (swatchColour) sw.style.background = swatchColour;
    label.textContent = text;
    li.append(sw, label);
    list.append(li);
  }

  function colourKey() {
    var box = document.getElementById("map-colour"), title = document.createElement("h2");
    var list = document.createElement("ul"), missing = 0;
    title.textContent = data.color_label;
    list.id = "map-legend";
    box.append(title);
    for (i = 0; i < n; i++) missing += hollow[i];
    if (data.values) {
      var bar = document.createElement("canvas"), w = 240, h = 40, ctx = bar.getContext("2d");
      bar.id = "map-colourbar";
      bar.width = w * dpr; bar.height = h * dpr; bar.style.width = w + "px"; bar.style.height = h + "px";
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      var grad = ctx.createLinearGradient(6, 0, w - 6, 0);
      data.palette.forEach(function (c, m) { grad.addColorStop(m / (data.palette.length - 1), c); });
      ctx.fillStyle = grad;
      ctx.fillRect(6, 0, w - 12, 14);
      ctx.strokeStyle = "#444"; ctx.lineWidth = 1; ctx.strokeRect(6.5, 0.5, w - 13, 13);
      ctx.font = "11px system-ui, sans-serif"; ctx.fillStyle = "#333"; ctx.textAlign = "center"; ctx.textBaseline = "top";
      var lo = data.vmin, hi = data.vmax;
      (hi > lo ? ticks(lo, hi, 4) : [{value: lo, text: number(lo)}]).forEach(function (t) {
        var sx = hi > lo ? 6 + (t.value - lo) / (hi - lo) * (w - 12) : w / 2;
        ctx.beginPath(); ctx.moveTo(sx, 14); ctx.lineTo(sx, 18); ctx.stroke();
        ctx.fillText(t.text, sx, 20);
      });
      box.append(bar);
    } else {
      var counts = data.categories.map(function () { return 0; });
      data.labels.forEach(function (k) { if (k !== null) counts[k] += 1; });
      data.categories.forEach(function (c, k) { legendItem(list, "", c.colour, c.name + " (" + counts[k] + ")"); });
    }
    if (missing) legendItem(list, "ring", "", "no value (" + missing + ")");
    if (highlighted.length) legendItem(list, "circle", "", "highlighted (" + highlighted.length + ")");
    if (list.childNodes.length) box.append(list);
  }

  // for scripts and tests: where point j is on the screen (client coordinates), and selecting a point
  window.ml4msMap = {
    ids: data.ids,
    position: function (j) {
      var rect = over.getBoundingClientRect();
      return [rect.left + px[j] * rect.width / width, rect.top + py[j] * rect.height / height];
    },
    select: select
  };
  window.addEventListener("resize", function () { resize(); redraw(); });
  colourKey();
  resize();
  draw();
  root.dataset.ready = "true";
})();
