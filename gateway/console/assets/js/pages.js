// The console's pages, in navigation order. A page is a module under pages/ that exports
// render(root, ctx) and may return a function that stops what it started (timers); ctx
// gives the page its hash parameters (#/dead-letters?destination=audit) and every(fn, ms)
// for refreshing while it is shown.
//
// The Events page (the event log's search and a callback's trace) is not listed: it joins
// here, as pages/events.js, once the admin API serves /api/v1/events.
export const pages = [
  {path: 'overview', title: 'Overview', load: () => import('./pages/overview.js')},
  {path: 'destinations', title: 'Destinations', load: () => import('./pages/destinations.js')},
  {path: 'dead-letters', title: 'Dead letters', load: () => import('./pages/deadletters.js')},
  {path: 'rules', title: 'Rules', load: () => import('./pages/rules.js')},
];
