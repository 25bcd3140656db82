// One model's traffic from its prediction log: requests/s per version and variant, latency
// percentiles, the canary split. Refreshes itself every 30 s while "Live" is on. The log
// holds answered predictions only, so the page says where errors are counted instead of
// showing an error rate it cannot know.
import { api, ApiError } from '../api.js';
import { fill, h, link, path } from '../dom.js';
import { clock, int, percent, short, time } from '../format.js';
import { Chart } from '../chart.js';
import { errorNotice, notFound, rangePicker, readRange, section, table } from '../ui.js';

const CHOICES = ['1h', '6h', '24h', '7d'];
const BUCKETS = { '1h': 60, '6h': 300, '24h': 900, '7d': 3600, custom: null };
const REFRESH_MS = 30_000;

function bucketFor(range) {
  if (BUCKETS[range.key]) return BUCKETS[range.key];
  const span = (range.until - range.since) / 1000;
  return Math.max(60, Math.ceil(span / 120 / 60) * 60); // about 120 buckets
}

export async function render(ctx) {
  const name = ctx.params[0];
  const range = readRange(ctx.query, CHOICES, '1h');
  const bucket = bucketFor(range);
  const load = (since, until) => api(`${path('deployments', name)}?since_ms=${since}&until_ms=${until}&bucket_s=${bucket}`, { signal: ctx.signal });
  let data;
  try {
    data = await load(range.since, range.until);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      notFound(ctx, { title: 'Model not found', what: `No registered model named “${name}”, so there is no deployment to show.`, err, back: ['/deployments', 'All deployments'] });
      return null;
    }
    throw err;
  }
  ctx.setTitle(`${name} · deployment`);
  const long = range.until - range.since > 86_400_000;
  const rate = new Chart({ title: 'Requests per second', xLabel: 'time', xFormat: (v) => clock(v, long), yFormat: short, height: 220, yRange: [0, null] });
  const latency = new Chart({ title: 'Latency p95 (ms)', xLabel: 'time', xFormat: (v) => clock(v, long), yFormat: short, height: 220, yRange: [0, null] });
  const body = h('div', { id: 'deployment-body' });
  const stamp = h('span', { class: 'muted', id: 'refreshed' });
  const live = h('input', { type: 'checkbox', id: 'live', checked: range.key !== 'custom', disabled: range.key === 'custom' });
  const refreshed = h('div', { role: 'status' });
  let timer = null;

  const draw = (d) => {
    const label = (g) => `v${g.version} ${g.variant}`;
    const mids = d.buckets.map((b) => b + d.bucket_ms / 2);
    rate.setData(d.groups.map((g) => ({ name: label(g), xs: mids, ys: g.counts.map((c) => c / (d.bucket_ms / 1000)) })));
    latency.setData(d.groups.map((g) => ({ name: label(g), xs: mids, ys: g.p95_ms.map((v) => (v === null ? NaN : v)) })));
    const canary = d.canary;
    const aliasOf = (v) => Object.entries(d.aliases).filter(([, n]) => n === v).map(([a]) => `@${a}`).join(' ');
    fill(body,
      h('div', { class: 'tiles' },
        tile('Requests in range', int(d.total), 'tile-total'),
        tile('Requests/s (range average)', short(d.total / ((d.until - d.since) / 1000)), 'tile-rate'),
        tile('Canary share', canary.share === null ? '—' : percent(canary.share), 'tile-canary'),
        tile('Last prediction logged', d.last_prediction ? time(d.last_prediction) : '—', 'tile-last')),
      section('versions', 'Per version and variant', table([
        { label: 'Version', num: true, cell: (g) => link(path('models', name, 'versions', g.version), `v${g.version}`) },
        { label: 'Aliases', cell: (g) => aliasOf(g.version) },
        { label: 'Variant', cell: (g) => h('span', { class: 'badge' }, g.variant) },
        { label: 'Requests', num: true, cell: (g) => int(g.requests) },
        { label: 'Requests/s', num: true, cell: (g) => short(g.requests_per_s) },
        { label: 'p50 ms', num: true, cell: (g) => short(g.latency_ms.p50) },
        { label: 'p95 ms', num: true, cell: (g) => short(g.latency_ms.p95) },
        { label: 'p99 ms', num: true, cell: (g) => short(g.latency_ms.p99) },
        { label: 'Mean ms', num: true, cell: (g) => short(g.latency_ms.mean) },
      ], d.groups, { caption: 'Traffic per version and variant', empty: 'No predictions logged in this range.' })),
      section('canary', 'Canary split',
        canary.share === null
          ? h('p', { class: 'muted' }, 'No answered requests in this range.')
          : [h('div', { class: 'split', role: 'img', 'aria-label': `primary ${percent(1 - canary.share)}, canary ${percent(canary.share)}` },
            h('span', { class: 'primary', style: { width: `${(1 - canary.share) * 100}%` } }),
            h('span', { class: 'canary', style: { width: `${canary.share * 100}%` } })),
          h('ul', { class: 'legend' },
            h('li', {}, h('span', { class: 'swatch ref' }), `primary: ${int(canary.primary_requests)} (${percent(1 - canary.share)})`),
            h('li', { id: 'canary-share' }, h('span', { class: 'swatch cur' }), `canary: ${int(canary.canary_requests)} (${percent(canary.share)})`)),
          h('p', { class: 'muted' }, 'Share of answered requests (primary + canary); shadow copies are never answered and are not counted here.')]),
      section('errors', 'Error rate', errorsView(d.errors)),
    );
    stamp.textContent = `${time(d.since)} – ${time(d.until)}, buckets of ${short(d.bucket_ms / 1000)} s`;
  };

  const refresh = async () => {
    const span = range.until - range.since;
    const until = Date.now();
    try {
      const d = await load(until - span, until);
      draw(d);
      fill(refreshed);
    } catch (err) {
      if (ctx.signal.aborted || (err && err.name === 'AbortError')) return;
      fill(refreshed, errorNotice(err, 'Could not refresh'));
    }
  };
  const schedule = () => {
    clearInterval(timer);
    timer = live.checked ? setInterval(refresh, REFRESH_MS) : null;
  };
  live.addEventListener('change', schedule);

  fill(ctx.main,
    h('p', { class: 'crumbs' }, link('/deployments', 'Deployments'), ' /'),
    h('h1', {}, name),
    h('div', { class: 'row' },
      rangePicker(ctx, range, CHOICES),
      h('span', { class: 'row' }, live, h('label', { for: 'live' }, `Live (refresh every ${REFRESH_MS / 1000} s)`)),
      h('button', { type: 'button', onclick: refresh, id: 'refresh' }, 'Refresh now'),
      stamp),
    h('p', { class: 'muted' }, 'From the prediction log (compacted segments), so the newest minutes appear once the serving processes have flushed them. ',
      link(path('monitoring', name), 'Monitoring of this model →')),
    refreshed,
    h('div', { class: 'charts' }, rate.el, latency.el),
    body);
  draw(data);
  schedule();
  return () => { clearInterval(timer); rate.destroy(); latency.destroy(); };
}

