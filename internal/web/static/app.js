// Hodei's web UI: a page per hash route, each drawn from the API's answers.
// No policy lives here: the buttons shown are those GET /api/v1/permissions
// allows, and every call goes through the API's own checks.
import { draw, fmt } from './dag.js';
import { drawHistory } from './plot.js';
import { newState, render } from './ansi.js';

const main = document.getElementById('main');
const statusLine = document.getElementById('status');
let session = null; // GET /ui/session
let live = []; // what the current page keeps running: {stop()}
const FINAL = new Set(['succeeded', 'failed', 'canceled', 'skipped']);

class APIError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(path, opts = {}) {
  const headers = { Accept: 'application/json' };
  const method = opts.method || 'GET';
  let body;
  if (method !== 'GET' && session && session.csrf) headers['X-CSRF-Token'] = session.csrf;
  if (opts.json !== undefined) { headers['Content-Type'] = 'application/json'; body = JSON.stringify(opts.json); }
  const r = await fetch(path, { method, headers, body, credentials: 'same-origin' });
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!r.ok) {
    const err = new APIError(r.status, data && data.code, (data && data.message) || r.statusText);
    if (r.status === 401 && session && session.auth && !opts.signIn) {
      session = null;
      stopLive();
      await showSignIn('Your session has ended: sign in again.');
    }
    throw err;
  }
  return data;
}

// h builds an element: h('a', {href, class, onclick}, children...).
function h(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
  return e;
}

const badge = (s) => h('span', { class: 'state ' + s }, s || '');
const when = (t) => (t ? new Date(t).toLocaleString() : '');
const runLink = (id) => '#/runs/' + encodeURIComponent(id);
const jobLink = (run, key) => `${runLink(run)}/jobs/${encodeURIComponent(key)}`;
const setStatus = (msg) => { statusLine.textContent = msg; };

// fill replaces the children of el, leaving out the empty ones.
function fill(el, ...children) {
  el.replaceChildren(...children.filter((c) => c !== null && c !== undefined && c !== false));
}

function page(title, ...children) {
  document.title = title + ' · Hodei';
  fill(main, h('h1', {}, title), ...children);
}

function stopLive() {
  for (const l of live) l.stop();
  live = [];
}

// poll calls fn now and every ms until the page changes or fn returns true.
function poll(fn, ms) {
  let timer = null, stopped = false;
  const tick = async () => {
    let done = false;
    try { done = await fn(); } catch (e) { if (!(e instanceof APIError && e.status === 401)) setStatus(e.message); }
    if (!stopped && !done) timer = setTimeout(tick, ms);
  };
  live.push({ stop() { stopped = true; clearTimeout(timer); } });
  tick();
}

function table(headers, rows, empty) {
  if (!rows.length) return h('p', { class: 'muted' }, empty);
  return h('table', {},
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col', class: x.endsWith(' ') ? 'num' : null }, x.trim())))),
    h('tbody', {}, rows));
}

// ---- header and sign-in ----

function updateHeader() {
  const who = document.getElementById('who');
  const out = document.getElementById('signout');
  if (session && session.signed_in) {
    const p = session.principal;
    who.textContent = `${p.name} · ${p.tenant || 'no tenant'} · ${(p.roles || []).join(', ') || 'no role'}`;
    out.hidden = false;
  } else {
    who.textContent = '';
    out.hidden = true;
  }
  const here = location.hash.split('/')[1] || 'runs';
  for (const a of document.querySelectorAll('header nav a')) {
    if (a.getAttribute('href') === '#/' + here.split('?')[0]) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

async function showSignIn(message) {
  if (!session) session = await api('/ui/session', { signIn: true });
  updateHeader();
  const err = h('p', { class: 'error', id: 'signin-error', role: 'alert' }, message || '');
  const input = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'off', required: true });
  // The form is sent by script as JSON; were it ever sent by the browser
  // itself, it would be a POST refused by /ui/session, never a GET that
  // puts the token in the address.
  const form = h('form', { class: 'card', id: 'token-form', method: 'post', action: '/ui/session' },
    h('h2', {}, 'With an API token'),
    h('label', { for: 'token' }, 'API token', input),
    h('p', {}, h('button', { type: 'submit', class: 'primary' }, 'Sign in with the token')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      session = await api('/ui/session', { method: 'POST', json: { token: input.value }, signIn: true });
      input.value = '';
      await route();
    } catch (e) { err.textContent = e.message; }
  });
  const sso = session.oidc
    ? h('div', { class: 'card' }, h('h2', {}, 'With your organisation’s account'),
      h('a', { class: 'button', id: 'sso', href: '/ui/login' }, 'Sign in with single sign-on'))
    : null;
  page('Sign in to Hodei', sso, form, err);
}

