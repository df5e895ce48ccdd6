// Rules: the live routes with their match counts, a playground that runs a payload
// through the routing (the same dry run as `fanout route`), and `fanout check` for an
// edited config. Nothing here changes the running gateway.

import * as api from '../api.js';
import {h, add, clear, fmtNumber, pretty, errorBox, pill} from '../dom.js';
import {samples} from '../samples.js';

function list(v) { return v && v.length ? v.join(', ') : '–'; }

function problemLine(p) {
  const where = p.line ? `${p.line}:${p.column}: ` : '';
  return h('div', {class: ['problem', p.warning ? 'warning' : 'err']},
    where + (p.path ? p.path + ': ' : '') + (p.warning ? 'warning: ' : '') + p.message);
}

export async function render(root) {
  const routesBox = h('section', {class: 'panel', id: 'live-routes'}, h('h2', {}, 'Live routes'), h('p', {class: 'muted'}, 'Loading…'));

  // The playground.
  const pick = h('select', {id: 'sample-pick', 'aria-label': 'pick a payload'}, h('option', {value: ''}, 'Pick a payload…'),
    h('optgroup', {label: 'Tencent IM samples'}, samples.map((s, i) => h('option', {value: 's' + i}, s.name))));
  const dlqGroup = h('optgroup', {label: 'Dead letters'});
  const payload = h('textarea', {id: 'payload', spellcheck: 'false', placeholder: 'Paste a callback body (JSON) here, or pick one above.'});
  const query = h('input', {id: 'query', type: 'text', class: 'mono', placeholder: 'SdkAppid=1400000000&CallbackCommand=… (optional)', size: 48});
  const useEdited = h('input', {id: 'use-edited', type: 'checkbox'});
  const routeButton = h('button', {type: 'submit', class: 'primary', id: 'route-run'}, 'Route it');
  const result = h('div', {id: 'route-result'}, h('p', {class: 'muted'}, 'Which routes match, the respond rule, and the exact body each destination would receive.'));
  const routeForm = h('form', {class: 'stack', id: 'route-form'},
    h('div', {class: 'row'}, pick),
    h('label', {}, 'Payload', payload),
    h('label', {}, 'Query (the gateway fills SdkAppid and CallbackCommand when left out)', query),
    h('div', {class: 'spread'}, h('label', {class: 'inline'}, useEdited, 'Route with the edited config below instead of the live one'), routeButton));

  // The check.
  const configText = h('textarea', {id: 'config-text', spellcheck: 'false',
    placeholder: 'Paste a whole config file (YAML) to check it as `fanout check` would. It is never applied.'});
  const checkButton = h('button', {type: 'submit', class: 'primary', id: 'check-run'}, 'Check');
  const checkResult = h('div', {id: 'check-result'});
  const checkForm = h('form', {class: 'stack', id: 'check-form'}, configText, h('div', {class: 'row'}, checkButton), checkResult);

  root.append(h('div', {class: 'stack'},
    routesBox,
    h('section', {class: 'panel'}, h('h2', {}, 'Playground'),
      h('div', {class: 'playground'}, routeForm, h('div', {}, result))),
    h('section', {class: 'panel'}, h('h2', {}, 'Check a config'),
      h('p', {class: 'muted'}, 'Problems with their line and column, as `fanout check` prints them. ${VAR} references are resolved from the gateway\'s environment; a problem whose line uses one is shown without its message, so that no value from the environment reaches this page.'),
      checkForm)));

  pick.addEventListener('change', async () => {
    const v = pick.value;
    if (v.startsWith('s')) {
      payload.value = JSON.stringify(samples[Number(v.slice(1))].body, null, 2);
      query.value = '';
    } else if (v.startsWith('d')) {
      try {
        const d = await api.get('/api/v1/dlq/' + v.slice(1));
        payload.value = d.body_encoding === 'json' ? pretty(JSON.stringify(d.body)) : '';
        query.value = d.query;
      } catch (e) { clear(result).append(errorBox(e)); }
    }
  });

  routeForm.addEventListener('submit', async e => {
    e.preventDefault();
    routeButton.disabled = true;
    clear(result).append(h('p', {class: 'muted'}, 'Routing…'));
    try {
      const req = {payload: payload.value, query: query.value.trim()};
      if (useEdited.checked) req.config = configText.value;
      showRoute(await api.post('/api/v1/route', req));
    } catch (err) {
      clear(result).append(errorBox(err));
    } finally {
      routeButton.disabled = false;
    }
  });

  // bodyOf shows the exact bytes the destination would receive.
  function bodyOf(d, bodies) {
    const text = bodies && d.destination in bodies ? bodies[d.destination] : JSON.stringify(d.body);
    const size = new TextEncoder().encode(text).length;
    return [h('div', {class: 'muted small'}, `${d.transformed ? 'transformed body' : 'original body, unchanged'}, ${fmtNumber(size)} bytes:`),
      h('pre', {class: 'body'}, text)];
  }

  function showRoute(t) {
    clear(result);
    if (t.problems && t.problems.length && !t.result) {
      add(result, h('p', {class: 'error'}, 'The edited config does not load:'), t.problems.map(problemLine));
      return;
    }
    const r = t.result;
    result.append(h('p', {class: 'muted small'}, `${t.config === 'edited' ? 'Edited' : 'Live'} config ${t.config_hash.slice(0, 12)} · ${r.command || 'no command'} · SdkAppid ${r.sdkappid || '–'}`));
    if (r.error) { result.append(h('p', {class: 'error'}, r.error)); }
    for (const e of r.rule_errors || []) result.append(h('p', {class: 'error'}, 'rule error: ' + e));
    result.append(h('h3', {}, 'Routes'),
      h('div', {class: 'row', id: 'matched-routes'}, r.routes.length ? r.routes.map(n => pill(n, 'ok')) : h('span', {class: 'muted'}, 'none match')));
    if (r.respond) {
      result.append(h('h3', {}, 'Respond'), h('p', {id: 'respond-rule'}, `Answered synchronously by ${r.respond.from} (timeout ${r.respond.timeout}, on failure ${r.respond.on_failure}).`));
    }
    result.append(h('h3', {}, `Deliveries (${r.deliveries.length})`));
    if (!r.deliveries.length) result.append(h('p', {class: 'muted'}, 'No destination would receive it.'));
    for (const d of r.deliveries) {
      result.append(h('div', {class: 'delivery', dataset: {destination: d.destination}},
        h('div', {class: 'spread'}, h('strong', {}, d.destination), h('span', {class: 'muted small'}, 'routes: ' + d.routes.join(', '))),
        h('div', {class: 'mono small url'}, 'POST ' + d.url),
        d.body_error
          ? h('p', {class: 'error'}, `body error: ${d.body_error} (the delivery would be dead-lettered)`)
          : bodyOf(d, t.bodies)));
    }
  }

  checkForm.addEventListener('submit', async e => {
    e.preventDefault();
    checkButton.disabled = true;
    clear(checkResult).append(h('p', {class: 'muted'}, 'Checking…'));
    try {
      const c = await api.post('/api/v1/check', {config: configText.value});
      const errs = c.problems.filter(p => !p.warning).length, warns = c.problems.length - errs;
      add(clear(checkResult),
        h('p', {id: 'check-status'}, c.valid ? pill('valid', 'ok') : pill('invalid', 'bad'), ` ${errs} error${errs === 1 ? '' : 's'}, ${warns} warning${warns === 1 ? '' : 's'}`),
        c.problems.map(problemLine),
        c.restart_required && c.restart_required.length
          ? h('p', {class: 'muted'}, `Differs from the live config in keys that need a restart: ${c.restart_required.join(', ')}.`) : null);
    } catch (err) {
      clear(checkResult).append(errorBox(err));
    } finally {
      checkButton.disabled = false;
    }
  });

  // A payload handed over by the Dead letters page.
  const handed = sessionStorage.getItem('fanout.playground');
  if (handed) {
    sessionStorage.removeItem('fanout.playground');
    try { const v = JSON.parse(handed); payload.value = v.payload; query.value = v.query || ''; } catch { /* ignore */ }
  }

  try {
    const [routes, dlq] = await Promise.all([api.get('/api/v1/routes'), api.get('/api/v1/dlq?limit=20').catch(() => ({items: []}))]);
    if (dlq.items.length) {
      for (const d of dlq.items) dlqGroup.append(h('option', {value: 'd' + d.id}, `#${d.id} ${d.command} → ${d.destination}`));
      pick.append(dlqGroup);
    }
    add(clear(routesBox),
      h('div', {class: 'spread'}, h('h2', {}, 'Live routes'), h('span', {class: 'muted small mono'}, 'config ' + routes.config_hash.slice(0, 12))),
      h('div', {class: 'table-wrap'}, h('table', {id: 'routes-table'},
        h('thead', {}, h('tr', {}, ['Route', 'Commands', 'Apps', 'When', 'To', 'Stop'].map(t => h('th', {}, t)), h('th', {class: 'num'}, 'Matches'))),
        h('tbody', {}, routes.routes.map(r => h('tr', {dataset: {route: r.name}},
          h('td', {}, h('strong', {}, r.name)), h('td', {class: 'mono small'}, list(r.commands)), h('td', {class: 'small'}, list(r.apps)),
          h('td', {class: 'wrap'}, r.when ? h('code', {}, r.when) : h('span', {class: 'muted'}, 'always')),
          h('td', {}, list(r.to)), h('td', {}, r.stop ? 'stop' : ''), h('td', {class: 'num'}, fmtNumber(r.matches))))))),
      routes.respond.length ? [h('h3', {}, 'Respond rules'), h('div', {class: 'table-wrap'}, h('table', {},
        h('thead', {}, h('tr', {}, ['Commands', 'Apps', 'When', 'From', 'Timeout', 'On failure'].map(t => h('th', {}, t)))),
        h('tbody', {}, routes.respond.map(r => h('tr', {},
          h('td', {class: 'mono small'}, list(r.commands)), h('td', {class: 'small'}, list(r.apps)),
          h('td', {class: 'wrap'}, r.when ? h('code', {}, r.when) : h('span', {class: 'muted'}, 'always')),
          h('td', {}, r.from), h('td', {}, r.timeout), h('td', {}, r.on_failure))))))] : null);
  } catch (e) {
    clear(routesBox).append(h('h2', {}, 'Live routes'), errorBox(e));
  }
}
