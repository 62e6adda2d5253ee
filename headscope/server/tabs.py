"""The page's tabs, in one list. Everything else about them follows from `TABS`:

  the nav buttons and the sections of templates/index.html   (a loop over TABS)
  each section's content                                     templates/<Tab.template>
  the JS module that runs it                                 static/<Tab.script>: a <script type="module"> of the
                                                             page, run before static/js/main.js, registering its
                                                             hooks (static/js/lib/registry.js)
  the `?tab=` values the page accepts                        `tab_named`; the first tab is the default

A tab's module registers what it needs of the hooks main.js calls (setup, draw, ready, analysed, …; the list is at
the top of static/js/main.js). No other file names a tab: add one here, write its partial and its module.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Tab:
    name: str  # ?tab=NAME, the nav button's data-tab, the section's id "tab-NAME"
    label: str  # the nav button's words
    docs: str | None = None  # the document that explains it: /docs/NAME.md (one of routes/pages.py LINKED_DOCS)
    template: str = ""  # the section's content, under templates/ (default: tabs/NAME.html)
    script: str = ""  # its ES module, under static/ (default: js/tabs/NAME.js)

    def __post_init__(self):
        if not self.template:
            object.__setattr__(self, "template", f"tabs/{self.name}.html")
        if not self.script:
            object.__setattr__(self, "script", f"js/tabs/{self.name}.js")


TABS: tuple[Tab, ...] = (
    Tab("grid", "Heads"),
    Tab("map", "Head map", docs="metrics"),
    Tab("table", "Table", docs="metrics"),
    Tab("similarity", "Similarity", docs="metrics"),
    Tab("compare", "Compare"),
    Tab("corpus", "Corpus"),
    Tab("mechanism", "Mechanism"),
    Tab("playground", "Playground"),
    Tab("heads-experiment", "One head or many?"),
    Tab("probes", "Probes", docs="probes"),
    Tab("importance", "Importance", docs="importance"),
    Tab("patching", "Patching", docs="patching"),
    Tab("detect", "Detect", docs="detect"),
)


def tab_named(name: str | None) -> Tab | None:
    """The tab `?tab=name` asks for; None for a name that is no tab."""
    return next((tab for tab in TABS if tab.name == name), None)