document.getElementById('signout').addEventListener('click', async () => {
  try { await api('/ui/session', { method: 'DELETE' }); } catch (e) { setStatus(e.message); }
  session = null;
  location.hash = '#/runs';
  await route();
});

// ---- runs ----

const SINCE = { '': 'any time', '1h': 'last hour', '24h': 'last day', '7d': 'last week' };
const SINCE_MS = { '1h': 3600e3, '24h': 86400e3, '7d': 7 * 86400e3 };

function runsView(params) {
  const field = (name, label, input) => h('label', { for: 'f-' + name }, label, input);
  const text = (name) => h('input', { id: 'f-' + name, name, value: params.get(name) || '' });
  const select = (name, opts) => h('select', { id: 'f-' + name, name },
    Object.entries(opts).map(([v, l]) => h('option', { value: v, selected: (params.get(name) || '') === v }, l)));
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter runs' },
    field('pipeline', 'Pipeline', text('pipeline')),
    field('state', 'State', select('state', { '': 'any', queued: 'queued', running: 'running', succeeded: 'succeeded', failed: 'failed', canceled: 'canceled' })),
    field('tenant', 'Tenant', text('tenant')),
    field('since', 'Created', select('since', SINCE)),
    h('button', { type: 'submit' }, 'Filter'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) q.set(k, v);
    location.hash = '#/runs' + (q.toString() ? '?' + q : '');
  });
  const holder = h('div', { id: 'runs' });
  page('Runs', form, holder);
  const q = new URLSearchParams({ limit: '200' });
  if (params.get('state')) q.set('state', params.get('state'));
  if (params.get('tenant')) q.set('tenant', params.get('tenant'));
  const pipe = (params.get('pipeline') || '').toLowerCase();
  const since = SINCE_MS[params.get('since')];
  poll(async () => {
    const list = await api('/api/v1/runs?' + q);
    const runs = list.runs.filter((r) => (!pipe || r.pipeline.toLowerCase().includes(pipe)) &&
      (!since || Date.now() - new Date(r.created_at) <= since));
    holder.replaceChildren(table(['Run', 'Pipeline', 'Tenant', 'State', 'Created', 'Duration '], runs.map((r) =>
      h('tr', { 'data-run': r.id },
        h('td', {}, h('a', { href: runLink(r.id) }, r.id)), h('td', {}, r.pipeline), h('td', {}, r.tenant),
        h('td', {}, badge(r.state)), h('td', {}, when(r.created_at)), h('td', { class: 'num' }, fmt(r.duration_seconds)))),
    'No run matches.'));
    setStatus('Updated ' + new Date().toLocaleTimeString());
  }, 2000);
}

// ---- one run ----

function notFound(what) {
  page('Not found', h('p', {}, `${what} does not exist, or you may not see it.`), h('p', {}, h('a', { href: '#/runs' }, 'All runs')));
}

