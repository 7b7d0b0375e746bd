// The graph of a run's jobs, drawn from their needs as SVG: one column per
// depth (the longest chain of needs before a job), jobs linked to their
// pages.

const NS = 'http://www.w3.org/2000/svg';
const W = 200, H = 50, GX = 60, GY = 16, PAD = 12;

function el(name, attrs, parent) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

// parents maps each job key to the keys of the jobs it needs: a need names
// a job's key, or its name (every job of a matrix).
function parents(jobs) {
  const byKey = new Map(jobs.map((j) => [j.key, j]));
  const out = new Map();
  for (const j of jobs) {
    const ps = new Set();
    for (const n of j.needs || []) {
      if (byKey.has(n)) ps.add(n);
      else for (const o of jobs) if (o.name === n) ps.add(o.key);
    }
    ps.delete(j.key);
    out.set(j.key, [...ps]);
  }
  return out;
}

export function layout(jobs) {
  const ps = parents(jobs);
  const depth = new Map();
  const visit = (k, seen) => {
    if (depth.has(k)) return depth.get(k);
    if (seen.has(k)) return 0; // a cycle cannot pass validation; be safe
    seen.add(k);
    let d = 0;
    for (const p of ps.get(k) || []) d = Math.max(d, visit(p, seen) + 1);
    depth.set(k, d);
    return d;
  };
  const cols = [];
  for (const j of jobs) {
    const d = visit(j.key, new Set());
    (cols[d] ||= []).push(j);
  }
  const pos = new Map();
  cols.forEach((col, x) => col.forEach((j, y) => pos.set(j.key, { x: PAD + x * (W + GX), y: PAD + y * (H + GY) })));
  const width = PAD * 2 + cols.length * W + Math.max(0, cols.length - 1) * GX;
  const height = PAD * 2 + Math.max(1, ...cols.map((c) => c.length)) * (H + GY) - GY;
  return { ps, pos, width, height };
}

function fmt(s) {
  if (!s) return '';
  if (s < 60) return s.toFixed(1) + 's';
  return Math.floor(s / 60) + 'm' + String(Math.round(s % 60)).padStart(2, '0') + 's';
}

// draw returns an <svg> of the run's jobs; href(job) is each node's link.
export function draw(jobs, href) {
  const { ps, pos, width, height } = layout(jobs);
  const svg = el('svg', { width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'Graph of the jobs and their needs' });
  for (const j of jobs) {
    const to = pos.get(j.key);
    for (const p of ps.get(j.key)) {
      const from = pos.get(p);
      const x1 = from.x + W, y1 = from.y + H / 2, x2 = to.x, y2 = to.y + H / 2, mx = (x1 + x2) / 2;
      el('path', { class: 'edge', d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}` }, svg);
    }
  }
  for (const j of jobs) {
    const p = pos.get(j.key);
    const a = el('a', { href: href(j), class: 'node ' + j.state, 'data-job': j.key }, svg);
    el('title', {}, a).textContent = `${j.key}: ${j.state}`;
    el('rect', { x: p.x, y: p.y, width: W, height: H }, a);
    const name = j.key.length > 26 ? j.key.slice(0, 25) + '…' : j.key;
    el('text', { x: p.x + 10, y: p.y + 20 }, a).textContent = name;
    let sub = j.state;
    if (j.duration_seconds) sub += ' · ' + fmt(j.duration_seconds);
    if (j.predicted_duration_s) sub += ' / ~' + fmt(j.predicted_duration_s);
    if (j.attempt > 1) sub += ' · try ' + j.attempt;
    el('text', { x: p.x + 10, y: p.y + 38, class: 'sub' }, a).textContent = sub;
  }
  return svg;
}

export { fmt };
