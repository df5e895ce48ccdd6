// A small line chart in SVG for the Overview: one line per key over a fixed time window,
// a y axis from 0, a legend with the latest values, and a cursor that shows the values
// at the pointer. Colours come from the stylesheet (classes c0..c9).

import {h, s, clear} from './dom.js';

const HEIGHT = 200;
const M = {left: 48, right: 10, top: 10, bottom: 22};
const MAX_KEYS = 8; // beyond that the smallest are summed into "other"

// niceStep rounds a tick step up to 1, 2, 2.5 or 5 times a power of ten (at least 1 for
// values that are counts), for round tick labels.
function niceStep(v, integer) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  let step = 10 * p;
  for (const m of [1, 2, 2.5, 5]) if (m * p >= v) { step = m * p; break; }
  return integer ? Math.max(1, Math.ceil(step)) : step;
}

// tickLabel prints a tick without floating-point noise (0.15, not 0.15000000000000002).
function tickLabel(v) { return (+v.toFixed(6)).toLocaleString(); }

function pad(n) { return String(n).padStart(2, '0'); }
function clock(ms) { const d = new Date(ms); return `${pad(d.getHours())}:${pad(d.getMinutes())}`; }

// topKeys keeps the MAX_KEYS - 1 largest series (by their sum) and sums the rest.
function topKeys(series) {
  const keys = Object.keys(series).sort((a, b) => total(series[b]) - total(series[a]) || a.localeCompare(b));
  if (keys.length <= MAX_KEYS) return keys.map(k => [k, series[k]]);
  const kept = keys.slice(0, MAX_KEYS - 1).map(k => [k, series[k]]);
  const rest = keys.slice(MAX_KEYS - 1);
  const n = series[rest[0]].length;
  const other = Array.from({length: n}, (_, i) => {
    let sum = null;
    for (const k of rest) { const v = series[k][i]; if (v !== null) sum = (sum || 0) + v; }
    return sum;
  });
  kept.push([`other (${rest.length})`, other]);
  return kept;
}

function total(values) { return values.reduce((a, v) => a + (v || 0), 0); }

// lineChart draws into container: times in Unix ms, series {key: [value|null per time]},
// window in seconds (the x axis ends at the last time and spans the window, or less while
// the history is shorter, but at least five minutes), format for values.
export function lineChart(container, {times, series, windowSeconds = 3600, format = String, integer = false, empty = 'No data yet'}) {
  clear(container);
  container.classList.add('chart');
  const entries = topKeys(series || {});
  const svg = s('svg', {role: 'img'});
  const legend = h('div', {class: 'legend'});
  container.append(svg, legend);

  const draw = () => {
    clear(svg);
    const width = Math.max(container.clientWidth || 600, 200);
    svg.setAttribute('viewBox', `0 0 ${width} ${HEIGHT}`);
    const x1 = times.length ? times[times.length - 1] : Date.now();
    const span = times.length ? (x1 - times[0]) / 1000 : 0;
    const shown = Math.min(windowSeconds, Math.max(span, 300));
    const x0 = x1 - shown * 1000;
    let ymax = 0;
    for (const [, vs] of entries) for (const v of vs) if (v !== null && v > ymax) ymax = v;
    const step = niceStep(ymax / 4, integer);
    ymax = 4 * step;
    const W = width - M.left - M.right, H = HEIGHT - M.top - M.bottom;
    const px = t => M.left + (t - x0) / (x1 - x0) * W;
    const py = v => M.top + H - v / ymax * H;

    const axis = s('g', {class: 'axis'});
    for (let i = 0; i <= 4; i++) {
      const v = ymax * i / 4, y = py(v);
      axis.append(s('line', {class: 'gridline', x1: M.left, x2: width - M.right, y1: y, y2: y}));
      axis.append(s('text', {x: M.left - 6, y: y + 3, 'text-anchor': 'end'}, tickLabel(v)));
    }
    // Time ticks at round minutes, at least 56 px apart.
    const tickEvery = 60000 * ([1, 2, 5, 10, 15, 20, 30, 60].find(m => W / (shown / 60 / m) >= 56) || 60);
    for (let t = Math.ceil(x0 / tickEvery) * tickEvery; t <= x1; t += tickEvery) {
      axis.append(s('text', {x: px(t), y: HEIGHT - 6, 'text-anchor': 'middle'}, clock(t)));
    }
    svg.append(axis);
    svg.setAttribute('aria-label', entries.length ? `${entries.length} series over the last ${Math.round(shown / 60)} minutes` : empty);

    if (!entries.length || !times.length) {
      svg.append(s('text', {class: 'empty', x: M.left + W / 2, y: M.top + H / 2, 'text-anchor': 'middle'}, empty));
    }
    entries.forEach(([, vs], i) => {
      let d = '', pen = false;
      vs.forEach((v, j) => {
        if (v === null || times[j] < x0) { pen = false; return; }
        d += `${pen ? 'L' : 'M'}${px(times[j]).toFixed(1)},${py(v).toFixed(1)}`;
        pen = true;
      });
      if (d) svg.append(s('path', {class: `line c${i % 10}`, d}));
    });
    const cursor = s('line', {class: 'cursor hidden', y1: M.top, y2: M.top + H});
    svg.append(cursor);

    const at = j => {
      clear(legend);
      entries.forEach(([key, vs], i) => {
        const v = j >= 0 ? vs[j] : null;
        legend.append(h('span', {class: 'key'}, h('span', {class: `swatch c${i % 10}`}), key,
          h('span', {class: 'val'}, v === null || v === undefined ? '–' : format(v))));
      });
      if (j >= 0 && j < times.length - 1) legend.append(h('span', {class: 'val'}, 'at ' + clock(times[j])));
    };
    at(times.length - 1);
    svg.onpointermove = e => {
      if (!times.length) return;
      const r = svg.getBoundingClientRect();
      const t = x0 + ((e.clientX - r.left) * width / r.width - M.left) / W * (x1 - x0);
      let j = 0;
      for (let k = 0; k < times.length; k++) if (Math.abs(times[k] - t) < Math.abs(times[j] - t)) j = k;
      cursor.setAttribute('x1', px(times[j]));
      cursor.setAttribute('x2', px(times[j]));
      cursor.classList.remove('hidden');
      at(j);
    };
    svg.onpointerleave = () => { cursor.classList.add('hidden'); at(times.length - 1); };
  };
  draw();
  const ro = new ResizeObserver(() => { if (Math.abs((container.clientWidth || 0) - lastWidth) > 4) { lastWidth = container.clientWidth; draw(); } });
  let lastWidth = container.clientWidth;
  ro.observe(container);
  return () => ro.disconnect();
}