async function runView(id) {
  const gen = routeGen;
  let perms;
  try {
    perms = await api('/api/v1/permissions?run=' + encodeURIComponent(id));
  } catch (e) {
    if (gen !== routeGen) return;
    if (e.status === 404 || e.status === 403) return notFound('Run ' + id);
    throw e;
  }
  // Another page was opened while this one waited: it is not drawn.
  if (gen !== routeGen) return;
  const meta = h('div', { class: 'meta' });
  const cancel = h('button', { type: 'button', class: 'danger', id: 'cancel', hidden: true }, 'Cancel run');
  const rerun = h('button', { type: 'button', id: 'rerun', hidden: true }, 'Run again');
  const rerunFailed = h('button', { type: 'button', id: 'rerun-failed', hidden: true }, 'Run failed jobs again');
  const graph = h('div', { class: 'dag', id: 'dag' });
  const jobs = h('div', { id: 'jobs' });
  page('Run ' + id, meta, h('div', { class: 'actions' }, cancel, rerun, rerunFailed), h('h2', {}, 'Graph'), graph, h('h2', {}, 'Jobs'), jobs);
  cancel.addEventListener('click', async () => {
    cancel.disabled = true;
    try { await api(`/api/v1/runs/${encodeURIComponent(id)}/cancel`, { method: 'POST' }); setStatus('Cancel requested'); } catch (e) { setStatus(e.message); cancel.disabled = false; }
  });
  const again = async (failedOnly) => {
    try {
      const r = await api(`/api/v1/runs/${encodeURIComponent(id)}/rerun${failedOnly ? '?failed_only=true' : ''}`, { method: 'POST' });
      location.hash = runLink(r.id);
    } catch (e) { setStatus(e.message); }
  };
  rerun.addEventListener('click', () => again(false));
  rerunFailed.addEventListener('click', () => again(true));
  poll(async () => {
    let run;
    try { run = await api('/api/v1/runs/' + encodeURIComponent(id)); } catch (e) {
      if (gen !== routeGen) return true;
      if (e.status === 404) { notFound('Run ' + id); return true; }
      throw e;
    }
    if (gen !== routeGen) return true;
    document.title = `${run.pipeline} ${run.state} · Hodei`;
    main.querySelector('h1').textContent = `${run.pipeline} · run ${run.id}`;
    fill(meta, badge(run.state), h('span', {}, 'tenant ' + run.tenant), h('span', {}, 'created ' + when(run.created_at)),
      h('span', {}, 'duration ' + fmt(run.duration_seconds)), run.error ? h('span', { class: 'error' }, run.error) : null);
    const final = FINAL.has(run.state);
    cancel.hidden = !(perms.actions.cancel && !final);
    rerun.hidden = !perms.actions.submit;
    rerunFailed.hidden = !(perms.actions.submit && final && run.jobs.some((j) => j.state !== 'succeeded'));
    graph.replaceChildren(draw(run.jobs, (j) => jobLink(run.id, j.key)));
    jobs.replaceChildren(table(['Job', 'State', 'Attempt ', 'Worker', 'Duration ', 'Predicted ', 'Waiting because', 'Approval'], run.jobs.map((j) =>
      h('tr', { 'data-job': j.key },
        h('td', {}, h('a', { href: jobLink(run.id, j.key) }, j.key)), h('td', {}, badge(j.state), j.carried ? h('a', { class: 'carried', href: jobLink(j.carried.run_id, j.key), title: `carried over from attempt ${j.carried.attempt} of run ${j.carried.run_id}` }, ' carried') : null),
        h('td', { class: 'num' }, `${j.attempt}/${j.max_attempts}`), h('td', {}, j.worker || ''),
        h('td', { class: 'num' }, fmt(j.duration_seconds)), h('td', { class: 'num' }, j.predicted_duration_s ? '~' + fmt(j.predicted_duration_s) : ''),
        h('td', { class: 'reason' }, j.reason ? `${j.reason}: ${j.reason_detail || ''}` : (j.error ? h('span', { class: 'error' }, j.error) : '')),
        h('td', { class: 'approval' }, approval(run.id, j, perms)))),
    'No jobs.'));
    setStatus('Updated ' + new Date().toLocaleTimeString());
    return final;
  }, 1000);
}

// approval is the Approval cell of a job of an environment: Approve and
// Reject while it waits, where the permissions allow approveJob (the API
// also checks the job's approvers), else what was decided.
function approval(runID, j, perms) {
  const a = j.approval;
  if (!a) return '';
  if (j.state === 'waiting_approval') {
    const until = a.deadline ? ` until ${when(a.deadline)}` : '';
    if (!perms.actions.approveJob) return `${a.environment}: waiting${until}`;
    const decide = (verb) => async (ev) => {
      ev.target.disabled = true;
      try {
        await api(`/api/v1/runs/${encodeURIComponent(runID)}/jobs/${encodeURIComponent(j.key)}/${verb}`, { method: 'POST', json: {} });
        setStatus(`${j.key} ${verb === 'approve' ? 'approved' : 'rejected'}`);
      } catch (e) { setStatus(e.message); ev.target.disabled = false; }
    };
    return [h('span', {}, `${a.environment}${until} `),
      h('button', { type: 'button', class: 'approve', 'data-job': j.key, onclick: decide('approve') }, 'Approve'),
      h('button', { type: 'button', class: 'reject danger', 'data-job': j.key, onclick: decide('reject') }, 'Reject')];
  }
  if (!a.decision) return a.environment;
  const by = a.decided_by ? ` by ${a.decided_by}` : '';
  return `${a.environment}: ${a.decision.replace('_', ' ')}${by}${a.decided_at ? ' at ' + when(a.decided_at) : ''}${a.comment ? ' (' + a.comment + ')' : ''}`;
}

