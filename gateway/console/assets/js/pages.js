// The console's pages, in navigation order. A page is a module under pages/ that exports
// render(root, ctx) and may return a function that stops what it started (timers); ctx
// gives the page its hash parameters (#/dead-letters?destination=audit) and every(fn, ms)
// for refreshing while it is shown.
export const pages = [
  {path: 'overview', title: 'Overview', load: () => import('./pages/overview.js')},
  {path: 'destinations', title: 'Destinations', load: () => import('./pages/destinations.js')},
  {path: 'dead-letters', title: 'Dead letters', load: () => import('./pages/deadletters.js')},
  {path: 'events', title: 'Events', load: () => import('./pages/events.js')},
  {path: 'rules', title: 'Rules', load: () => import('./pages/rules.js')},
];
