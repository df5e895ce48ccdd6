// Destinations: one card each, with its policy, queue, pause state and last error, and
// the button that pauses or resumes it.

import * as api from '../api.js';
import {h, clear, fmtNumber, fmtAge, fmtTime, fmtDuration, ago, errorBox, toast, pill, confirmDialog} from '../dom.js';

function policy(d) {
  const r = d.retry, b = r.backoff;
  return `timeout ${fmtDuration(d.timeout)} · up to ${r.max_attempts} attempts, backoff ${fmtDuration(b.initial)} to ${fmtDuration(b.max)} ×${b.multiplier}` +
    (b.jitter ? ` ±${Math.round(b.jitter * 100)}%` : '') + ` · gives up after ${fmtDuration(r.max_age)}`;
}

function features(d) {
  const f = [];
  if (d.forward_query) f.push('forwards the query');
  if (d.has_tim_token) f.push('re-signs for tim_token');
  if (d.has_body_transform) f.push('body transform');
  if (d.has_signing_secret) f.push('Standard Webhooks signature');
  if (d.headers.length) f.push('headers: ' + d.headers.join(', '));
  return f.length ? f.join(' · ') : 'original body, no extra headers';
}

function state(d) {
  if (!d.paused) return pill('running', 'ok');
  if (d.paused_by === 'operator') return pill('paused by an operator', 'bad');
  return pill(d.paused_until ? `paused (failing) until ${fmtTime(d.paused_until).slice(11)}` : 'paused (failing)', 'bad');
}

function fact(label, ...value) { return [h('dt', {}, label), h('dd', {}, ...value)]; }

export async function render(root, ctx) {
  const grid = h('div', {class: 'grid', id: 'destination-cards'});
  root.append(h('p', {class: 'muted'}, 'Pausing holds the deliveries of a destination on this gateway process until you resume it; ' +
    'they wait in the queue. With several replicas, each one is paused on its own.'), grid);

  const act = async (d, button) => {
    const pausing = !(d.paused && d.paused_by === 'operator');
    if (pausing && !await confirmDialog({title: `Pause ${d.name}?`, ok: 'Pause',
      body: [`No delivery to ${d.name} starts until you resume it; attempts running now finish. ` +
        `Callbacks keep being accepted and queued (${fmtNumber(d.pending)} waiting now).`]})) return;
    button.disabled = true;
    try {
      await api.post(`/api/v1/destinations/${encodeURIComponent(d.name)}/${pausing ? 'pause' : 'resume'}`);
      toast(`${d.name} ${pausing ? 'paused' : 'resumed'}`);
    } catch (e) {
      toast(e.message, true);
    }
    refresh();
  };

  const card = d => {
    const button = h('button', {type: 'button', class: d.paused && d.paused_by === 'operator' ? 'primary' : 'danger',
      dataset: {action: d.paused && d.paused_by === 'operator' ? 'resume' : 'pause'}},
    d.paused && d.paused_by === 'operator' ? 'Resume' : (d.paused ? 'Hold paused' : 'Pause'));
    button.addEventListener('click', () => act(d, button));
    const resumeNow = d.paused && d.paused_by !== 'operator'
      ? h('button', {type: 'button', dataset: {action: 'resume'}, on: {click: async e => {
        e.target.disabled = true;
        try { await api.post(`/api/v1/destinations/${encodeURIComponent(d.name)}/resume`); toast(`${d.name} resumed`); } catch (err) { toast(err.message, true); }
        refresh();
      }}}, 'Resume now') : null;
    return h('section', {class: 'panel card', dataset: {destination: d.name}},
      h('h2', {}, d.name, state(d)),
      h('div', {class: 'url', title: 'secrets in the URL are shown as <secret>'}, d.url),
      h('dl', {class: 'facts'},
        fact('Policy', policy(d)),
        fact('Rate', d.rate_limit || 'unlimited', ` · ${d.concurrency} concurrent`),
        'in_flight' in d ? fact('In flight', fmtNumber(d.in_flight)) : null,
        'lanes' in d ? fact('Lanes', typeof d.lanes === 'object' ? JSON.stringify(d.lanes) : String(d.lanes)) : null,
        d.queue_error ? fact('Queue', h('span', {class: 'error'}, d.queue_error)) : [
          fact('Backlog', fmtNumber(d.pending), d.pending ? ` · oldest ${fmtAge(d.oldest_pending_age_seconds)}` : ''),
          fact('Dead letters', d.dead_letters ? h('a', {href: '#/dead-letters?destination=' + encodeURIComponent(d.name)}, fmtNumber(d.dead_letters)) : '0'),
        ],
        fact('Sends', features(d)),
      ),
      d.last_error ? h('div', {class: 'last-error'}, h('strong', {}, `Last error ${ago(d.last_error_at)}: `), d.last_error) : null,
      h('div', {class: 'row'}, button, resumeNow));
  };

  const refresh = async () => {
    try {
      const {destinations} = await api.get('/api/v1/destinations');
      clear(grid).append(...(destinations.length ? destinations.map(card) : [h('p', {class: 'muted'}, 'No destination is configured.')]));
    } catch (e) {
      clear(grid).append(errorBox(e));
    }
  };
  await ctx.every(refresh, 5000);
}
