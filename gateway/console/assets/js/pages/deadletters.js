// Dead letters: list and filter them, inspect one, replay (selected or by filter, after a
// dry run says how many would go) and purge (after the same count, confirmed).

import * as api from '../api.js';
import {h, clear, fmtNumber, fmtTime, ago, pretty, errorBox, toast, confirmDialog, toLocalInput, fromLocalInput} from '../dom.js';

const PAGE = 100;

export async function render(root, ctx) {
  const p = ctx.params;
  const filter = {destination: p.get('destination') || '', reason: p.get('reason') || '', since: p.get('since') || '', until: p.get('until') || ''};

  const destSelect = h('select', {name: 'destination'}, h('option', {value: ''}, 'any'));
  const reason = h('input', {name: 'reason', type: 'search', placeholder: 'e.g. status 404', value: filter.reason});
  const since = h('input', {name: 'since', type: 'datetime-local', step: 1, value: toLocalInput(filter.since)});
  const until = h('input', {name: 'until', type: 'datetime-local', step: 1, value: toLocalInput(filter.until)});
  const form = h('form', {class: 'filters', id: 'dlq-filter'},
    h('label', {}, 'Destination', destSelect), h('label', {}, 'Reason contains', reason),
    h('label', {}, 'Dead since', since), h('label', {}, 'Dead before', until),
    h('button', {type: 'submit', class: 'primary'}, 'Filter'),
    h('button', {type: 'button', on: {click: () => { reason.value = ''; since.value = ''; until.value = ''; destSelect.value = ''; apply(); }}}, 'Clear'));
  form.addEventListener('submit', e => { e.preventDefault(); apply(); });

  const selected = new Set();
  const count = h('span', {class: 'muted', id: 'dlq-count'});
  const replaySel = h('button', {type: 'button', id: 'replay-selected', disabled: true, on: {click: () => replay({ids: [...selected]})}}, 'Replay selected');
  const purgeSel = h('button', {type: 'button', id: 'purge-selected', class: 'danger', disabled: true, on: {click: () => purge({ids: [...selected]})}}, 'Purge selected');
  const replayAll = h('button', {type: 'button', id: 'replay-matching', on: {click: () => replay(bodyFilter())}}, 'Replay all matching…');
  const purgeAll = h('button', {type: 'button', id: 'purge-matching', class: 'danger', on: {click: () => purge(bodyFilter())}}, 'Purge all matching…');
  const refreshButton = h('button', {type: 'button', id: 'dlq-refresh', on: {click: () => load()}}, 'Refresh');
  const tbody = h('tbody', {});
  const selectAll = h('input', {type: 'checkbox', 'aria-label': 'select all listed'});
  const more = h('button', {type: 'button', hidden: true}, 'Load more');
  const list = h('section', {class: 'panel'},
    h('div', {class: 'spread'}, h('div', {class: 'row'}, replaySel, purgeSel, count), h('div', {class: 'row'}, replayAll, purgeAll, refreshButton)),
    h('div', {class: 'table-wrap'}, h('table', {id: 'dlq-table'},
      h('thead', {}, h('tr', {}, h('th', {}, selectAll), h('th', {class: 'num'}, 'Id'), h('th', {}, 'Dead'), h('th', {}, 'Destination'),
        h('th', {}, 'Command'), h('th', {}, 'Reason · last status'), h('th', {class: 'num', title: 'attempts'}, 'Tries'))),
      tbody)),
    more);
  const detail = h('section', {class: 'panel', id: 'dlq-detail'}, h('p', {class: 'muted'}, 'Select a dead letter to see its callback.'));
  root.append(h('div', {class: 'stack'}, h('section', {class: 'panel'}, form), h('div', {class: 'split'}, list, detail)));

  try {
    const {destinations} = await api.get('/api/v1/destinations');
    for (const d of destinations) destSelect.append(h('option', {value: d.name}, `${d.name} (${d.dead_letters})`));
  } catch { /* the list still works with a typed filter */ }
  if (filter.destination && ![...destSelect.options].some(o => o.value === filter.destination)) {
    destSelect.append(h('option', {value: filter.destination}, filter.destination));
  }
  destSelect.value = filter.destination;

  function bodyFilter() {
    const f = {};
    for (const k of ['destination', 'reason', 'since', 'until']) if (filter[k]) f[k] = filter[k];
    return Object.keys(f).length ? {filter: f} : {all: true};
  }

  function describe(sel) {
    if (sel.ids) return `${sel.ids.length} selected dead letter${sel.ids.length === 1 ? '' : 's'}`;
    if (sel.all) return 'every dead letter';
    return 'the dead letters matching ' + Object.entries(sel.filter).map(([k, v]) => `${k} ${k === 'reason' ? 'contains ' : '= '}${v}`).join(', ');
  }

  function apply() {
    filter.destination = destSelect.value;
    filter.reason = reason.value.trim();
    filter.since = fromLocalInput(since.value);
    filter.until = fromLocalInput(until.value);
    ctx.setParams(filter);
    load();
  }

  function updateSelection() {
    replaySel.disabled = purgeSel.disabled = selected.size === 0;
    replaySel.textContent = selected.size ? `Replay selected (${selected.size})` : 'Replay selected';
    purgeSel.textContent = selected.size ? `Purge selected (${selected.size})` : 'Purge selected';
  }

  let next = 0;
  let shown = [];
  const row = d => {
    const box = h('input', {type: 'checkbox', 'aria-label': `select ${d.id}`, checked: selected.has(d.id)});
    box.addEventListener('click', e => e.stopPropagation());
    box.addEventListener('change', () => { if (box.checked) selected.add(d.id); else selected.delete(d.id); updateSelection(); });
    const tr = h('tr', {class: 'clickable', dataset: {id: d.id}},
      h('td', {}, box), h('td', {class: 'num mono'}, d.id),
      h('td', {class: 'nowrap', title: fmtTime(d.dead_at)}, ago(d.dead_at)), h('td', {}, d.destination),
      h('td', {class: 'mono small'}, d.command || '–'),
      h('td', {class: 'reason', title: d.reason}, d.reason.split('\n')[0], d.last_status ? h('span', {class: 'muted'}, ` · ${d.last_status}`) : null),
      h('td', {class: 'num'}, d.attempts));
    tr.addEventListener('click', () => inspect(d.id, tr));
    return tr;
  };

  async function load(append = false) {
    if (!append) { next = 0; shown = []; selected.clear(); updateSelection(); selectAll.checked = false; }
    const q = api.query({...filter, limit: PAGE, after: append ? next : ''});
    try {
      const page = await api.get('/api/v1/dlq' + q);
      if (!append) clear(tbody);
      shown = shown.concat(page.items);
      tbody.append(...page.items.map(row));
      if (!shown.length) tbody.append(h('tr', {}, h('td', {colspan: 7, class: 'muted'}, 'No dead letter matches.')));
      next = page.next;
      more.hidden = !next;
      count.textContent = `${fmtNumber(shown.length)}${next ? '+' : ''} listed`;
    } catch (e) {
      clear(tbody).append(h('tr', {}, h('td', {colspan: 7}, errorBox(e))));
    }
  }
  more.addEventListener('click', () => load(true));
  selectAll.addEventListener('change', () => {
    for (const d of shown) if (selectAll.checked) selected.add(d.id); else selected.delete(d.id);
    for (const box of tbody.querySelectorAll('input[type=checkbox]')) box.checked = selectAll.checked;
    updateSelection();
  });

  async function inspect(id, tr) {
    for (const r of tbody.querySelectorAll('tr.selected')) r.classList.remove('selected');
    if (tr) tr.classList.add('selected');
    clear(detail).append(h('p', {class: 'muted'}, `Loading dead letter ${id}…`));
    let d;
    try { d = await api.get(`/api/v1/dlq/${id}`); } catch (e) { clear(detail).append(errorBox(e)); return; }
    const facts = [
      ['Destination', d.destination], ['Routes', d.routes.join(', ') || '–'], ['Reason', d.reason],
      ['Last status', d.last_status || '–'], ['Attempts', d.attempts], ['Received', fmtTime(d.received_at)],
      ['First attempt', fmtTime(d.first_attempt)], ['Last attempt', fmtTime(d.last_attempt)], ['Dead', fmtTime(d.dead_at)],
      ['Command', d.command], ['SdkAppid', d.sdkappid], ['Event id', d.event_id], ['Request id', d.request_id],
    ];
    const body = d.body_encoding === 'json' ? pretty(JSON.stringify(d.body)) : `(base64) ${d.body}`;
    const tryIt = h('button', {type: 'button', on: {click: () => {
      sessionStorage.setItem('fanout.playground', JSON.stringify({payload: d.body_encoding === 'json' ? pretty(JSON.stringify(d.body)) : '', query: d.query}));
      location.hash = '#/rules';
    }}}, 'Try in the playground');
    clear(detail).append(
      h('div', {class: 'spread'}, h('h2', {}, `Dead letter ${d.id}`),
        h('div', {class: 'row'},
          h('button', {type: 'button', class: 'primary', id: 'replay-one', on: {click: () => replay({ids: [d.id]})}}, 'Replay'),
          h('button', {type: 'button', class: 'danger', on: {click: () => purge({ids: [d.id]})}}, 'Purge'), tryIt,
          d.event_id ? h('a', {class: 'button', id: 'dlq-trace', href: '#/events?id=' + encodeURIComponent(d.event_id),
            title: "the callback's trace in the event log"}, 'Trace') : null)),
      h('dl', {class: 'facts'}, facts.map(([k, v]) => [h('dt', {}, k),
        h('dd', {class: k.endsWith('id') ? 'mono small' : k === 'Reason' ? 'pre' : null}, String(v ?? '–'))])),
      h('h3', {}, "The destination's last answer"), h('pre', {}, d.body_excerpt || '(empty)'),
      h('h3', {}, 'Query (Sign and RequestTime removed)'), h('pre', {}, d.query || '(none)'),
      h('h3', {}, `Callback body (${fmtNumber(d.body_size)} bytes)`), h('pre', {id: 'dlq-body'}, body));
  }

  async function replay(sel) {
    let dry;
    try { dry = await api.post('/api/v1/dlq/replay', {...sel, dry_run: true}); } catch (e) { toast(e.message, true); return; }
    const would = (dry.would_replay || []).length;
    const body = [`${fmtNumber(dry.matched)} match ${describe(sel)}; ${fmtNumber(would)} would be queued again for delivery.`];
    if (dry.errors.length) {
      body.push(h('p', {class: 'error'}, `${dry.errors.length} cannot be replayed:`),
        h('pre', {}, dry.errors.slice(0, 20).map(e => `${e.id}: ${e.error}`).join('\n') + (dry.errors.length > 20 ? '\n…' : '')));
    }
    if (!would) {
      await confirmDialog({title: 'Nothing to replay', body, ok: 'OK'});
      return;
    }
    if (!await confirmDialog({title: `Replay ${fmtNumber(would)} dead letter${would === 1 ? '' : 's'}?`, body, ok: `Replay ${fmtNumber(would)}`})) return;
    // Replay exactly what the dry run listed, so that the count confirmed is the count done
    // (a very long list goes by the filter again, within the request size limit).
    const again = sel.ids || would <= 20000 ? {ids: dry.would_replay} : sel;
    try {
      const res = await api.post('/api/v1/dlq/replay', again);
      toast(`Replayed ${fmtNumber(res.replayed.length)}` + (res.errors.length ? `; ${res.errors.length} failed: ${res.errors[0].error}` : ''), res.errors.length > 0);
    } catch (e) { toast(e.message, true); }
    clear(detail).append(h('p', {class: 'muted'}, 'Select a dead letter to see its callback.'));
    load();
  }

  async function purge(sel) {
    let path;
    if (sel.ids) path = '/api/v1/dlq' + '?' + sel.ids.map(id => 'id=' + id).join('&');
    else path = '/api/v1/dlq' + (sel.all ? '?all=true' : api.query(sel.filter));
    let dry;
    try { dry = await api.del(path + '&dry_run=true'); } catch (e) { toast(e.message, true); return; }
    if (!dry.matched) { toast('Nothing to purge'); return; }
    if (!await confirmDialog({title: `Purge ${fmtNumber(dry.matched)} dead letter${dry.matched === 1 ? '' : 's'}?`, danger: true,
      ok: `Purge ${fmtNumber(dry.matched)}`,
      body: [`${fmtNumber(dry.matched)} match ${describe(sel)}. They are deleted for good: their callbacks cannot be replayed afterwards.`]})) return;
    try {
      const res = await api.del(path);
      toast(`Purged ${fmtNumber(res.deleted)}` + (res.errors.length ? `; ${res.errors.length} failed` : ''), res.errors.length > 0);
    } catch (e) { toast(e.message, true); }
    clear(detail).append(h('p', {class: 'muted'}, 'Select a dead letter to see its callback.'));
    load();
  }

  await load();
  const id = p.get('id');
  if (id) inspect(id, tbody.querySelector(`tr[data-id="${CSS.escape(id)}"]`));
}