// ---- one job and its log ----

function logView(log, search, count) {
  const attempts = new Map();
  const lines = [];
  let query = '';
  let current = -1;
  const attempt = (n) => {
    if (!attempts.has(n)) {
      const box = h('section', { 'data-attempt': n }, h('h3', {}, 'Attempt ' + n));
      log.appendChild(box);
      attempts.set(n, { box, st: newState(), line: null });
    }
    return attempts.get(n);
  };
  const classify = (l) => {
    l.el.classList.toggle('step', l.plain.startsWith('==> step '));
    l.el.classList.toggle('step-end', l.plain.startsWith('<== step '));
    l.el.classList.toggle('match', !!query && l.plain.toLowerCase().includes(query));
  };
  const newLine = (a, at) => {
    const ts = h('span', { class: 'ts', title: at || null }, at ? new Date(at).toISOString().slice(11, 23) : '');
    const text = h('span', { class: 'text' });
    const el = h('div', { class: 'line' }, ts, text);
    a.box.appendChild(el);
    const l = { el, text, plain: '' };
    lines.push(l);
    return l;
  };
  const counted = () => {
    const n = lines.filter((l) => l.el.classList.contains('match')).length;
    count.textContent = query ? `${n} match${n === 1 ? '' : 'es'}` : '';
  };
  search.addEventListener('input', () => {
    query = search.value.trim().toLowerCase();
    current = -1;
    for (const l of lines) { classify(l); l.el.classList.remove('current'); }
    counted();
  });
  search.addEventListener('keydown', (ev) => {
    if (ev.key !== 'Enter') return;
    ev.preventDefault();
    const matches = lines.filter((l) => l.el.classList.contains('match'));
    if (!matches.length) return;
    if (current >= 0 && matches[current % matches.length]) matches[current % matches.length].el.classList.remove('current');
    current = (current + 1) % matches.length;
    matches[current].el.classList.add('current');
    matches[current].el.scrollIntoView({ block: 'center' });
  });
  return {
    add(ev) {
      const a = attempt(ev.attempt);
      const parts = ev.data.split('\n');
      parts.forEach((part, i) => {
        const last = i === parts.length - 1;
        if (last && part === '') return;
        if (!a.line) a.line = newLine(a, ev.at);
        a.line.plain += render(a.line.text, part.replace(/\r$/, ''), a.st);
        classify(a.line);
        if (!last) a.line = null;
      });
      if (query) counted();
    },
    clear() { attempts.clear(); lines.length = 0; log.replaceChildren(); },
  };
}

