// The pools page's plots, drawn as SVG from GET /api/v1/pools/{pool}/history:
// one of the pool's workers against its demand and the autoscaler's
// forecast, one of what its workers cost since the server started.

const NS = 'http://www.w3.org/2000/svg';
const W = 560, H = 180, L = 44, R = 12, T = 12, B = 26;

function el(name, attrs, parent) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

const clock = (t) => new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });

// chart draws series ({name, label, values: [number|null]}) over the
// points' times; a null value leaves a gap (no forecast in use then).
function chart(points, series, title, unit) {
  const svg = el('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img', class: 'plot', 'aria-label': title });
  el('title', {}, svg).textContent = title;
  const t0 = Date.parse(points[0].at), t1 = Date.parse(points[points.length - 1].at);
  const span = Math.max(t1 - t0, 1);
  let top = 0;
  for (const s of series) for (const v of s.values) if (v !== null && v !== undefined) top = Math.max(top, v);
  top = top > 0 ? top * 1.1 : 1;
  const x = (t) => L + ((Date.parse(t) - t0) / span) * (W - L - R);
  const y = (v) => T + (1 - v / top) * (H - T - B);
  // Axes, with the top value and the first and last times.
  el('line', { class: 'axis', x1: L, y1: T, x2: L, y2: H - B }, svg);
  el('line', { class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B }, svg);
  el('text', { class: 'tick', x: L - 4, y: T + 4, 'text-anchor': 'end' }, svg).textContent = fmtValue(top, unit);
  el('text', { class: 'tick', x: L - 4, y: H - B, 'text-anchor': 'end' }, svg).textContent = '0';
  el('text', { class: 'tick', x: L, y: H - 8 }, svg).textContent = clock(points[0].at);
  el('text', { class: 'tick', x: W - R, y: H - 8, 'text-anchor': 'end' }, svg).textContent = clock(points[points.length - 1].at);
  series.forEach((s, i) => {
    // One polyline per run of values without a gap.
    let run = [], vals = [];
    let n = 0;
    const flush = () => {
      if (run.length) el('polyline', { class: 'series ' + s.name, 'data-series': s.name, 'data-values': vals.join(' '), points: run.join(' ') }, svg);
      run = [];
      vals = [];
    };
    points.forEach((p, k) => {
      const v = s.values[k];
      if (v === null || v === undefined) { flush(); return; }
      run.push(`${x(p.at).toFixed(1)},${y(v).toFixed(1)}`);
      vals.push(v);
      n++;
    });
    flush();
    const g = el('g', { class: 'legend ' + s.name, 'data-legend': s.name, 'data-points': n }, svg);
    el('rect', { x: L + 8 + i * 130, y: T, width: 10, height: 10 }, g);
    el('text', { x: L + 22 + i * 130, y: T + 9 }, g).textContent = `${s.label}${n ? '' : ' (none)'}`;
  });
  return svg;
}

function fmtValue(v, unit) {
  if (unit === 'workers') return String(Math.round(v * 10) / 10);
  if (v < 0.01) return v.toPrecision(2); // a few seconds of one worker
  return v < 10 ? v.toFixed(2) : v.toFixed(0);
}

// drawHistory returns the plots of a pool's history: a <div> with an SVG
// of demand, workers and forecast, and one of the cost (or worker-hours
// when the pool has no cost_per_hour).
export function drawHistory(hist) {
  const div = document.createElement('div');
  div.className = 'plots';
  div.dataset.pool = hist.pool;
  const pts = hist.points || [];
  if (pts.length < 2) {
    const p = document.createElement('p');
    p.className = 'muted';
    p.textContent = 'Not enough history yet to plot.';
    div.appendChild(p);
    return div;
  }
  div.appendChild(chart(pts, [
    { name: 'demand', label: 'demand (jobs)', values: pts.map((p) => p.demand) },
    { name: 'workers', label: 'workers', values: pts.map((p) => p.workers) },
    { name: 'forecast', label: 'forecast', values: pts.map((p) => p.forecast ?? null) },
  ], `Pool ${hist.pool}: demand, workers and forecast`, 'workers'));
  const priced = hist.cost_per_hour > 0;
  div.appendChild(chart(pts, [
    priced
      ? { name: 'cost', label: `cost (${hist.cost_per_hour}/h)`, values: pts.map((p) => p.cost ?? null) }
      : { name: 'cost', label: 'worker-hours', values: pts.map((p) => p.worker_hours ?? null) },
  ], `Pool ${hist.pool}: ${priced ? 'cost' : 'worker-hours'} since the server started`, 'cost'));
  return div;
}
