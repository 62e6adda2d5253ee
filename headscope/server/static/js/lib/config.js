// The page's config: what the server rendered into <script type="application/json" id="page-config">
// (headscope/server/routes/pages.py page_config), read once. The scripts take every server constant from here,
// never from a copy:
//   tab, model             the tab and model the URL asked for, checked by the server (an unknown one: the default)
//   tabs                   [{name, label, docs, script}]: every tab, in order (headscope/server/tabs.py)
//   ablation               {modes, default}: how a head can be knocked out (headscope/models/interventions.py)
//   weights                {kinds: [{name, label}], default}: what an answer's `attention` may hold
//   limits                 every limit the server enforces, by name (GET /api/models publishes the same)
//   errors                 ErrorCode name -> the code an error answer carries in `error`
//   metrics                metric -> {basis: raw | renormalised, description} (GET /api/models publishes the same)
const node = document.getElementById('page-config');

export const config = node ? JSON.parse(node.textContent) : null;