async function jobView(runID, key) {
  const base = `/api/v1/runs/${encodeURIComponent(runID)}`;
  const gen = routeGen;
  let job;
  try { job = await api(`${base}/jobs/${encodeURIComponent(key)}`); } catch (e) {
    if (gen !== routeGen) return;
    if (e.status === 404 || e.status === 403) return notFound(`Job ${key} of run ${runID}`);
    throw e;
  }
  if (gen !== routeGen) return;
  const meta = h('div', { class: 'meta' });
  const attempts = h('div', { id: 'attempts' });
  const search = h('input', { id: 'log-search', type: 'search', placeholder: 'text in the log' });
  const count = h('span', { id: 'log-count', class: 'muted', 'aria-live': 'polite' });
  const follow = h('input', { id: 'follow', type: 'checkbox', checked: true });
  const stamps = h('input', { id: 'timestamps', type: 'checkbox', checked: true });
  const download = h('a', { id: 'download', download: `${runID}-${key}.log` }, 'Download');
  const log = h('div', { class: 'log', id: 'log', role: 'log', tabindex: '0', 'aria-label': 'Output of ' + key });
  const setDownload = () => download.setAttribute('href', `${base}/logs?job=${encodeURIComponent(key)}${stamps.checked ? '&timestamps=1' : ''}`);
  setDownload();
  stamps.addEventListener('change', () => { log.classList.toggle('no-ts', !stamps.checked); setDownload(); });
  follow.addEventListener('change', () => { if (follow.checked) log.scrollTop = log.scrollHeight; });
  page(`Job ${key}`, h('p', {}, h('a', { href: runLink(runID) }, '← run ' + runID)), meta,
    h('h2', {}, 'Attempts'), attempts, h('h2', {}, 'Log'),
    h('div', { class: 'toolbar' },
      h('label', { for: 'log-search' }, 'Search', search), count,
      h('label', { class: 'inline', for: 'follow' }, follow, 'Follow'),
      h('label', { class: 'inline', for: 'timestamps' }, stamps, 'Timestamps'), download),
    log);
  const show = (j) => {
    fill(meta, badge(j.state), h('span', {}, `attempt ${j.attempt}/${j.max_attempts}`), j.worker ? h('span', {}, 'worker ' + j.worker) : null,
      h('span', {}, 'duration ' + fmt(j.duration_seconds)), j.predicted_duration_s ? h('span', {}, 'predicted ~' + fmt(j.predicted_duration_s)) : null,
      j.reason ? h('span', { class: 'reason', id: 'reason' }, `waiting: ${j.reason}: ${j.reason_detail || ''}`) : null,
      j.error ? h('span', { class: 'error' }, j.error) : null);
    attempts.replaceChildren(table(['Attempt ', 'Worker', 'State', 'Started', 'Duration ', 'Ended because'], (j.attempts || []).map((a) => {
      const secs = a.started_at ? ((a.finished_at ? new Date(a.finished_at) : new Date()) - new Date(a.started_at)) / 1000 : 0;
      return h('tr', {}, h('td', { class: 'num' }, a.n), h('td', {}, a.worker), h('td', {}, badge(a.state)), h('td', {}, when(a.started_at)),
        h('td', { class: 'num' }, fmt(secs)), h('td', {}, a.reason || a.error || ''));
    }), 'No attempt yet.'));
  };
  show(job);
  const view = logView(log, search, count);
  let refreshing = false;
  const refresh = async () => {
    if (refreshing) return;
    refreshing = true;
    try { show(await api(`${base}/jobs/${encodeURIComponent(key)}`)); } catch (e) { setStatus(e.message); } finally { refreshing = false; }
  };
  log.addEventListener('scroll', () => {
    const bottom = log.scrollHeight - log.scrollTop - log.clientHeight < 4;
    if (!bottom && follow.checked && log.dataset.auto !== '1') follow.checked = false;
    log.dataset.auto = '';
  });
  let es = null, ended = false, retry = null;
  const open = () => {
    view.clear();
    es = new EventSource(`${base}/logs?follow=1&job=${encodeURIComponent(key)}`);
    es.addEventListener('log', (m) => {
      view.add(JSON.parse(m.data));
      if (follow.checked) { log.dataset.auto = '1'; log.scrollTop = log.scrollHeight; }
    });
    es.addEventListener('job', () => refresh());
    es.addEventListener('end', () => { ended = true; es.close(); refresh(); setStatus('The job has ended.'); });
    es.onerror = () => {
      es.close();
      if (ended) return;
      setStatus('Log stream interrupted; reconnecting…');
      // Ask once in plain HTTP first: a session that has ended shows the
      // sign-in page (and stops this page) instead of retrying forever.
      const again = async () => {
        try { await api(`${base}/jobs/${encodeURIComponent(key)}`); open(); } catch (e) {
          if (!(e instanceof APIError && e.status === 401)) retry = setTimeout(again, 5000);
        }
      };
      retry = setTimeout(again, 2000);
    };
  };
  live.push({ stop() { if (es) es.close(); clearTimeout(retry); } });
  open();
  setStatus('Following the log');
}

// ---- queue ----

function queueView() {
  const holder = h('div', { id: 'queue' });
  page('Queue', h('p', { class: 'muted' }, 'Jobs ready to run that no worker has taken yet, and why.'), holder);
  poll(async () => {
    const lists = await Promise.all(['queued', 'running'].map((s) => api(`/api/v1/runs?state=${s}&limit=100`)));
    const runs = lists.flatMap((l) => l.runs);
    const full = await Promise.all(runs.map((r) => api('/api/v1/runs/' + encodeURIComponent(r.id)).catch(() => null)));
    const rows = [];
    for (const run of full) {
      if (!run) continue;
      for (const j of run.jobs.filter((x) => x.state === 'queued')) {
        rows.push(h('tr', { 'data-job': j.key },
          h('td', {}, h('a', { href: runLink(run.id) }, run.id)), h('td', {}, h('a', { href: jobLink(run.id, j.key) }, j.key)),
          h('td', {}, run.tenant), h('td', {}, run.pipeline), h('td', {}, when(j.queued_at)),
          h('td', { class: 'reason' }, j.reason || 'about to be placed'), h('td', {}, j.reason_detail || ''), h('td', {}, when(j.eta))));
      }
    }
    holder.replaceChildren(table(['Run', 'Job', 'Tenant', 'Pipeline', 'Waiting since', 'Reason', 'Detail', 'ETA'], rows, 'No job is waiting.'));
    setStatus('Updated ' + new Date().toLocaleTimeString());
  }, 3000);
}

