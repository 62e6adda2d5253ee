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
    docs: str | None = None  # the document that explains it: /docs/NAME.html (one of server/documents.py LINKED_DOCS)
    template: str = ""  # the section's content, under templates/ (default: tabs/NAME.html)
    script: str = ""  # its ES module, under static/ (default: js/tabs/NAME.js)
    # Why the tab does not apply to a model that takes an image (ModelInfo.takes), in words; "" where it does. The
    # page shows this instead of the tab's content while such a model is chosen.
    not_for_images: str = ""

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
    Tab("corpus", "Corpus", not_for_images="it averages every head over a file of sentences, one per line: it reads "
        "texts, and an image model reads pictures"),
    Tab("mechanism", "Mechanism"),
    Tab("playground", "Playground"),
    Tab("heads-experiment", "One head or many?", docs="one-head-or-many"),
    Tab("probes", "Probes", docs="probes", not_for_images="a probe scores heads on pairs of words in sentences; an "
        "image model has patches, not words"),
    Tab("importance", "Importance", docs="importance", not_for_images="it measures what the model loses on a set of "
        "texts without each head; it takes no pictures yet (ablate heads from the Heads tab instead: the prediction "
        "with them ablated is shown)"),
    Tab("patching", "Patching", docs="patching", not_for_images="it patches activations between a clean and a "
        "corrupted text that differ in a word; it takes no pictures"),
    Tab("detect", "Detect", docs="detect", not_for_images="it scores heads on random words written twice and on "
        "sentences; an image model reads pictures"),
)


def tab_named(name: str | None) -> Tab | None:
    """The tab `?tab=name` asks for; None for a name that is no tab."""
    return next((tab for tab in TABS if tab.name == name), None)
