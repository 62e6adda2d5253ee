// The tabs' modules, as they run. Each tab's script (static/js/tabs/NAME.js, one <script type="module"> per tab
// of the registry, before main.js: module scripts run in the order of the page) ends with
//   register(import.meta.url, { setup, draw, … })
// and the page (main.js) finds each tab's hooks by the script URL the page config gives it. A tab whose script
// failed to load or to run has none.
const hooks = new Map(); // script path -> the tab's hooks

export function register(url, tabHooks) {
  hooks.set(new URL(url).pathname, tabHooks);
}

export function registered(script) {
  return hooks.get(new URL(script, location.href).pathname) || null;
}
