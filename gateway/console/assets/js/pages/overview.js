// Overview: the traffic of the last hour, what is waiting, what is paused or blocked, what
// failed last, and the config's reload state.

import * as api from '../api.js';
import {h, clear, fmtNumber, fmtRate, fmtAge, ago, fmtTime, errorBox, toast, pill} from '../dom.js';
import {lineChart} from '../chart.js';

const charts = [
  {series: 'callbacks', title: 'Callbacks/s by outcome', format: v => fmtRate(v).replace('/s', ''), empty: 'No callbacks yet'},
  {series: 'deliveries', title: 'Deliveries/s by destination', format: v => fmtRate(v).replace('/s', ''), empty: 'No deliveries yet'},
  {series: 'dead', title: 'Dead-lettered/s by destination', format: v => fmtRate(v).replace('/s', ''), empty: 'Nothing dead-lettered'},
  {series: 'backlog', title: 'Backlog by destination', format: v => fmtNumber(v), integer: true, empty: 'No backlog data yet'},
];

function last(values) {
  for (let i = values.length - 1; i >= 0; i--) if (values[i] !== null) return values[i];
  return null;
}

function sumLast(series) {
  let sum = 0;
  for (const vs of Object.values(series || {})) sum += last(vs) || 0;
  return sum;
}

function tile(label, value, sub, kind) {
  return h('div', {class: ['tile', kind]}, h('div', {class: 'label'}, label), h('div', {class: 'value'}, value),
    sub ? h('div', {class: 'sub'}, sub) : null);
}

export async function render(root, ctx) {
  const tiles = h('div', {class: 'tiles', id: 'overview-tiles'});
  const chartGrid = h('div', {class: 'grid charts', id: 'overview-charts'});
  const errors = h('div', {class: 'panel', id: 'overview-errors'});
  root.append(h('div', {class: 'stack'}, tiles, chartGrid, errors));

  const chartBoxes = charts.map(c => {
    const box = h('div', {dataset: {series: c.series}});
    chartGrid.append(h('section', {class: 'panel'}, h('h2', {}, c.title), box));
    return box;
  });
  let disposers = [];

  const reload = async button => {
    button.disabled = true;
    try {
      await api.post('/-/reload');
      toast('Config reloaded');
    } catch (e) {
      toast('Reload failed: ' + e.message, true);
    } finally {
      button.disabled = false;
      refresh();
    }
  };

  const refresh = async () => {
    let overview, dests, routes, lanes;
    try {
      [overview, dests, routes, lanes] = await Promise.all([
        api.get('/api/v1/overview'), api.get('/api/v1/destinations'), api.get('/api/v1/routes'),
        api.get('/api/v1/lanes').catch(() => null)]); // the tile of blocked lanes is left out
    } catch (e) {
      clear(tiles).append(errorBox(e));
      return;
    }
    const ds = dests.destinations;
    const backlog = ds.reduce((a, d) => a + d.pending, 0);
    const dead = ds.reduce((a, d) => a + d.dead_letters, 0);
    const oldest = ds.reduce((a, d) => (d.oldest_pending_age_seconds > a.age ? {age: d.oldest_pending_age_seconds, name: d.name} : a), {age: 0, name: ''});
    const paused = ds.filter(d => d.paused);
    const blocked = lanes ? lanes.blocked : [];
    const s = overview.series;
    const r = overview.reload;

    const reloadButton = h('button', {type: 'button', id: 'reload-now', class: 'link small'}, 'Reload now');
    reloadButton.addEventListener('click', () => reload(reloadButton));
    clear(tiles).append(
      tile('Callbacks', fmtRate(sumLast(s.callbacks)), `ok ${fmtRate(last(s.callbacks.ok || []) || 0)}`),
      tile('Deliveries', fmtRate(sumLast(s.deliveries)), `dead-lettered ${fmtRate(sumLast(s.dead))}`),
      tile('Backlog', fmtNumber(backlog), `${ds.length} destination${ds.length === 1 ? '' : 's'}`, backlog > 0 ? 'warn' : null),
      tile('Oldest pending', oldest.age > 0 ? fmtAge(oldest.age) : '–', oldest.name || 'nothing waiting', oldest.age > 300 ? 'warn' : null),
      h('a', {href: '#/dead-letters', class: 'tile-link'}, tile('Dead letters', fmtNumber(dead), 'list, replay, purge', dead > 0 ? 'bad' : null)),
      tile('Paused', String(paused.length), paused.length ? paused.map(d => d.name).join(', ') : 'none', paused.length ? 'bad' : null),
      blocked.length ? h('a', {href: '#/destinations', class: 'tile-link', id: 'blocked-lanes-tile'},
        tile('Blocked lanes', fmtNumber(blocked.length), [...new Set(blocked.map(l => l.destination))].join(', ') + ': retry or skip', 'bad')) : null,
      h('div', {class: ['tile', r.last_successful ? null : 'bad'], id: 'config-tile'},
        h('div', {class: 'label'}, 'Config'),
        h('div', {class: 'value mono', title: routes.config_hash}, routes.config_hash.slice(0, 12)),
        h('div', {class: 'sub'}, r.last_successful ? pill('last reload ok', 'ok') : pill('last reload failed: the previous config is live', 'bad')),
        h('div', {class: 'sub'}, r.last_success_at ? `loaded ${ago(r.last_success_at)} (${fmtTime(r.last_success_at)})` : ''),
        reloadButton),
    );

    disposers.forEach(d => d());
    disposers = charts.map((c, i) => lineChart(chartBoxes[i], {times: overview.times, series: s[c.series], format: c.format, integer: c.integer, empty: c.empty}));

    const failing = ds.filter(d => d.last_error).sort((a, b) => (b.last_error_at || '').localeCompare(a.last_error_at || ''));
    clear(errors).append(h('h2', {}, 'Last errors'));
    if (!failing.length) {
      errors.append(h('p', {class: 'muted'}, 'No delivery has failed since the gateway started.'));
    } else {
      errors.append(h('div', {class: 'table-wrap'}, h('table', {},
        h('thead', {}, h('tr', {}, h('th', {}, 'Destination'), h('th', {}, 'When'), h('th', {}, 'Error'))),
        h('tbody', {}, failing.map(d => h('tr', {},
          h('td', {}, h('a', {href: '#/destinations'}, d.name), d.paused ? [' ', pill('paused', 'bad')] : null),
          h('td', {class: 'nowrap', title: fmtTime(d.last_error_at)}, ago(d.last_error_at)),
          h('td', {class: 'wrap'}, d.last_error)))))));
    }
  };
  await ctx.every(refresh, 10000);
  return () => disposers.forEach(d => d());
}
