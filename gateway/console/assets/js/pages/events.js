// Events: the event log's search (GET /api/v1/events, newest first, a page at a time) and
// one callback's trace (GET /api/v1/events/{id}): its routes, where each delivery stands,
// and every record with its time since the callback was received. A trace is
// #/events?id=ID, with the search's filters beside it for the way back, so that its
// address can be shared. The trace can replay its callback (a dry run first).

import * as api from '../api.js';
import {h, clear, fmtNumber, fmtTime, fmtAge, ago, pretty, errorBox, toast, pill, confirmDialog, toLocalInput, fromLocalInput} from '../dom.js';

const PAGE = 50;
// The filters of GET /api/v1/events, as the hash carries them (field is NAME=VALUE).
const FILTERS = ['since', 'until', 'app', 'command', 'route', 'destination', 'outcome', 'field'];
const OUTCOMES = ['delivered', 'retrying', 'dead', 'pending', 'no_route', 'responded'];
// log.index's default: the fields offered for a lookup (any indexed field works).
const INDEXED = ['MsgKey', 'From_Account', 'To_Account', 'GroupId'];
const KIND = {delivered: 'ok', responded: 'ok', retrying: 'warn', pending: 'warn', dead: 'bad'};

function statePill(state) { return pill(state.replace('_', ' '), KIND[state]); }

// isLogOff tells the answer of a gateway whose event log is off (log.enabled: false).
function isLogOff(e) { return e && e.status === 404 && /event log is off/.test(e.message); }

function logOff() {
  return h('section', {class: 'panel', id: 'events-off'},
    h('h2', {}, 'The event log is off'),
    h('p', {}, 'This gateway does not record its callbacks, so there is nothing to search or trace here. ' +
      'With the event log on, it keeps every callback it accepts, the routes it matched and every delivery attempt, ' +
      'for the time and the size you give it.'),
    h('p', {}, 'To turn it on, add this to the config file and restart the gateway (a reload does not change the log):'),
    h('pre', {}, 'log:\n  enabled: true\n  max_age: 24h        # the default\n  max_bytes: 1GiB     # the default\n' +
      '  index: [MsgKey, From_Account, To_Account, GroupId]   # the default: the fields it is searched by'),
    h('p', {class: 'muted'}, 'It costs CPU on the callback path: "The event log" in docs/operating.md says how much.'));
}

// msOf reads an RFC 3339 time to the fraction of a millisecond (a Date keeps whole ones).
function msOf(iso) {
  if (!iso) return NaN;
  const frac = /\.(\d+)/.exec(iso);
  const whole = Date.parse(iso.replace(/\.\d+/, ''));
  return frac ? whole + Number('0.' + frac[1]) * 1000 : whole;
}

function pad(n, w = 2) { return String(n).padStart(w, '0'); }

