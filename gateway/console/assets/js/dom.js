// Small DOM helpers. Everything the console shows is built with createElement and
// textContent: no HTML strings, so nothing an API answer holds can become markup.

const SVG_NS = 'http://www.w3.org/2000/svg';

function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') el.textContent = v;
    else if (k === 'class') el.setAttribute('class', Array.isArray(v) ? v.filter(Boolean).join(' ') : v);
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'checked' || k === 'value' || k === 'disabled' || k === 'selected' || k === 'hidden') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// h makes an HTML element: h('a', {href: '#/x', class: 'y'}, 'text', child, ...).
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

// s makes an SVG element.
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

// add appends children to el as h does: arrays flattened, null, undefined and false skipped.
export function add(el, ...children) {
  append(el, children);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

export function fmtNumber(n, digits = 0) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  return n.toLocaleString(undefined, {maximumFractionDigits: digits, minimumFractionDigits: 0});
}

// fmtRate shows a per-second rate with the digits that matter.
export function fmtRate(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return '–';
  if (x === 0) return '0/s';
  if (x < 0.1) return x.toFixed(3) + '/s';
  if (x < 10) return x.toFixed(2) + '/s';
  return fmtNumber(x, 1) + '/s';
}

// fmtAge shows seconds as "3h 4m", "4m 12s" or "12s".
export function fmtAge(sec) {
  if (sec === null || sec === undefined || Number.isNaN(sec)) return '–';
  sec = Math.max(0, Math.round(sec));
  const d = Math.floor(sec / 86400), hr = Math.floor(sec % 86400 / 3600), m = Math.floor(sec % 3600 / 60), s = sec % 60;
  if (d) return `${d}d ${hr}h`;
  if (hr) return `${hr}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

// fmtDuration shortens a Go duration: 24h0m0s reads 24h, 1m30s stays.
export function fmtDuration(s) {
  return String(s).replace(/(\d)h0m0s$/, '$1h').replace(/(\d)m0s$/, '$1m');
}

function pad(n) { return String(n).padStart(2, '0'); }

// fmtTime shows a time in the browser's zone: 2025-01-02 15:04:05.
export function fmtTime(t) {
  if (!t) return '–';
  const d = t instanceof Date ? t : new Date(t);
  if (Number.isNaN(d.getTime())) return String(t);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

// toLocalInput turns an RFC 3339 time into a datetime-local input's value, in the
// browser's zone; fromLocalInput turns such a value back into RFC 3339 (UTC).
export function toLocalInput(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const off = d.getTimezoneOffset() * 60000;
  return new Date(d.getTime() - off).toISOString().slice(0, 19);
}
export function fromLocalInput(v) { return v ? new Date(v).toISOString().replace(/\.000Z$/, 'Z') : ''; }

export function ago(t) {
  if (!t) return '–';
  const sec = (Date.now() - new Date(t).getTime()) / 1000;
  return sec < 0 ? 'just now' : fmtAge(sec) + ' ago';
}

// pretty indents JSON text for reading; anything else is returned as it is.
export function pretty(v) {
  if (typeof v !== 'string') return JSON.stringify(v, null, 2);
  try { return JSON.stringify(JSON.parse(v), null, 2); } catch { return v; }
}

export function pill(text, kind) { return h('span', {class: ['pill', kind]}, text); }

let toastTimer;
// toast shows a short message in a corner for a few seconds.
export function toast(message, bad = false) {
  document.querySelector('.toast')?.remove();
  const t = h('div', {class: ['toast', bad && 'bad'], role: 'status'}, message);
  document.body.append(t);
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => t.remove(), bad ? 8000 : 4000);
}

// confirmDialog asks before an action; it resolves to true when confirmed.
export function confirmDialog({title, body, ok, danger = false}) {
  const dlg = document.getElementById('confirm-dialog');
  const form = document.getElementById('confirm-form');
  const okButton = document.getElementById('confirm-ok');
  const cancel = document.getElementById('confirm-cancel');
  document.getElementById('confirm-title').textContent = title;
  const b = clear(document.getElementById('confirm-body'));
  for (const part of [].concat(body)) b.append(typeof part === 'string' ? h('p', {}, part) : part);
  okButton.textContent = ok;
  okButton.className = danger ? 'primary danger' : 'primary';
  return new Promise(resolve => {
    const done = v => {
      form.removeEventListener('submit', onSubmit);
      cancel.removeEventListener('click', onCancel);
      dlg.removeEventListener('cancel', onCancel);
      dlg.close();
      resolve(v);
    };
    const onSubmit = e => { e.preventDefault(); done(true); };
    const onCancel = e => { e.preventDefault(); done(false); };
    form.addEventListener('submit', onSubmit);
    cancel.addEventListener('click', onCancel);
    dlg.addEventListener('cancel', onCancel);
    dlg.showModal();
    cancel.focus();
  });
}

// errorBox shows an API error where the data would have been.
export function errorBox(err) {
  return h('p', {class: 'error'}, err && err.message ? err.message : String(err));
}
