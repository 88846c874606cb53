"""The page's own style and script (plotly.js itself is the basic bundle: ``plotlyjs``).

Kept as Python strings so the report needs no package data beyond that bundle. The script
reads two gzip+base64 payloads (``report-data``: the columns ``model.build`` makes;
``report-records``: every plotted record as ``lineage decode`` prints it, unpacked on the
first click), draws one plot per channel and the timeline with plotly, keeps their time
axes in step, and shows the record behind whatever is clicked. It sets
``document.body.dataset.ready`` when everything is drawn (the browser test waits for it).
"""

CSS = r"""
:root { --fg:#1d2430; --muted:#5b6575; --line:#d9dee7; --bg:#fff; --panel:#f6f8fb;
        --ok:#1a7f37; --bad:#c62828; --warn:#b26a00; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
       color:var(--fg); background:var(--bg); }
header.top { padding:16px 24px 8px; border-bottom:1px solid var(--line); }
h1 { font-size:20px; margin:0 0 4px; }
h2 { font-size:16px; margin:22px 0 8px; border-bottom:1px solid var(--line); padding-bottom:4px; }
.sub { color:var(--muted); margin:0; }
.layout { display:grid; grid-template-columns:minmax(0,1fr) 380px; gap:16px; padding:0 24px 24px; }
@media (max-width: 1100px) { .layout { grid-template-columns:1fr; } }
.badges { display:flex; flex-wrap:wrap; gap:8px; margin:10px 0 0; }
.badge { border-radius:12px; padding:2px 10px; font-weight:600; font-size:13px;
         border:1px solid var(--line); background:var(--panel); }
.badge.ok { color:var(--ok); border-color:#9bd3aa; background:#eef9f1; }
.badge.bad { color:var(--bad); border-color:#f1a8a8; background:#fdeeee; }
.badge.warn { color:var(--warn); border-color:#f0cf94; background:#fff6e6; }
table { border-collapse:collapse; margin:4px 0; }
th, td { text-align:left; padding:3px 10px 3px 0; vertical-align:top; }
th { color:var(--muted); font-weight:600; }
td.n, th.n { text-align:right; font-variant-numeric:tabular-nums; }
table.grid td, table.grid th { border-bottom:1px solid var(--line); padding:3px 10px; }
.facts th { width:150px; }
code { font:12px ui-monospace,SFMono-Regular,Menlo,monospace; word-break:break-all; }
ul.findings { margin:4px 0; padding-left:20px; }
.fail { color:var(--bad); font-weight:600; }
.note { color:var(--warn); font-weight:600; }
.okt { color:var(--ok); font-weight:600; }
.plot { width:100%; height:300px; margin:0 0 6px; }
.plot.timeline, .plot.lane { height:auto; }
.plot.input.bool { height:170px; }
.plot.input.number { height:240px; }
details.story { border:1px solid var(--line); border-radius:6px; padding:4px 12px; margin:6px 0; }
details.story summary { margin:4px 0; font-weight:600; cursor:pointer; }
ul.story { margin:4px 0; padding-left:0; list-style:none; }
ul.story li { margin:1px 0; }
li.part { font-weight:600; color:var(--muted); margin-top:6px !important; }
li.trip { color:var(--bad); font-weight:600; }
span.at { color:var(--muted); font-variant-numeric:tabular-nums; font-size:12px; }
.scroll.wide { display:block; }
tr.refused td { color:var(--bad); }
.controls { display:flex; gap:8px; align-items:center; margin:4px 0 8px; flex-wrap:wrap; }
button { font:inherit; padding:2px 10px; border:1px solid var(--line); border-radius:4px;
         background:var(--panel); cursor:pointer; }
button:hover { background:#e9eef6; }
aside { position:sticky; top:8px; align-self:start; max-height:calc(100vh - 16px);
        overflow:auto; background:var(--panel); border:1px solid var(--line);
        border-radius:6px; padding:10px 12px; margin-top:16px; }
aside h2 { margin-top:0; }
pre#record { white-space:pre-wrap; word-break:break-all; font:12px ui-monospace,monospace;
             margin:0; }
.scroll { max-height:240px; overflow:auto; display:inline-block; border:1px solid var(--line); }
#events-table { max-height:420px; overflow:auto; border:1px solid var(--line); }
#events-table table { width:100%; }
#events-table tr { cursor:pointer; }
#events-table tr:hover td { background:#eef3fb; }
#events-table tr.sel td { background:#dde8fb; }
.legend-note { color:var(--muted); font-size:12px; }
#error { display:none; background:#fdeeee; color:var(--bad); padding:8px 24px;
         border-bottom:1px solid #f1a8a8; font-weight:600; }
"""