// fmtClock shows the time of day with milliseconds, in the browser's zone.
function fmtClock(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '–';
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

// fmtMs shows a duration in milliseconds: 0.4 ms, 12 ms, 3.017 s, 2m 5s.
function fmtMs(ms) {
  if (!Number.isFinite(ms)) return '–';
  if (ms === 0) return '0 ms';
  if (ms < 10) return ms.toFixed(1) + ' ms';
  if (ms < 1000) return Math.round(ms) + ' ms';
  if (ms < 60000) return (ms / 1000).toFixed(3) + ' s';
  return fmtAge(ms / 1000);
}

function fmtOffset(ms) { return Number.isFinite(ms) ? (ms < 0 ? '−' : '+') + fmtMs(Math.abs(ms)) : ''; }

function plural(n, word) { return `${fmtNumber(n)} ${word}${n === 1 ? '' : 's'}`; }
function deliveries(n) { return `${fmtNumber(n)} deliver${n === 1 ? 'y' : 'ies'}`; }

// readFilter reads the search's filters from the hash parameters.
function readFilter(params) {
  const f = {};
  for (const k of FILTERS) f[k] = params.get(k) || '';
  return f;
}

// traceHref is the address of a callback's trace, the search's filters kept beside it.
function traceHref(filter, id) { return '#/events' + api.query({...filter, id}); }

export async function render(root, ctx) {
  const filter = readFilter(ctx.params);
  const id = ctx.params.get('id');
  if (id) return renderTrace(root, filter, id);
  return renderSearch(root, ctx, filter);
}

async function renderSearch(root, ctx, filter) {
  const eq = filter.field.indexOf('=');
  const [fieldName, fieldValue] = eq > 0 ? [filter.field.slice(0, eq), filter.field.slice(eq + 1)] : ['MsgKey', ''];
  const since = h('input', {name: 'since', type: 'datetime-local', step: 1, value: toLocalInput(filter.since)});
  const until = h('input', {name: 'until', type: 'datetime-local', step: 1, value: toLocalInput(filter.until)});
  const app = h('input', {name: 'app', type: 'search', inputmode: 'numeric', size: 12, placeholder: 'SdkAppid', value: filter.app});
  const command = h('input', {name: 'command', type: 'search', size: 24, placeholder: 'e.g. C2C.* or Group.CallbackAfterSendMsg', value: filter.command});
  const route = h('select', {name: 'route'}, h('option', {value: ''}, 'any'));
  const destination = h('select', {name: 'destination'}, h('option', {value: ''}, 'any'));
  const outcome = h('select', {name: 'outcome'}, h('option', {value: ''}, 'any'),
    OUTCOMES.map(o => h('option', {value: o, selected: o === filter.outcome}, o.replace('_', ' '))));
  const fieldList = h('datalist', {id: 'indexed-fields'}, INDEXED.map(f => h('option', {value: f})));
  const fname = h('input', {name: 'field-name', list: 'indexed-fields', size: 13, value: fieldName, autocomplete: 'off', 'aria-label': 'indexed field'});
  const fvalue = h('input', {name: 'field-value', type: 'search', size: 26, placeholder: 'its value, exactly', value: fieldValue, 'aria-label': 'value'});
  const form = h('form', {class: 'filters', id: 'events-filter'},
    h('label', {}, 'Indexed field', h('span', {class: 'row field-pair'}, fname, h('span', {class: 'muted'}, '='), fvalue)),
    h('label', {}, 'Command', command), h('label', {}, 'App', app),
    h('label', {}, 'Route', route), h('label', {}, 'Destination', destination), h('label', {}, 'Outcome', outcome),
    h('label', {}, 'Received since', since), h('label', {}, 'Received before', until),
    fieldList,
    h('button', {type: 'submit', class: 'primary', id: 'events-search'}, 'Search'),
    h('button', {type: 'button', on: {click: () => {
      for (const el of [since, until, app, command, fvalue]) el.value = '';
      fname.value = 'MsgKey'; route.value = destination.value = outcome.value = '';
      apply();
    }}}, 'Clear'));
  form.addEventListener('submit', e => { e.preventDefault(); apply(); });

  const openId = h('input', {type: 'search', size: 34, placeholder: 'event id or webhook-id', 'aria-label': 'event id or webhook-id'});
  const open = h('form', {class: 'row', id: 'events-open'}, h('span', {class: 'muted small'}, 'Or open one callback:'), openId,
    h('button', {type: 'submit'}, 'Trace'));
  open.addEventListener('submit', e => {
    e.preventDefault();
    // msg_<id>_<destination> (a webhook-id) is taken as well as the bare id.
    const v = openId.value.trim().replace(/^msg_([0-9a-f]+)_.*$/i, '$1');
    if (v) location.hash = traceHref(filter, v);
  });

  const count = h('span', {class: 'muted', id: 'events-count'});
  const tbody = h('tbody', {});
  const more = h('button', {type: 'button', hidden: true, id: 'events-more'}, 'Load more');
  const list = h('section', {class: 'panel'},
    h('div', {class: 'spread'}, count, h('button', {type: 'button', id: 'events-refresh', on: {click: () => load()}}, 'Refresh')),
    h('div', {class: 'table-wrap'}, h('table', {id: 'events-table', class: 'stacked'},
      h('thead', {}, h('tr', {}, h('th', {}, 'Received'), h('th', {}, 'Command'), h('th', {}, 'Fields'),
        h('th', {}, 'Routes'), h('th', {}, 'Outcome'), h('th', {}, 'Deliveries'))),
      tbody)),
    more);
  const page = h('div', {class: 'stack'}, h('section', {class: 'panel stack'}, form, open), list);
  root.append(page);

  // The selects list the live config's routes and destinations; a value from the address
  // that is no longer configured stays selectable.
  const [routes, dests] = await Promise.all([api.get('/api/v1/routes').catch(() => null), api.get('/api/v1/destinations').catch(() => null)]);
  for (const r of routes?.routes || []) route.append(h('option', {value: r.name}, r.name));
  for (const d of dests?.destinations || []) destination.append(h('option', {value: d.name}, d.name));
  for (const [sel, v] of [[route, filter.route], [destination, filter.destination]]) {
    if (v && ![...sel.options].some(o => o.value === v)) sel.append(h('option', {value: v}, v));
    sel.value = v;
  }

  function apply() {
    filter.since = fromLocalInput(since.value);
    filter.until = fromLocalInput(until.value);
    filter.app = app.value.trim();
    filter.command = command.value.trim();
    filter.route = route.value;
    filter.destination = destination.value;
    filter.outcome = outcome.value;
    const name = fname.value.trim(), value = fvalue.value.trim();
    filter.field = name && value ? `${name}=${value}` : '';
    ctx.setParams(filter);
    load();
  }

  const row = s => {
    const href = traceHref(filter, s.id);
    const fields = Object.entries(s.fields || {}).map(([k, v]) => h('span', {class: 'kv'}, h('span', {class: 'muted'}, k + '='), v));
    const tr = h('tr', {class: 'clickable', dataset: {id: s.id}},
      h('td', {class: 'nowrap'}, h('a', {href, title: ago(s.received_at)}, fmtTime(s.received_at))),
      h('td', {class: 'mono small'}, s.command || '–', s.sdkappid ? h('div', {class: 'muted'}, s.sdkappid) : null),
      h('td', {class: 'mono small wrap'}, fields.length ? fields : '–'),
      h('td', {class: 'small'}, s.routes.length ? s.routes.join(', ') : '–'),
      h('td', {class: 'outcome'}, statePill(s.outcome), s.duplicates ? h('div', {class: 'muted small'}, `+${plural(s.duplicates, 'duplicate')}`) : null,
        s.evicted ? h('div', {class: 'muted small', title: 'its received record has left the log'}, 'partly evicted') : null),
      h('td', {class: 'small'}, s.deliveries.length ? s.deliveries.map(d => h('div', {class: 'nowrap'}, d.destination, ' ', statePill(d.state),
        d.replayed ? h('span', {class: 'muted'}, ` · replayed ${d.replayed}×`) : null)) : (s.respond ? `answered by ${s.respond}` : '–')));
    tr.addEventListener('click', e => { if (!e.target.closest('a')) location.hash = href; });
    return tr;
  };

  let next = 0;
  let shown = 0;
  let loading = 0;
  async function load(append = false) {
    const gen = ++loading;
    if (!append) { next = 0; shown = 0; }
    const q = new URLSearchParams();
    for (const k of FILTERS) if (filter[k]) q.set(k, filter[k]);
    q.set('limit', PAGE);
    if (append && next) q.set('after', next);
    more.disabled = true;
    count.textContent = 'Searching…';
    let res;
    try {
      res = await api.get('/api/v1/events?' + q);
    } catch (e) {
      if (gen !== loading) return;
      if (isLogOff(e)) { clear(root).append(h('h1', {}, 'Events'), logOff()); return; }
      count.textContent = '';
      clear(tbody).append(h('tr', {}, h('td', {colspan: 6}, errorBox(e))));
      return;
    } finally {
      more.disabled = false;
    }
    if (gen !== loading) return;
    if (!append) clear(tbody);
    tbody.append(...res.items.map(row));
    shown += res.items.length;
    next = res.next;
    more.hidden = !next;
    if (!shown) {
      const empty = Object.values(filter).some(Boolean) ? 'No callback matches.' : 'The event log holds no callback yet.';
      tbody.replaceChildren(h('tr', {}, h('td', {colspan: 6, class: 'muted'},
        next ? 'No callback matches in the part of the log searched so far: Load more searches further back.' : empty)));
    }
    count.textContent = `${plural(shown, 'callback')}, newest first${next ? '; more further back' : ''}`;
  }
  more.addEventListener('click', () => load(true));
  await load();
}

// describe is what a record of the timeline says, beside its kind.
function describe(e, t0) {
  switch (e.kind) {
  case 'received': {
    const to = (e.deliveries || []).map(d => d.destination);
    return [`${e.command || ''} → ${to.length ? to.join(', ') : 'no destination'}`,
      e.respond ? ` · answered by ${e.respond}` : '', e.body_size ? h('span', {class: 'muted'}, ` · ${plural(e.body_size, 'byte')}`) : ''];
  }
  case 'duplicate':
    return ['received again within the dedup window: not delivered again', e.request_id ? h('span', {class: 'muted'}, ` · request ${e.request_id}`) : ''];
  case 'attempt':
    return [e.respond_exchange ? 'the respond rule\'s exchange: ' : '',
      pill([e.status || '', e.result || ''].filter(Boolean).join(' ') || 'no answer', e.result === '2xx' ? 'ok' : 'bad'),
      ` in ${fmtMs(e.duration_ms || 0)}`, e.result === '2xx' ? ': delivered' : '',
      e.error ? h('div', {class: 'error small'}, e.error) : null];
  case 'retrying':
    return [`attempt ${(e.attempt || 0) + 1} due ${fmtClock(e.due)}`, h('span', {class: 'muted'}, ` (${fmtOffset(msOf(e.due) - t0)})`)];
  case 'dead':
    return [`dead letter after ${plural(e.attempt || 0, 'attempt')}: `, h('span', {class: 'error'}, e.reason || '')];
  case 'replayed':
    return [e.reroute ? 'queued again through the live routes' : 'queued again from the log', ': a new series of attempts'];
  }
  return [e.error ? h('span', {class: 'error'}, e.error) : ''];
}

function kindLabel(e) {
  if (e.kind === 'attempt') return `attempt ${e.attempt}`;
  return e.kind;
}

function deliveryNote(d, t0) {
  switch (d.state) {
  case 'delivered': return [`delivered ${fmtClock(d.delivered_at)}`, h('span', {class: 'muted'}, ` (${fmtOffset(msOf(d.delivered_at) - t0)})`)];
  case 'retrying': return [`next attempt due ${fmtClock(d.due)}`, h('span', {class: 'muted'}, ` (${fmtOffset(msOf(d.due) - t0)})`)];
  case 'dead': return [h('span', {class: 'error'}, d.reason || 'dead'), ' · ',
    h('a', {href: '#/dead-letters?destination=' + encodeURIComponent(d.destination)}, 'dead letters')];
  }
  return d.attempts ? 'being attempted' : 'queued';
}

async function renderTrace(root, filter, id) {
  const back = h('a', {href: '#/events' + api.query(filter), id: 'trace-back'}, '← Back to the search');
  const box = h('div', {class: 'stack', id: 'trace'}, h('p', {class: 'muted'}, `Loading callback ${id}…`));
  root.append(h('div', {class: 'stack'}, back, box));

  async function load() {
    let d, dests;
    try {
      [d, dests] = await Promise.all([api.get('/api/v1/events/' + encodeURIComponent(id)), api.get('/api/v1/destinations').catch(() => null)]);
    } catch (e) {
      clear(box).append(isLogOff(e) ? logOff() : errorBox(e));
      return;
    }
    const t0 = msOf(d.received_at);
    const fields = Object.entries(d.fields || {});
    const facts = [
      ['Command', d.command || '–'], ['App', d.sdkappid || '–'],
      ['Received', d.received_at ? `${fmtTime(d.received_at)}.${fmtClock(d.received_at).slice(9)} (${ago(d.received_at)})` : '–'],
      ['Routes', d.routes.length ? d.routes.join(', ') : 'none matched'],
      d.respond ? ['Answered by', d.respond] : null,
      ['Fields', fields.length ? fields.map(([k, v]) => `${k}=${v}`).join('\n') : '–'],
      d.duplicates ? ['Duplicates', `received ${plural(d.duplicates, 'more time')} within the dedup window`] : null,
      ['Request id', d.request_id || '–'], ['Event id', d.id],
    ].filter(Boolean);
    const refresh = h('button', {type: 'button', id: 'trace-refresh', on: {click: () => load()}}, 'Refresh');
    clear(box).append(
      h('section', {class: 'panel'},
        h('div', {class: 'spread'}, h('h2', {class: 'trace-title'}, 'Callback ', h('span', {class: 'mono'}, d.id), ' ', statePill(d.outcome)), refresh),
        d.evicted ? h('p', {class: 'muted'}, 'Its received record has left the log (log.max_age or log.max_bytes): what is known comes from the records after it.') : null,
        h('dl', {class: 'facts'}, facts.map(([k, v]) => [h('dt', {}, k), h('dd', {class: k.endsWith('id') || k === 'Fields' ? 'pre' : null}, String(v))]))),
      h('section', {class: 'panel'}, h('h3', {}, 'Deliveries'),
        d.deliveries.length ? h('div', {class: 'table-wrap'}, h('table', {id: 'trace-deliveries', class: 'stacked'},
          h('thead', {}, h('tr', {}, h('th', {}, 'Destination'), h('th', {}, 'State'), h('th', {class: 'num'}, 'Attempts'),
            h('th', {}, 'Last status'), h('th', {}, 'Delivered · due · reason'), h('th', {class: 'num'}, 'Replayed'), h('th', {}, 'webhook-id'))),
          h('tbody', {}, d.deliveries.map(dl => h('tr', {dataset: {destination: dl.destination}},
            h('td', {}, dl.destination, dl.routes.length ? h('div', {class: 'muted small'}, 'by ' + dl.routes.join(', ')) : null),
            h('td', {}, statePill(dl.state)),
            h('td', {class: 'num', dataset: {label: 'attempts'}}, dl.attempts),
            h('td', {class: 'nowrap', dataset: {label: 'last'}}, [dl.last_status || '', dl.last_result || ''].filter(Boolean).join(' ') || '–'),
            h('td', {class: 'wrap'}, deliveryNote(dl, t0)),
            h('td', {class: 'num', dataset: {label: 'replayed'}}, dl.replayed || 0),
            h('td', {class: 'mono small wrap'}, dl.webhook_id)))))) :
          h('p', {class: 'muted'}, d.respond ? `No asynchronous delivery: only ${d.respond}'s synchronous answer.` : 'No route matched it: nothing was delivered.')),
      h('section', {class: 'panel'}, h('h3', {}, 'Timeline'),
        h('div', {class: 'table-wrap'}, h('table', {id: 'trace-timeline', class: 'timeline stacked'},
          h('thead', {}, h('tr', {}, h('th', {}, 'Time'), h('th', {class: 'num', title: 'time since the callback was received'}, 'Elapsed'),
            h('th', {}, 'Destination'), h('th', {}, 'Record'), h('th', {}, ''))),
          h('tbody', {}, d.timeline.map(e => h('tr', {dataset: {kind: e.kind, destination: e.destination || ''}},
            h('td', {class: 'mono small nowrap', title: e.at}, fmtClock(e.at)),
            h('td', {class: 'num mono small nowrap'}, fmtOffset(msOf(e.at) - t0)),
            h('td', {class: 'nowrap'}, e.destination || ''),
            h('td', {class: 'nowrap'}, kindLabel(e)),
            h('td', {class: 'wrap'}, describe(e, t0)))))))),
      d.evicted ? null : replayPanel(d, (dests?.destinations || []).map(x => x.name), load),
      h('div', {class: 'halves'},
        h('section', {class: 'panel'}, h('h3', {}, 'Query (Sign and RequestTime removed)'), h('pre', {id: 'trace-query'}, d.query || '(none)')),
        h('section', {class: 'panel'}, h('h3', {}, 'Body'),
          h('pre', {id: 'trace-body'}, d.body_encoding === 'json' ? pretty(JSON.stringify(d.body)) :
            d.body_encoding === 'base64' ? `(base64) ${d.body}` : '(no longer in the log)'))));
  }
  await load();
}

// onlyThis is a replay filter that selects callback d alone: its instant of reception (to
// the millisecond after it), app, command and indexed fields. The dry run says whether it
// does.
function onlyThis(d) {
  return {
    since: d.received_at,
    until: new Date(Math.floor(msOf(d.received_at)) + 1).toISOString(),
    app: d.sdkappid,
    command: d.command.replace(/[*?[\\]/g, '\\$&'),
    field: Object.entries(d.fields || {}).map(([k, v]) => `${k}=${v}`),
  };
}

function replayPanel(d, dests, reload) {
  const to = h('select', {id: 'replay-to', 'aria-label': 'replay to'}, h('option', {value: ''}, 'choose where…'),
    dests.map(n => h('option', {value: 'to:' + n}, n)),
    h('option', {value: 'reroute'}, 'wherever the live routes send it now'));
  const go = h('button', {type: 'button', id: 'replay-event', disabled: true}, 'Replay…');
  to.addEventListener('change', () => { go.disabled = !to.value; });
  go.addEventListener('click', async () => {
    const target = to.value.startsWith('to:') ? {to: to.value.slice(3)} : {reroute: true};
    const where = target.to ? `to ${target.to}` : 'through the live routes';
    const req = {filter: onlyThis(d), ...target, limit: 10};
    go.disabled = true;
    try {
      const dry = await api.post('/api/v1/events/replay', {...req, dry_run: true});
      const skipped = dry.skipped.find(s => s.event_id === d.id);
      if (dry.matched !== 1 || (dry.events[0] !== d.id && !skipped)) {
        await confirmDialog({title: 'Cannot replay it alone', ok: 'OK',
          body: [`The dry run selects ${plural(dry.matched, 'callback')} received at this instant with this app, command and fields, ` +
            'so the console cannot replay this one without the others. fanout replay can, with a filter.']});
        return;
      }
      if (skipped || !dry.deliveries) {
        await confirmDialog({title: 'Nothing to replay', ok: 'OK', body: [skipped ? skipped.reason : 'No delivery would be queued.']});
        return;
      }
      const per = Object.entries(dry.destinations).map(([k, v]) => `${k} ${v}`).join(', ');
      if (!await confirmDialog({title: `Replay this callback ${where}?`, ok: `Queue ${deliveries(dry.deliveries)}`,
        body: [`The dry run: 1 callback selected, would queue ${deliveries(dry.deliveries)} (${per}).`,
          'Each copy keeps its webhook-id, so the receiver can tell it is a redelivery, and starts a new series of attempts.']})) return;
      const res = await api.post('/api/v1/events/replay', req);
      toast(`Queued ${deliveries(res.deliveries)}` + (res.skipped.length ? `; skipped: ${res.skipped[0].reason}` : ''), res.deliveries === 0);
      setTimeout(reload, 1000);
    } catch (e) {
      toast(e.message, true);
    } finally {
      go.disabled = !to.value;
    }
  });
  return h('section', {class: 'panel', id: 'trace-replay'}, h('h3', {}, 'Replay'),
    h('p', {class: 'muted small'}, 'Queue this callback again, as it was received: a dry run shows what would be queued, then you confirm.'),
    h('div', {class: 'row'}, to, go));
}
