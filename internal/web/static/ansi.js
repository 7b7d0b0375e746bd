// ANSI SGR colours to DOM spans. A State carries the attributes across
// chunks of one log; other escape sequences are dropped.

const ESC = /\x1b\[([0-9;?]*)([A-Za-z])|\x1b[()][0-9A-Za-z]|\x1b[=>]/g;

export function newState() {
  return { fg: null, bg: null, bold: false, dim: false, italic: false, underline: false };
}

function xterm256(n) {
  if (n < 16) return null; // classes
  if (n >= 232) { const v = 8 + (n - 232) * 10; return `rgb(${v},${v},${v})`; }
  n -= 16;
  const c = [Math.floor(n / 36), Math.floor(n / 6) % 6, n % 6].map((x) => (x ? 55 + x * 40 : 0));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

function colour(codes, i) {
  // 38;5;N or 38;2;R;G;B (and 48 for the background): returns [value, used]
  if (codes[i + 1] === 5) {
    const n = codes[i + 2] ?? 0;
    return [n < 16 ? n : xterm256(n), 2];
  }
  if (codes[i + 1] === 2) {
    return [`rgb(${codes[i + 2] ?? 0},${codes[i + 3] ?? 0},${codes[i + 4] ?? 0})`, 4];
  }
  return [null, 0];
}

function apply(st, params) {
  const codes = params === '' ? [0] : params.split(';').map((x) => (x === '' ? 0 : Number(x)));
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i];
    if (c === 0) Object.assign(st, newState());
    else if (c === 1) st.bold = true;
    else if (c === 2) st.dim = true;
    else if (c === 3) st.italic = true;
    else if (c === 4) st.underline = true;
    else if (c === 22) { st.bold = false; st.dim = false; }
    else if (c === 23) st.italic = false;
    else if (c === 24) st.underline = false;
    else if (c >= 30 && c <= 37) st.fg = c - 30;
    else if (c >= 90 && c <= 97) st.fg = c - 90 + 8;
    else if (c === 39) st.fg = null;
    else if (c >= 40 && c <= 47) st.bg = c - 40;
    else if (c >= 100 && c <= 107) st.bg = c - 100 + 8;
    else if (c === 49) st.bg = null;
    else if (c === 38 || c === 48) {
      const [v, used] = colour(codes, i);
      if (c === 38) st.fg = v; else st.bg = v;
      i += used;
    }
  }
}

function span(text, st) {
  const plain = st.fg === null && st.bg === null && !st.bold && !st.dim && !st.italic && !st.underline;
  if (plain) return document.createTextNode(text);
  const el = document.createElement('span');
  el.textContent = text;
  if (st.bold) el.classList.add('ansi-bold');
  if (st.dim) el.classList.add('ansi-dim');
  if (st.italic) el.classList.add('ansi-italic');
  if (st.underline) el.classList.add('ansi-underline');
  if (typeof st.fg === 'number') el.classList.add('fg-' + st.fg);
  else if (st.fg) el.style.color = st.fg;
  if (typeof st.bg === 'number') el.classList.add('bg-' + (st.bg % 8));
  else if (st.bg) el.style.backgroundColor = st.bg;
  return el;
}

// render appends text (no newlines) to parent, in the colours st gives and
// changes; it returns the text without escapes (for the search).
export function render(parent, text, st) {
  let last = 0;
  let plain = '';
  ESC.lastIndex = 0;
  for (let m; (m = ESC.exec(text)) !== null;) {
    if (m.index > last) {
      const t = text.slice(last, m.index);
      parent.appendChild(span(t, st));
      plain += t;
    }
    if (m[2] === 'm') apply(st, m[1]);
    last = ESC.lastIndex;
  }
  if (last < text.length) {
    const t = text.slice(last);
    parent.appendChild(span(t, st));
    plain += t;
  }
  return plain;
}