JS = r"""
(function () {
'use strict';
const $ = (id) => document.getElementById(id);
const LOD_COLUMNS = 1500;   // lines: at most ~4 points per column of the visible window
const MARKERS_MAX = 1500;   // markers drawn per trace in the visible window (plotly samples)
const TABLE_MAX = 400;      // timeline table rows shown for the visible window
const COLORS = {
  output: '#1f5fbf', proposed: '#e08a00', bounds: '#2e7d32', whatif: '#8e24aa',
  clamp: '#f2b600', reject: '#e65100', escalate: '#6a1b9a', trip: '#d50000',
  reset: '#00897b', link: '#795548', mode: '#0097a7', boot: '#263238',
};
const SYMBOLS = { clamp: 'triangle-up', reject: 'x', escalate: 'diamond', trip: 'x-thin-open',
  reset: 'circle-open', link: 'square-open', mode: 'star', boot: 'hexagon-open' };
const SIZES = { trip: 14, reset: 10, link: 10, mode: 12, boot: 12 };
const LINE_COLORS = { boot: '#263238', mode: '#0097a7', gap: '#757575',
  hole: '#757575' };

let D = null, R = null, S = null, records = null, recordsPromise = null;
const plots = [];
let syncing = false;

function fail(msg) {
  const e = $('error');
  e.textContent = 'Report script error: ' + msg;
  e.style.display = 'block';
}
window.addEventListener('error', (ev) => fail(ev.message));

function bytesOf(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
async function unpack(id) {
  if (typeof DecompressionStream === 'undefined') {
    throw new Error('this browser cannot decompress the report (no DecompressionStream)');
  }
  return JSON.parse(await unpackText(id));
}
async function unpackText(id) {
  const blob = new Blob([bytesOf($(id).textContent.trim())]);
  const stream = blob.stream().pipeThrough(new DecompressionStream('gzip'));
  return new Response(stream).text();
}
// plotly.js travels packed (a third of its size): run it in the global scope once unpacked.
async function loadPlotly() {
  if (typeof Plotly === 'undefined') (0, eval)(await unpackText('report-plotly'));
}
function str(k) { return k >= 0 ? S[k] : ''; }
// Times travel as integer ms (delta-encoded in columns); on the axes they are seconds of
// device time, or, when the lineage has wall time, dates (plotly takes ms since the epoch).
let WALL = false;
function AX(ms) { return ms === null || ms === undefined ? null : (WALL ? ms : ms / 1000); }
function undelta(a) {
  const out = new Array(a.length);
  let last = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] === null) { out[i] = null; continue; }
    last += a[i];
    out[i] = last;
  }
  return out;
}
function times(a) { return undelta(a).map(AX); }
function dec(col) {
  if (col.raw) return col.raw;
  const scale = Math.pow(10, col.d);
  return undelta(col.v).map((k) => (k === null ? null : (col.d ? k / scale : k)));
}
function iso(ms) { return new Date(ms).toISOString().replace('T', ' ').replace('Z', ' UTC'); }
function fmt(x) {
  if (x === null || x === undefined) return '';
  return WALL ? iso(x) : (+x).toFixed(3) + ' s';
}
let XH = '%{x:.3f} s';
// Legends sit under each plot, left-aligned: the toolbar (modebar) is at the top right.
// y is a fraction of the plot area: keep ~30 px for the time axis's labels whatever its height.
function legendBelow(height, margin) {
  const area = Math.max(40, height - margin.t - margin.b);
  return { orientation: 'h', x: 0, xanchor: 'left', y: -30 / area, yanchor: 'top',
           font: { size: 11 } };
}
let FULL = [0, 1];
function xaxis() {
  const ax = WALL ? { type: 'date', zeroline: false, hoverformat: '%H:%M:%S.%L' }
                  : { zeroline: false, ticksuffix: ' s' };
  ax.range = FULL.slice();
  return ax;
}

function describe(i) {
  const v = R.v[i];
  const head = v >= 0 ? D.verdicts[v] : 'record';
  const bits = [head + ' · seq ' + R.seq[i] + ' · ' + fmt(R.x[i])];
  if (v > 0) bits.push(str(R.reason[i]) + ' · rule ' + (str(R.rule[i]) || '-') +
                       ' · margin ' + R.margin[i]);
  return bits.join('<br>');
}

// Incident bands and event lines: one trace each on a hidden [0, 1] axis laid over the plot
// (thousands of layout shapes would make every zoom slow; a trace is one path).
function overlays(extra) {
  const band = (pairs, color, name) => {
    const x = [], y = [];
    for (const [a, b] of pairs) x.push(a, a, b, b, null), y.push(0, 1, 1, 0, null);
    return { x: x, y: y, yaxis: 'y2', type: 'scatter', mode: 'lines', fill: 'toself',
      fillcolor: color, line: { width: 0 }, hoverinfo: 'skip', showlegend: false,
      name: name, meta: 'overlay' };
  };
  const out = [band(D.incidents.map((i) => [i.x0, i.xt]), 'rgba(255,152,0,0.13)', 'lead-up'),
               band(D.incidents.map((i) => [i.xt, i.x1]), 'rgba(213,0,0,0.08)', 'tripped')];
  if (extra) out.push(band(extra, 'rgba(96,96,96,0.22)', 'stale'));
  // Between two boots laid out in wall time: the device was off (no record).
  const off = [];
  for (let k = 1; k < D.segments.length; k++) {
    if (D.segments[k].x0 > D.segments[k - 1].x1) off.push([D.segments[k - 1].x1, D.segments[k].x0]);
  }
  if (off.length) out.push(band(off, 'rgba(38,50,56,0.07)', 'no boot running'));
  const byCat = {};
  for (const l of D.lines) (byCat[l.cat] = byCat[l.cat] || []).push(l);
  for (const cat of Object.keys(byCat)) {
    const x = [], y = [], text = [];
    for (const l of byCat[cat]) {
      x.push(l.x, l.x, null);
      y.push(0, 1, null);
      text.push(l.label, l.label, null);
    }
    out.push({ x: x, y: y, yaxis: 'y2', type: 'scatter', mode: 'lines', name: cat + ' line',
      line: { color: LINE_COLORS[cat] || '#999', width: 1,
        dash: cat === 'gap' || cat === 'hole' ? 'dot' : 'dash' },
      text: text, hoverinfo: 'text', showlegend: false, meta: 'overlay' });
  }
  return out;
}
const Y2 = { overlaying: 'y', range: [0, 1], visible: false, fixedrange: true };

// Markers: plotly draws at most MARKERS_MAX of a trace's points inside the visible window,
// so zooming in shows every one of them again.
function sampled(n) { return n > MARKERS_MAX ? MARKERS_MAX : 0; }
// Many markers of a kind (a long dump): smaller, so the lines stay visible between them.
function markerSize(cat, n) {
  const size = SIZES[cat] || 7;
  return n > 300 ? Math.max(4, Math.round(size / 2)) : size;
}

// Lines: level of detail for the visible window. Every plotted record stays in the data;
// a line shows, per column of the window, the first, last, lowest and highest point, which
// looks the same at that resolution and shows every record once zoomed in far enough.
function lowerBound(a, v) {
  let lo = 0, hi = a.length;
  while (lo < hi) { const mid = (lo + hi) >> 1; if (a[mid] < v) lo = mid + 1; else hi = mid; }
  return lo;
}
// A line breaks (index -1: a null point) where records could not be placed in time.
let BREAKS = new Set();
function lod(ys, range) {
  const X = R.x, n = X.length;
  if (!n) return [];
  const x0 = range ? range[0] : X[0], x1 = range ? range[1] : X[n - 1];
  const i0 = Math.max(0, lowerBound(X, x0) - 1), i1 = Math.min(n, lowerBound(X, x1) + 1);
  const out = [];
  if (i1 - i0 <= 4 * LOD_COLUMNS) {
    for (let i = i0; i < i1; i++) {
      if (BREAKS.has(i) && out.length) out.push(-1);
      if (ys[i] !== null) out.push(i);
    }
    return out;
  }
  const width = (x1 - x0) / LOD_COLUMNS || 1;
  let col = -1, first = -1, last = -1, lo = -1, hi = -1;
  const flush = () => {
    if (first < 0) return;
    const pts = [first, lo, hi, last].sort((a, b) => a - b);
    for (let k = 0; k < 4; k++) if (k === 0 || pts[k] !== pts[k - 1]) out.push(pts[k]);
  };
  for (let i = i0; i < i1; i++) {
    if (BREAKS.has(i)) { flush(); first = -1; col = -1; if (out.length) out.push(-1); }
    const y = ys[i];
    if (y === null) continue;
    const c = Math.floor((X[i] - x0) / width);
    if (c !== col) { flush(); col = c; first = lo = hi = i; }
    last = i;
    if (y < ys[lo]) lo = i;
    if (y > ys[hi]) hi = i;
  }
  flush();
  return out;
}
function lineData(ys, range) {
  const idx = lod(ys, range);
  return { x: idx.map((i) => (i < 0 ? null : R.x[i])), y: idx.map((i) => (i < 0 ? null : ys[i])),
           customdata: idx };
}
function refreshLines(div, range) {
  const upd = { x: [], y: [], customdata: [] }, which = [];
  div.data.forEach((t, k) => {
    if (t.meta !== 'rows') return;
    const d = lineData(t._series, range);
    upd.x.push(d.x); upd.y.push(d.y); upd.customdata.push(d.customdata); which.push(k);
  });
  return which.length ? Plotly.restyle(div, upd, which) : Promise.resolve();
}

function seriesTraces(c) {
  const ch = D.channels[c];
  const traces = [];
  const B = D.bounds && D.bounds[c];
  if (B && B.x.length) {
    traces.push({ x: B.x, y: B.lo, name: 'min in force', type: 'scatter', mode: 'lines',
      line: { shape: 'hv', color: COLORS.bounds, width: 1, dash: 'dash' },
      hovertemplate: 'min in force %{y} ' + ch.unit + '<extra></extra>', meta: 'bounds',
      legendgroup: 'bounds' });
    traces.push({ x: B.x, y: B.hi, name: 'max in force', type: 'scatter', mode: 'lines',
      line: { shape: 'hv', color: COLORS.bounds, width: 1, dash: 'dash' },
      // the band between min and max (plotly fills gaps wrongly: none where limits are unknown)
      fill: B.hi.includes(null) ? 'none' : 'tonexty', fillcolor: 'rgba(46,125,50,0.06)',
      hovertemplate: 'max in force %{y} ' + ch.unit + '<extra></extra>', meta: 'bounds',
      legendgroup: 'bounds' });
  }
  const W = D.whatif;
  if (W && W.bounds[c].x.length) {
    for (const side of ['lo', 'hi']) {
      traces.push({ x: W.bounds[c].x, y: W.bounds[c][side], type: 'scatter', mode: 'lines',
        name: 'what-if ' + (side === 'lo' ? 'min' : 'max'), meta: 'bounds',
        line: { shape: 'hv', color: COLORS.whatif, width: 1, dash: 'dot' },
        hovertemplate: 'what-if ' + (side === 'lo' ? 'min' : 'max') + ' %{y}<extra></extra>',
        legendgroup: 'whatif-bounds' });
    }
  }
  traces.push(Object.assign(lineData(R.prop[c], null), { name: 'proposed', type: 'scatter',
    mode: 'lines', line: { shape: 'hv', color: COLORS.proposed, width: 1 }, meta: 'rows',
    _series: R.prop[c],
    hovertemplate: 'proposed %{y} ' + ch.unit + ' at ' + XH + '<extra></extra>' }));
  traces.push(Object.assign(lineData(R.out[c], null), { name: 'output', type: 'scatter',
    mode: 'lines', line: { shape: 'hv', color: COLORS.output, width: 1.6 }, meta: 'rows',
    _series: R.out[c],
    hovertemplate: 'output %{y} ' + ch.unit + ' at ' + XH + '<extra></extra>' }));
  if (W && W.x.length) {
    traces.push({ x: W.x, y: W.out[c], name: 'what-if output', type: 'scatter',
      mode: 'markers', marker: { color: COLORS.whatif, size: 6, symbol: 'diamond-open',
        maxdisplayed: sampled(W.x.length) },
      customdata: W.x.map((_, k) => k), meta: 'whatif',
      text: W.summary.map((k, j) => 'what-if differs · seq ' + W.seq[j] + '<br>' + str(k)),
      hovertemplate: '%{text}<extra></extra>' });
  }
  const M = D.markers[c];
  for (const cat of Object.keys(M)) {
    const m = M[cat];
    traces.push({ x: m.i.map((i) => R.x[i]), y: m.y, name: cat, type: 'scatter',
      mode: 'markers', customdata: m.i, meta: 'markers',
      marker: { color: COLORS[cat] || '#555', symbol: SYMBOLS[cat] || 'circle',
        size: markerSize(cat, m.i.length), line: { width: 2, color: COLORS[cat] || '#555' },
        maxdisplayed: sampled(m.i.length) },
      text: m.i.map((i) => cat + ' · ' + describe(i)), hovertemplate: '%{text}<extra></extra>' });
  }
  return traces;
}

const MARGIN = { l: 64, r: 10, t: 30, b: 74 };
function channelPlot(c) {
  const ch = D.channels[c];
  const div = $('plot-' + c);
  const layout = {
    margin: MARGIN, hovermode: 'closest', dragmode: 'zoom',
    title: { text: ch.name + ' (' + ch.unit + ')', x: 0.01, font: { size: 14 } },
    xaxis: xaxis(),
    yaxis: { title: { text: ch.unit }, zeroline: false },
    legend: legendBelow(div.clientHeight || 300, MARGIN),
    yaxis2: Y2,
  };
  return Plotly.newPlot(div, overlays().concat(seriesTraces(c)), layout,
    { displaylogo: false, responsive: true, scrollZoom: true }).then(() => hook(div));
}

function catColor(cat) {
  if (COLORS[cat]) return COLORS[cat];
  if (cat.startsWith('verdict ')) return COLORS[cat.slice(8).toLowerCase()] || '#888';
  return '#555';
}

function timelinePlot() {
  const T = D.timeline;
  const div = $('plot-timeline');
  const cats = [...new Set(T.cat)].map(str);
  const byCat = {};
  T.i.forEach((i, k) => {
    const cat = str(T.cat[k]);
    (byCat[cat] = byCat[cat] || { i: [], text: [] }).i.push(i);
    byCat[cat].text.push(str(T.label[k]) + '<br>' + describe(i));
  });
  const traces = Object.keys(byCat).map((cat) => ({
    x: byCat[cat].i.map((i) => R.x[i]), y: byCat[cat].i.map(() => cat), name: cat,
    type: 'scatter', mode: 'markers', customdata: byCat[cat].i,
    meta: 'markers', text: byCat[cat].text, hovertemplate: '%{text}<extra></extra>',
    marker: { size: 9, symbol: SYMBOLS[cat] || 'circle', maxdisplayed: sampled(byCat[cat].i.length),
      color: catColor(cat),
      line: { width: 1.5, color: COLORS[cat] || '#555' } },
  }));
  const W = D.whatif;
  if (W && W.x.length) {
    cats.push('what-if differs');
    traces.push({ x: W.x, y: W.x.map(() => 'what-if differs'), name: 'what-if differs',
      type: 'scatter', mode: 'markers', customdata: W.x.map((_, k) => k), meta: 'whatif',
      text: W.summary.map((k, j) => 'seq ' + W.seq[j] + '<br>' + str(k)),
      hovertemplate: '%{text}<extra></extra>',
      marker: { size: 8, symbol: 'diamond-open', color: COLORS.whatif,
        maxdisplayed: sampled(W.x.length) } });
  }
  const layout = {
    height: Math.max(160, 60 + 22 * cats.length), showlegend: false, hovermode: 'closest',
    margin: { l: 150, r: 10, t: 24, b: 34 }, xaxis: xaxis(),
    yaxis: { type: 'category', categoryorder: 'array', categoryarray: cats.slice().sort() },
    yaxis2: Y2,
  };
  return Plotly.newPlot(div, overlays().concat(traces), layout,
    { displaylogo: false, responsive: true, scrollZoom: true }).then(() => hook(div));
}

function hook(div) {
  plots.push(div);
  div.on('plotly_click', (ev) => {
    const pt = ev.points && ev.points[0];
    if (!pt) return;
    const meta = pt.data.meta;
    if (meta === 'rows' || meta === 'markers') showRow(pt.customdata);
    else if (meta === 'whatif') showWhatIf(pt.customdata);
    else if (meta === 'operator' && rowOfSeq(pt.customdata) >= 0) showRow(rowOfSeq(pt.customdata));
  });
  div.on('plotly_relayout', (ev) => {
    if (syncing) return;
    let range;
    if (ev['xaxis.range[0]'] !== undefined) range = [ev['xaxis.range[0]'], ev['xaxis.range[1]']];
    else if (ev['xaxis.range']) range = ev['xaxis.range'];
    else if (ev['xaxis.autorange']) range = null;
    else return;
    zoomAll(range ? range.map(axisValue) : null, div);
  });
}

// "Show all" is the whole dump on every plot alike (plotly's own autorange would pad each
// plot differently, and the time axes would no longer line up).
function zoomAll(range, except) {
  syncing = true;
  const upd = { 'xaxis.range': (range || FULL).slice() };
  if (!range) except = null;
  Promise.all(plots.map((p) => (p === except ? Promise.resolve() : Plotly.relayout(p, upd))
    .then(() => refreshLines(p, range))))
    .finally(() => { syncing = false; fillTable(range); });
}

function fillTable(range) {
  const T = D.timeline;
  const body = [];
  let shown = 0, total = 0;
  for (let k = 0; k < T.i.length; k++) {
    const i = T.i[k], x = R.x[i];
    if (range && (x < range[0] || x > range[1])) continue;
    total++;
    if (shown >= TABLE_MAX) continue;
    shown++;
    const v = R.v[i];
    body.push('<tr data-row="' + i + '"><td class="n">' + fmt(x) + '</td><td class="n">' +
      R.seq[i] + '</td><td>' + esc(str(T.label[k])) + '</td><td>' + (v >= 0 ? D.verdicts[v] : '') +
      '</td><td>' + esc(str(R.rule[i])) + '</td><td>' + esc(str(R.reason[i])) +
      '</td><td class="n">' + (R.margin[i] === null ? '' : R.margin[i]) + '</td></tr>');
  }
  $('events-table').innerHTML = '<table class="grid"><thead><tr><th class="n">at</th>' +
    '<th class="n">seq</th><th>what</th><th>verdict</th><th>rule</th><th>reason</th>' +
    '<th class="n">margin</th></tr></thead><tbody>' + body.join('') + '</tbody></table>';
  $('events-count').textContent = total > shown ?
    'showing ' + shown + ' of ' + total + ' entries in this window: zoom in for the rest' :
    total + ' entries' + (range ? ' in this window' : '');
}
const ENTITIES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' };
function esc(s) { return s.replace(/[&<>"]/g, (c) => ENTITIES[c]); }

function put(rec, path, v) {
  let n = path.length;
  if (path[n - 1] === '=') { n--; v = JSON.parse(v); }
  for (let i = 0; i < n - 1; i++) rec = rec[path[i]] || (rec[path[i]] = {});
  rec[path[n - 1]] = v;
}
// The plotted records, rebuilt from their columns (one set per record shape: pack.py).
function unrecords(P) {
  const cols = P.shapes.map((sh) => sh.cols.map((c) => (c.d ? undelta(c.d)
    : c.s ? c.s.map((k) => (k >= 0 ? P.strings[k] : null)) : c.r)));
  const cursor = P.shapes.map(() => 0);
  return P.shape.map((k) => {
    const j = cursor[k]++, rec = {}, paths = P.shapes[k].paths;
    for (let m = 0; m < paths.length; m++) put(rec, paths[m], cols[k][m][j]);
    return rec;
  });
}
function loadRecords() {
  if (!recordsPromise) {
    recordsPromise = unpack('report-records').then((p) => (records = unrecords(p)));
  }
  return recordsPromise;
}
let SEQ_ROW = null;
function rowOfSeq(seq) {
  if (!SEQ_ROW) { SEQ_ROW = new Map(); R.seq.forEach((q, i) => SEQ_ROW.set(q, i)); }
  return SEQ_ROW.has(seq) ? SEQ_ROW.get(seq) : -1;
}
async function showRow(i) {
  const pre = $('record');
  pre.textContent = 'loading…';
  await loadRecords();
  pre.textContent = JSON.stringify(records[i], null, 2);
  $('record-title').textContent = 'Record seq ' + R.seq[i];
  document.querySelectorAll('#events-table tr.sel').forEach((tr) => tr.classList.remove('sel'));
}
async function showWhatIf(k) {
  const W = D.whatif;
  const d = W.detail[k] || {};
  await loadRecords();
  const row = W.row[k];
  $('record-title').textContent = 'What-if difference at seq ' + W.seq[k];
  $('record').textContent = JSON.stringify({ summary: str(W.summary[k]), recorded: d.recorded,
    what_if: d.what_if, record: row >= 0 ? records[row] : null }, null, 2);
}

// ------------------------------------------------------------------ decoding the data
function decodeData() {
  WALL = !!(D.time && D.time.wall);
  XH = WALL ? '%{x|%Y-%m-%d %H:%M:%S.%L} UTC' : '%{x:.3f} s';
  R = D.rows; S = D.strings;
  R.x = times(R.t); R.seq = undelta(R.seq);
  R.out = R.out.map(dec); R.prop = R.prop.map(dec);
  BREAKS = new Set(R.breaks);
  for (const M of D.markers) {
    for (const cat of Object.keys(M)) { M[cat].i = undelta(M[cat].i); M[cat].y = dec(M[cat].y); }
  }
  D.timeline.i = undelta(D.timeline.i);
  for (const inc of D.incidents) { inc.x0 = AX(inc.x0); inc.xt = AX(inc.xt); inc.x1 = AX(inc.x1); }
  for (const l of D.lines) l.x = AX(l.x);
  if (D.bounds) for (const b of D.bounds) b.x = b.x.map(AX);
  const W = D.whatif;
  if (W) {
    W.x = times(W.t); W.seq = undelta(W.seq); W.out = W.out.map(dec);
    for (const b of W.bounds) b.x = b.x.map(AX);
  }
  for (const inp of D.inputs) {
    inp.x = times(inp.t); inp.v = dec(inp.v);
    inp.stale = inp.stale.map(([a, b]) => [AX(a), AX(b)]);
  }
  D.operator.x = times(D.operator.t);
  for (const g of D.segments) { g.x0 = AX(g.x0); g.x1 = AX(g.x1); }
  const [lo, hi] = extent();
  const pad = (hi - lo) * 0.01 || (WALL ? 1000 : 1);
  FULL = [lo - pad, hi + pad];
}
// A range from plotly (numbers, or date strings on a date axis: UTC) → axis numbers.
function axisValue(v) {
  if (typeof v !== 'string') return v;
  return Date.parse(v.replace(' ', 'T') + (v.endsWith('Z') ? '' : 'Z'));
}

// ------------------------------------------------------------------ inputs lane
function extent() {
  const X = R.x;
  let lo = X.length ? X[0] : 0, hi = X.length ? X[X.length - 1] : 1;
  for (const inp of D.inputs) {
    if (inp.x.length) { lo = Math.min(lo, inp.x[0]); hi = Math.max(hi, inp.x[inp.x.length - 1]); }
  }
  return [lo, hi];
}
function hline(y, name, color, dash, span) {
  return { x: span, y: [y, y], name: name, type: 'scatter', mode: 'lines', meta: 'limit',
    line: { color: color, width: 1, dash: dash }, hovertemplate: name + '<extra></extra>' };
}
function inputPlot(k) {
  const inp = D.inputs[k];
  const div = $('plot-input-' + k);
  const span = extent();
  const traces = overlays(inp.stale);
  const unit = inp.unit ? ' ' + inp.unit : '';
  traces.push({ x: inp.x, y: inp.v, name: inp.name, type: 'scatter', mode: 'lines',
    meta: 'input', line: { shape: 'hv', color: inp.number ? '#3949ab' : '#00695c', width: 1.6 },
    fill: inp.number ? 'none' : 'tozeroy', fillcolor: 'rgba(0,105,92,0.10)',
    hovertemplate: inp.name + ' %{y}' + unit + ' at ' + XH + '<extra></extra>' });
  if (inp.number) {
    for (const side of ['min', 'max']) {
      if (inp[side] === null) continue;
      traces.push(hline(inp[side], 'declared ' + side + ' ' + inp[side] + unit, '#2e7d32',
        'dash', span));
    }
  }
  for (const th of inp.thresholds) {
    const y = typeof th.value === 'boolean' ? +th.value : th.value;
    traces.push(hline(y, 'interlock ' + th.label + unit, '#c62828', 'dot', span));
  }
  traces.push({ x: [null], y: [null], name: 'stale (held stale by the governor)', type: 'scatter',
    mode: 'markers', marker: { color: 'rgba(96,96,96,0.35)', symbol: 'square', size: 10 },
    hoverinfo: 'skip', meta: 'legend-only' });
  const height = inp.number ? 240 : 170;
  const layout = {
    height: height, margin: MARGIN,
    hovermode: 'closest', title: { text: 'input ' + inp.name + (inp.unit ? ' (' + inp.unit + ')' :
      inp.number ? '' : ' (bool)') + (inp.estop ? ' · e-stop' : ''), x: 0.01, font: { size: 14 } },
    xaxis: xaxis(), legend: legendBelow(height, MARGIN), yaxis2: Y2,
    yaxis: inp.number ? { title: { text: inp.unit }, zeroline: false }
      : { tickvals: [0, 1], ticktext: ['false', 'true'], range: [-0.2, 1.25], fixedrange: true },
  };
  return Plotly.newPlot(div, traces, layout,
    { displaylogo: false, responsive: true, scrollZoom: true }).then(() => hook(div));
}

// ------------------------------------------------------------------ operator lane
function operatorPlot() {
  const O = D.operator, div = $('plot-operator');
  if (!div) return Promise.resolve();
  const kinds = { accepted: [], refused: [], 'not authentic': [] };
  O.x.forEach((x, k) => {
    const kind = O.authentic[k] === false ? 'not authentic'
      : (O.refused[k] ? 'refused' : 'accepted');
    kinds[kind].push(k);
  });
  const style = { accepted: ['circle', '#00897b'], refused: ['x', '#e65100'],
    'not authentic': ['x-open', '#d50000'] };
  const shown = Object.keys(kinds).filter((k) => kinds[k].length);
  const traces = overlays().concat(shown.map((kind) => ({
    x: kinds[kind].map((k) => O.x[k]), y: kinds[kind].map((k) => str(O.action[k])),
    name: kind, type: 'scatter', mode: 'markers', meta: 'operator',
    customdata: kinds[kind].map((k) => O.seq[k]),
    text: kinds[kind].map((k) => str(O.text[k]) + '<br>seq ' + O.seq[k] + ' · ' + fmt(O.x[k])),
    hovertemplate: '%{text}<extra></extra>',
    marker: { symbol: style[kind][0], color: style[kind][1], size: 11,
      line: { width: 2, color: style[kind][1] } } })));
  const cats = [...new Set(O.action.map(str))].sort();
  const height = Math.max(180, 110 + 24 * cats.length);
  const margin = Object.assign({}, MARGIN, { l: 150 });
  const layout = { height: height, margin: margin,
    hovermode: 'closest', title: { text: 'operator actions', x: 0.01, font: { size: 14 } },
    xaxis: xaxis(), legend: legendBelow(height, margin), yaxis2: Y2,
    yaxis: { type: 'category', categoryorder: 'array', categoryarray: cats } };
  return Plotly.newPlot(div, traces, layout,
    { displaylogo: false, responsive: true, scrollZoom: true }).then(() => hook(div));
}

function showStory(n) {
  const story = $('narrative-' + n);
  if (!story) return;
  $('record-title').textContent = 'Incident ' + n;
  $('record').innerHTML = '';
  $('record').appendChild(story.querySelector('ul').cloneNode(true));
}

async function main() {
  const t0 = performance.now();
  const timings = {};
  await loadPlotly();
  timings.plotly_ms = performance.now() - t0;
  D = await unpack('report-data');
  decodeData();
  timings.unpack_ms = performance.now() - t0;
  window.edgegovReport = { data: D, plots: plots, showRow: showRow, timings: timings,
    AX: AX, zoomAll: zoomAll };
  for (let c = 0; c < D.channels.length; c++) {
    await channelPlot(c);
    timings['plot_' + c + '_ms'] = performance.now() - t0;
    if (c === 0) timings.first_plot_ms = timings['plot_0_ms'];
  }
  for (let k = 0; k < D.inputs.length; k++) await inputPlot(k);
  await operatorPlot();
  await timelinePlot();
  fillTable(null);
  timings.ready_ms = performance.now() - t0;
  timings.start_ms = t0;
  $('events-table').addEventListener('click', (ev) => {
    const tr = ev.target.closest('tr[data-row]');
    if (!tr) return;
    showRow(+tr.dataset.row).then(() => tr.classList.add('sel'));
  });
  document.querySelectorAll('button[data-x0]').forEach((b) => b.addEventListener('click',
    () => {
      zoomAll([AX(+b.dataset.x0), AX(+b.dataset.x1)], null);
      showStory(b.dataset.incident);
      $('channels').scrollIntoView();
    }));
  $('zoom-reset').addEventListener('click', () => zoomAll(null, null));
  document.body.dataset.ready = '1';
}
main().catch((e) => {
  fail(e && e.message ? e.message : String(e));
  document.body.dataset.ready = 'error';
});
})();
"""

__all__ = ["CSS", "JS"]