function tile(label, value, id) {
  return h('div', { class: 'tile', id }, h('span', { class: 'label' }, label), h('span', { class: 'value' }, value));
}

// Error rates come from the serving processes' own counters (GYRE_SERVING_URLS); a server
// that could not be read is listed with why, never counted as zero.
function errorsView(errors) {
  if (!errors.recorded) {
    return [
      h('p', { class: 'notice', id: 'errors-note' }, errors.note),
      ...(errors.servers || []).map((s) => h('p', { class: 'muted' }, `${s.url}: ${s.error || 'read'}`)),
    ];
  }
  const rows = Object.entries(errors.versions).map(([version, r]) => ({ version, ...r }));
  return [
    table([
      // '' : requests refused before a version took them (a body too large, an unknown version)
      { label: 'Version', num: true, cell: (r) => (r.version ? `v${r.version}` : 'none (refused)') },
      { label: 'Requests', num: true, cell: (r) => int(r.requests) },
      { label: 'Errors', num: true, cell: (r) => int(r.errors) },
      { label: 'Error rate', num: true, cell: (r) => (r.error_rate === null ? '—' : percent(r.error_rate)) },
    ], rows, { caption: 'Requests and errors per version', empty: 'The servers have not served this model.' }),
    h('p', { class: 'muted', id: 'errors-note' }, errors.note),
    ...errors.servers.filter((s) => !s.ok).map((s) => h('p', { class: 'notice' }, `${s.url} could not be read: ${s.error}`)),
  ];
}
