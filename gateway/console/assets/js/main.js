// The console's shell: navigation, the token prompt, the readiness pill, and the router
// that shows one page at a time (#/overview, #/destinations, ...).

import {pages} from './pages.js';
import * as api from './api.js';
import {h, clear, errorBox} from './dom.js';

const root = document.getElementById('page');
const nav = document.getElementById('nav');
const banner = document.getElementById('banner');

for (const p of pages) nav.append(h('a', {href: '#/' + p.path, dataset: {page: p.path}}, p.title));

// The token prompt: a modal dialog, resolved when the operator submits a token.
api.onTokenNeeded(wrong => new Promise(resolve => {
  const dlg = document.getElementById('token-dialog');
  const form = document.getElementById('token-form');
  const input = document.getElementById('token-input');
  const err = document.getElementById('token-error');
  err.hidden = !wrong;
  err.textContent = wrong ? 'The admin port refused that token: try again.' : '';
  input.value = '';
  const onSubmit = e => {
    e.preventDefault();
    if (!input.value) return;
    form.removeEventListener('submit', onSubmit);
    dlg.close();
    document.getElementById('forget').hidden = false;
    resolve(input.value);
  };
  form.addEventListener('submit', onSubmit);
  dlg.addEventListener('cancel', e => e.preventDefault(), {once: true});
  if (!dlg.open) dlg.showModal();
  input.focus();
}));

document.getElementById('forget').hidden = !api.hasToken();
document.getElementById('forget').addEventListener('click', () => {
  api.forgetToken();
  location.reload();
});

// The readiness pill, from GET /readyz.
const ready = document.getElementById('ready');
async function checkReady() {
  try {
    await api.get('/readyz');
    ready.textContent = 'ready';
    ready.className = 'pill ok';
    ready.title = 'GET /readyz: ready';
  } catch (e) {
    ready.textContent = e.status === 0 ? 'unreachable' : 'not ready';
    ready.className = 'pill bad';
    ready.title = e.message;
  }
}
checkReady();
setInterval(checkReady, 10000);

let stop = null;
let generation = 0;

function parseHash() {
  const [path, q] = location.hash.replace(/^#\/?/, '').split('?');
  return {path: path || 'overview', params: new URLSearchParams(q || '')};
}

async function show() {
  const {path, params} = parseHash();
  const page = pages.find(p => p.path === path);
  if (!page) { location.hash = '#/overview'; return; }
  const gen = ++generation;
  if (stop) { try { stop(); } catch { /* a page that fails to stop must not block the next */ } }
  stop = null;
  const timers = [];
  for (const a of nav.querySelectorAll('a')) {
    if (a.dataset.page === path) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  document.title = page.title + ' · Fanout';
  banner.hidden = true;
  // Each showing renders into a container of its own: a page whose work ends after the
  // operator has moved on (an answer that comes late) writes into a container no longer
  // in the document, never over the next page.
  const view = h('div', {class: 'view'}, h('h1', {}, page.title));
  clear(root).append(view);
  const ctx = {
    params,
    // every runs fn now and then every ms while the page is shown and the tab visible.
    every(fn, ms) {
      const tick = () => { if (gen === generation && !document.hidden) fn(); };
      timers.push(setInterval(tick, ms));
      return fn();
    },
    // setParams replaces the page's hash parameters without showing the page again.
    setParams(p) {
      const q = api.query(p);
      history.replaceState(null, '', '#/' + path + q);
    },
    isCurrent: () => gen === generation,
  };
  try {
    const mod = await page.load();
    if (gen !== generation) return;
    const dispose = await mod.render(view, ctx);
    stop = () => { timers.forEach(clearInterval); if (typeof dispose === 'function') dispose(); };
    if (gen !== generation) stop();
  } catch (e) {
    timers.forEach(clearInterval);
    if (gen === generation) view.append(errorBox(e));
  }
  root.focus({preventScroll: true});
}

window.addEventListener('hashchange', show);
show();
