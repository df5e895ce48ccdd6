// Destinations: one card each, with its policy, queue, pause state and last error, and
// the button that pauses or resumes it. An ordered destination's card also shows its lanes:
// what orders them, the partitions this process consumes, and the lanes blocked waiting for
// an operator (on_exhausted: block), each with Retry and Skip.

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

// lanePath is the admin API path of a lane's action. The key is percent-encoded as one path
// segment, a slash included; the empty key (the fallback lane) leaves the segment empty.
function lanePath(l, action) {
  return `/api/v1/lanes/${encodeURIComponent(l.destination)}/${encodeURIComponent(l.key)}/${action}`;
}

function laneName(l) {
  return l.key === '' ? 'the fallback lane' : `lane ${l.key}`;
}

function capital(text) { return text[0].toUpperCase() + text.slice(1); }

// consumed says which of the destination's lane partitions this process consumes.
function consumed(c) {
  if (!c) return 'none consumed by this process';
  const n = c.partitions.length;
  if (n === c.of) return `all ${c.of} consumed by this process`;
  return `${n} of ${c.of} consumed by this process` + (n ? ` (${c.partitions.join(', ')})` : '');
}

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
        d.queue_error ? fact('Queue', h('span', {class: 'error'}, d.queue_error)) : [
          fact('Backlog', fmtNumber(d.pending), d.pending ? ` · oldest ${fmtAge(d.oldest_pending_age_seconds)}` : ''),
          fact('Dead letters', d.dead_letters ? h('a', {href: '#/dead-letters?destination=' + encodeURIComponent(d.name)}, fmtNumber(d.dead_letters)) : '0'),
        ],
        fact('Sends', features(d)),
      ),
      d.last_error ? h('div', {class: 'last-error'}, h('strong', {}, `Last error ${ago(d.last_error_at)}: `), d.last_error) : null,
      h('div', {class: 'row'}, button, resumeNow),
      laneSection(d));
  };

  // release asks for a retry or a skip of a blocked lane, after a confirmation.
  const release = async (l, action, button) => {
    const head = l.event_id ? `Its head callback (${l.event_id})` : 'Its head callback';
    const ok = await confirmDialog(action === 'retry'
      ? {title: `Retry ${laneName(l)} of ${l.destination}?`, ok: 'Retry',
        body: [`${head} gets a new series of attempts, numbered from 1. Once it is delivered, ` +
          'the lane delivers the callbacks held behind it, in order.']}
      : {title: `Skip the head of ${laneName(l)} of ${l.destination}?`, ok: 'Skip', danger: true,
        body: [`${head} is dead-lettered, and the lane moves on to the callbacks held behind it. ` +
          'The dead letter can be replayed later: it goes to the end of its lane.']});
    if (!ok) return;
    button.disabled = true;
    try {
      const r = await api.post(lanePath(l, action));
      const done = action === 'retry' ? 'retried' : 'skipped';
      toast(r.applied ? `${capital(laneName(l))} of ${l.destination}: ${done}`
        : `${capital(laneName(l))} of ${l.destination}: ${action} recorded; the replica that consumes the lane applies it when it next looks`);
    } catch (e) {
      toast(e.message, true);
    }
    refresh();
  };

  const blockedLane = l => h('div', {class: 'lane', dataset: {key: l.key}},
    h('div', {class: 'spread'},
      h('strong', {class: l.key === '' ? null : 'mono'}, l.key === '' ? 'Fallback lane' : l.key),
      l.action ? pill(`${l.action} asked, waiting for its replica`, 'warn') : pill(`blocked ${ago(l.blocked_at)}`, 'bad')),
    l.key === '' ? h('div', {class: 'muted small'}, 'the callbacks whose order_by gave no key') : null,
    h('dl', {class: 'facts'},
      fact('Head', l.event_id ? h('a', {href: '#/events?id=' + encodeURIComponent(l.event_id), class: 'mono', title: 'its trace on the Events page'}, l.event_id) : '–'),
      fact('Reason', l.reason || '–', l.last_status ? ` · last status ${l.last_status}` : '', ` · ${fmtNumber(l.attempts)} attempt${l.attempts === 1 ? '' : 's'}`),
      l.body_excerpt ? fact('Answer', h('code', {class: 'excerpt'}, l.body_excerpt)) : null,
      l.last_error ? fact('Error', h('span', {class: 'error'}, l.last_error)) : null,
      fact('Blocked since', fmtTime(l.blocked_at))),
    h('div', {class: 'row'},
      h('button', {type: 'button', dataset: {action: 'retry'}, on: {click: e => release(l, 'retry', e.target)}}, 'Retry'),
      h('button', {type: 'button', class: 'danger', dataset: {action: 'skip'}, on: {click: e => release(l, 'skip', e.target)}}, 'Skip')));

  // laneSection is the lanes of d: shown when d has order_by, or still has lanes (a reload
  // that removed order_by leaves its lanes delivering what they hold).
  let lanes = null;
  const laneSection = d => {
    if (!lanes) return null;
    const blocked = lanes.error ? [] : lanes.blocked.filter(l => l.destination === d.name);
    const c = lanes.error ? null : lanes.consuming.find(x => x.destination === d.name);
    if (!d.order_by && !c && !blocked.length) return null;
    const order = d.order_by || c?.order_by;
    return h('div', {class: 'lanes'},
      h('h3', {}, 'Lanes'),
      h('dl', {class: 'facts'},
        fact('Ordered by', order ? h('code', {}, order) : 'no longer (order_by was removed; the lanes deliver what they hold)'),
        fact('On exhausted', d.on_exhausted || c?.on_exhausted || '–'),
        lanes.error ? fact('Lanes', h('span', {class: 'error'}, lanes.error)) : fact('Partitions', consumed(c)),
        lanes.error ? null : fact('Blocked', blocked.length ? h('span', {class: 'error'}, fmtNumber(blocked.length)) : '0')),
      blocked.map(blockedLane));
  };

  const refresh = async () => {
    try {
      const [{destinations}, l] = await Promise.all([api.get('/api/v1/destinations'),
        api.get('/api/v1/lanes').catch(e => ({error: e.message}))]);
      lanes = l;
      clear(grid).append(...(destinations.length ? destinations.map(card) : [h('p', {class: 'muted'}, 'No destination is configured.')]));
    } catch (e) {
      clear(grid).append(errorBox(e));
    }
  };
  await ctx.every(refresh, 5000);
}
