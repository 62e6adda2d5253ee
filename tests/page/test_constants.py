"""No script or template of the page holds a copy of a server constant: every error code, the ablation modes, the
kinds of `weights`, the limits and the tabs come from their one source (the page config block, rendered by
headscope/server/routes/pages.py). The scan reads string literals and object keys of every JS file (comments left
out) and attribute values and text of every template (Jinja tags, which the server fills in, left out). It is
shown to catch planted copies and to pass innocent uses of the same words."""

import re

import pytest

from headscope.models.interventions import MODES
from headscope.server.answers import WEIGHTS
from headscope.server.errors import ErrorCode
from headscope.server.files import JS, TEMPLATES
from headscope.server.settings import Settings, public_limits
from headscope.server.tabs import TABS

JS_FILES = sorted(JS.rglob("*.js"))
TEMPLATE_FILES = sorted(TEMPLATES.rglob("*.html"))
NEAR = 120  # characters: two members of one list this close to each other are a copy of the list
NEAR_NAME = 60  # characters between a limit's name and its value

ERROR_CODES = frozenset(code.value for code in ErrorCode)
# list -> {a word that names a member: the member}; a tab is named by its name or its label
LISTS = {
    "ablation modes": {mode: mode for mode in MODES},
    "weights kinds": {kind: kind for kind in WEIGHTS},
    "tabs": {**{t.label: t.name for t in TABS}, **{t.name: t.name for t in TABS}},
}
LIMITS = public_limits(Settings())  # name -> its default


# ---- reading the files -----------------------------------------------------------------------------------------

REGEX_AFTER = set("(,=:[!&|?{};+-*%<>~^") | {""}  # a '/' after one of these starts a regular expression
REGEX_AFTER_WORDS = {"return", "typeof", "case", "in", "of", "delete", "void", "throw", "new", "else", "do"}


def js_literals(source: str) -> tuple[list[tuple[int, str]], str]:
    """(offset, text) of every string literal (each piece of a template literal) and every object key of a JS
    source, and the source with its comments blanked out."""
    found, code = [], list(source)
    i, n = 0, len(source)
    templates = []  # brace depth inside each open ${ ... } of a template literal
    prev, word = "", ""  # the last significant character, and the last identifier

    def blank(a, b):
        code[a:b] = " " * (b - a)

    while i < n:
        c = source[i]
        if c.isspace():
            i += 1
        elif source.startswith("//", i):
            end = source.find("\n", i)
            end = n if end < 0 else end
            blank(i, end)
            i = end
        elif source.startswith("/*", i):
            end = source.find("*/", i + 2)
            end = n if end < 0 else end + 2
            blank(i, end)
            i = end
        elif c in "'\"":
            j, text = i + 1, []
            while j < n and source[j] != c:
                text.append(source[j : j + 2] if source[j] == "\\" else source[j])
                j += 2 if source[j] == "\\" else 1
            found.append((i, "".join(text)))
            i, prev = j + 1, "a"
        elif c == "`" or (c == "}" and templates and templates[-1] == 0):
            if c == "}":
                templates.pop()
            j, text = i + 1, []
            while j < n:
                if source[j] == "\\":
                    text.append(source[j : j + 2])
                    j += 2
                elif source[j] == "`":
                    j += 1
                    break
                elif source.startswith("${", j):
                    templates.append(0)
                    j += 2
                    break
                else:
                    text.append(source[j])
                    j += 1
            found.append((i, "".join(text)))
            i, prev = j, "a"
        elif c == "/" and (prev in REGEX_AFTER or (prev == "a" and word in REGEX_AFTER_WORDS)):
            j, in_class = i + 1, False  # skip the regular expression, which may hold quotes
            while j < n and (in_class or source[j] != "/"):
                if source[j] == "\\":
                    j += 1
                elif source[j] == "[":
                    in_class = True
                elif source[j] == "]":
                    in_class = False
                j += 1
            i, prev, word = j + 1, "a", ""
        elif c.isalpha() or c in "_$":
            m = re.compile(r"[\w$]+").match(source, i)
            rest = source[m.end():].lstrip()
            if prev in "{," and rest.startswith(":") and not rest.startswith("::"):
                found.append((i, m[0]))  # an object key
            i, prev, word = m.end(), "a", m[0]
        else:
            if c == "{" and templates:
                templates[-1] += 1
            elif c == "}" and templates:
                templates[-1] -= 1
            i, prev = i + 1, ("a" if c in ")]" else c)
    return found, "".join(code)