// ---- workers and pools ----

const gib = (b) => (b / 2 ** 30).toFixed(1) + ' GiB';

function workersView() {
  const workers = h('div', { id: 'workers' });
  const pools = h('div', { id: 'pools' });
  const plots = h('div', { id: 'pool-plots' });
  page('Workers', workers, h('h2', {}, 'Pools'), pools, plots);
  poll(async () => {
    const wl = await api('/api/v1/workers');
    workers.replaceChildren(table(['Worker', 'Pool', 'State', 'Labels', 'CPU ', 'Memory ', 'Jobs ', 'Last seen'], wl.workers.map((w) =>
      h('tr', {}, h('td', {}, w.id), h('td', {}, w.pool), h('td', {}, badge(w.state)), h('td', {}, (w.labels || []).join(', ')),
        h('td', { class: 'num' }, `${(w.used_cpu_milli / 1000).toFixed(1)} / ${(w.cpu_milli / 1000).toFixed(1)}`),
        h('td', { class: 'num' }, `${gib(w.used_memory_bytes)} / ${gib(w.memory_bytes)}`),
        h('td', { class: 'num' }, (w.jobs || []).length), h('td', {}, when(w.last_seen)))), 'No worker.'));
    try {
      const pl = await api('/api/v1/pools');
      const hists = await Promise.all(pl.pools.map((p) => api(`/api/v1/pools/${encodeURIComponent(p.name)}/history`).catch(() => null)));
      plots.replaceChildren(...hists.filter(Boolean).map((hist) => h('section', { class: 'pool-plot', 'data-pool': hist.pool },
        h('h3', {}, `Pool ${hist.pool}`), drawHistory(hist))));
      pools.replaceChildren(table(['Pool', 'Provider', 'Size ', 'Min–max', 'Idle ', 'Busy ', 'Pending ', 'Demand ', 'Forecast ', 'Cost/h ', 'Circuit', 'Last error'],
        pl.pools.map((p) => h('tr', {}, h('td', {}, p.name), h('td', {}, p.provider), h('td', { class: 'num' }, p.size), h('td', {}, `${p.min}–${p.max}`),
          h('td', { class: 'num' }, p.idle), h('td', { class: 'num' }, p.busy), h('td', { class: 'num' }, p.pending), h('td', { class: 'num' }, p.demand),
          h('td', { class: 'num' }, p.forecast ?? ''), h('td', { class: 'num' }, p.cost_per_hour), h('td', {}, p.circuit), h('td', { class: 'error' }, p.last_error || ''))),
        'No pool: the workers are the server’s own.'));
    } catch (e) {
      if (e.status !== 403) throw e;
      pools.replaceChildren(h('p', { class: 'muted' }, 'Your role may not see the pools.'));
      plots.replaceChildren();
    }
    setStatus('Updated ' + new Date().toLocaleTimeString());
  }, 5000);
}

// ---- router ----

// routeGen counts the pages opened: a page that waits for the API before
// it draws itself draws nothing if another was opened meanwhile.
let routeGen = 0;

async function route() {
  routeGen++;
  stopLive();
  setStatus('');
  try {
    if (!session) session = await api('/ui/session', { signIn: true });
    updateHeader();
    if (session.auth && !session.signed_in) return await showSignIn();
    const [path, query] = location.hash.slice(1).split('?');
    const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
    const params = new URLSearchParams(query || '');
    if (parts.length === 0 || (parts[0] === 'runs' && parts.length === 1)) runsView(params);
    else if (parts[0] === 'runs' && parts.length === 2) await runView(parts[1]);
    else if (parts[0] === 'runs' && parts[2] === 'jobs' && parts.length === 4) await jobView(parts[1], parts[3]);
    else if (parts[0] === 'queue') queueView();
    else if (parts[0] === 'workers') workersView();
    else notFound('Page ' + location.hash);
  } catch (e) {
    if (e instanceof APIError && e.status === 401) return;
    page('Error', h('p', { class: 'error', role: 'alert' }, e.message));
  }
}

// The skip link moves the focus without changing the route.
document.querySelector('.skip').addEventListener('click', (ev) => { ev.preventDefault(); main.focus(); });
window.addEventListener('hashchange', async () => { await route(); main.focus(); });
route();