JINJA = re.compile(r"\{#.*?#\}|\{%.*?%\}|\{\{.*?\}\}|<!--.*?-->", re.S)
ATTRIBUTE = re.compile(r"""[\w:-]+\s*=\s*(?:"([^"]*)"|'([^']*)')""")
TEXT = re.compile(r">([^<>]+)<")


def template_literals(source: str) -> tuple[list[tuple[int, str]], str]:
    """(offset, text) of every attribute value and every text between tags of a template, Jinja left out."""
    code = JINJA.sub(lambda m: " " * len(m[0]), source)
    found = [(m.start(), m[1] if m[1] is not None else m[2]) for m in ATTRIBUTE.finditer(code)]
    found += [(m.start(1) + len(m[1]) - len(m[1].lstrip()), m[1].strip()) for m in TEXT.finditer(code) if m[1].strip()]
    return sorted(found), code


def literals(path_name: str, source: str) -> tuple[list[tuple[int, str]], str]:
    return js_literals(source) if path_name.endswith(".js") else template_literals(source)


# ---- the checks ----------------------------------------------------------------------------------------------


def error_copies(found) -> list[str]:
    return [f"error code {text!r}" for _, text in found if text in ERROR_CODES]


def list_copies(found, name: str, members: dict) -> list[str]:
    """Two different members of one list named by whole literals within NEAR characters: a copy of (part of) the
    list."""
    hits = [(at, members[text]) for at, text in found if text in members]
    out = []
    for k, (at, _) in enumerate(hits):
        near = {member for a, member in hits[k:] if a - at <= NEAR}
        if len(near) > 1:
            out.append(f"{name}: {sorted(near)}")
    return sorted(set(out))


def number(text: str) -> float | None:
    try:
        return float(text.replace("_", "").replace(",", ""))
    except ValueError:
        return None


NUMBER = re.compile(r"(?<![\w.])\d[\d_,]*(?:\.\d+)?(?:e\d+)?(?![\w])")


def limit_copies(code: str) -> list[str]:
    """A limit's default written within NEAR_NAME characters of its name (snake_case, camelCase or kebab-case)."""
    out = []
    for name, value in LIMITS.items():
        camel = re.sub(r"_(\w)", lambda m: m[1].upper(), name)
        for m in re.finditer("|".join(map(re.escape, {name, camel, name.replace("_", "-")})), code):
            around = code[max(0, m.start() - NEAR_NAME) : m.end() + NEAR_NAME]
            if any(number(n) == value for n in NUMBER.findall(around)):
                out.append(f"limit {name} = {value}")
    return sorted(set(out))


def copies(path_name: str, source: str) -> list[str]:
    found, code = literals(path_name, source)
    out = error_copies(found) + limit_copies(code)
    for name, members in LISTS.items():
        out += list_copies(found, name, members)
    return out


# ---- the page's own files --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", JS_FILES + TEMPLATE_FILES, ids=lambda p: str(p.relative_to(JS.parents[1])))
def test_no_script_or_template_copies_a_server_constant(path):
    assert copies(path.name, path.read_text(encoding="utf-8")) == []


def test_every_file_is_scanned():
    names = {p.relative_to(JS).as_posix() for p in JS_FILES}
    assert "main.js" in names and {f"tabs/{t.name}.js" for t in TABS} <= names and "lib/api.js" in names
    assert {p.relative_to(TEMPLATES).as_posix() for p in TEMPLATE_FILES} >= {"index.html", "notebook.html",
                                                                              *(t.template for t in TABS)}


def test_the_error_codes_a_script_names_are_the_servers():
    """Scripts name a code through the config (config.errors.too_many_tokens): each such name is an ErrorCode."""
    named = {m[1] for p in JS_FILES for m in re.finditer(r"\bconfig\.errors\.(\w+)", js_literals(p.read_text())[1])}
    assert named and named <= set(ErrorCode.__members__), named - set(ErrorCode.__members__)


# ---- the scan catches copies, and lets innocent uses be ------------------------------------------------------

PLANTED_JS = {
    "if (['bad_ablation', 'too_many_heads', 'not_ablatable'].includes(e.body.error)) {}": "error code 'bad_ablation'",
    "if (body.error === \"too_many_tokens\") {}": "error code 'too_many_tokens'",
    "const MODES = ['zero', 'mean'];": "ablation modes",
    "ablate.ablation = q.get('ablation') === 'mean' ? 'mean' : 'zero';": "ablation modes",
    "const WEIGHTS = [`attention`, `value_norm`];": "weights kinds",
    "const TABS = {\n  map: { draw },\n  table: { draw },\n  'heads-experiment': { draw },\n};": "tabs",
    "for (const t of ['grid', 'probes']) show(t);": "tabs",
    "const corpusMaxTexts = 2000;": "limit corpus_max_texts",
    "const most = limits.corpus_max_texts ?? 2_000;": "limit corpus_max_texts",
    "// a comment first\nconst s = /[\",]/.test(x) ? 'zero' : 'mean';": "ablation modes",  # a regex with quotes
}
PLANTED_HTML = {
    '<select><option value="zero">zero</option><option value="mean">mean</option></select>': "ablation modes",
    '<button data-tab="grid">Heads</button>\n<button data-tab="map">Head map</button>': "tabs",
    '<section id="tab-corpus" data-max-texts="2000" data-limit="corpus-max-texts">': "limit corpus_max_texts",
    '<p>One sentence per line (corpus_max_texts: 2,000).</p>': "limit corpus_max_texts",
    "<p data-error='busy'></p>": "error code 'busy'",
}
INNOCENT_JS = [
    "// the ablation errors (bad_ablation, too_many_heads) carry field = 'ablate'\nif (e.body?.field === 'ablate') f();",
    "/* zero, mean */ const t = make('table', { className: 'numbers' });",
    "if (body.error === config.errors.too_many_tokens && body.count) {}",
    "const box = make('div', { attrs: { 'data-head': perHead ? h : 'mean' } });",
    "status(`${n} lines: the limit is ${page.config.limits.corpus_max_texts} per run.`);",
    "if (weights !== config.weights.default) q.set('weights', weights);",
    "const s = `${a}zero${b}`; const grid = document.querySelector('#tabs [data-tab=\"compare\"]');",
    "const re = /'/; const message = 'too many heads';",
]
INNOCENT_HTML = [
    '{% for mode in config.ablation.modes %}<option value="{{ mode }}">{{ mode }}</option>{% endfor %}',
    '<label title="zero: the output becomes 0; mean: its mean over the query positions">ablation</label>',
    '<p>One sentence per line (up to {{ "{:,}".format(settings.corpus_max_texts) }}).</p>',
    '{% for tab in tabs %}<button data-tab="{{ tab.name }}">{{ tab.label }}</button>{% endfor %}',
    "<table><tr><td>grid of heads</td></tr></table>",
    '<h2>Importance</h2><div id="x" data-kind="importance"></div>',  # one tab, named twice
]


@pytest.mark.parametrize("source, what", PLANTED_JS.items())
def test_a_copy_planted_in_a_script_is_caught(source, what):
    assert any(what in found for found in copies("x.js", source)), copies("x.js", source)


@pytest.mark.parametrize("source, what", PLANTED_HTML.items())
def test_a_copy_planted_in_a_template_is_caught(source, what):
    assert any(what in found for found in copies("x.html", source)), copies("x.html", source)


@pytest.mark.parametrize("source", INNOCENT_JS)
def test_innocent_uses_in_a_script_pass(source):
    assert copies("x.js", source) == []


@pytest.mark.parametrize("source", INNOCENT_HTML)
def test_innocent_uses_in_a_template_pass(source):
    assert copies("x.html", source) == []


def test_a_copy_planted_in_a_real_file_is_caught():
    """The scan of the real files sees what is planted into them (at their end, after everything else)."""
    main = (JS / "main.js").read_text()
    assert copies("main.js", main) == []
    assert copies("main.js", main + "\nconst WEIGHTS_COPY = ['attention', 'value_norm'];\n") == ["weights kinds: "
                                                                                                  "['attention', 'value_norm']"]
    index = (TEMPLATES / "index.html").read_text()
    assert copies("index.html", index + '<option value="zero"></option><option value="mean"></option>') == [
        "ablation modes: ['mean', 'zero']"]
