"""Activation patching and direct logit attribution in a notebook, with no server: the same answers as POST
/api/patch and POST /api/attribute (headscope/analyses/patching.py, attribution.py), drawn inline as tables.

    from headscope.notebook import patch, attribute
    p = patch("k#9Qz.m>Ab k#9Qz.m>A", "xY7!pw@3Rq k#9Qz.m>A", answer="b", wrong="Y", model="induction")
    p                        # each map's recovery as a table shaded around 0 (red: positive, blue: negative)
    p.recovery()             # numpy, shaped as the first map's dims; p.recovery("decoder.z") by name
    p.answer                 # the API's answer, as a dict
    a = attribute("k#9Qz.m>Ab k#9Qz.m>A", answer="b", wrong="Y", model="induction")
    a.components             # a list of {name, type, kind, layer, head, value}, as the API's
"""

from dataclasses import dataclass
from html import escape

import numpy as np

from headscope.analyses.attribution import attribute as direct_logit_attribution
from headscope.analyses.patching import PatchSpec, activation_patching
from headscope.models.analysis import AttentionModel
from headscope.models.registry import ModelSpec
from headscope.notebook.show import DEFAULT_MODEL, get_model


def shade(value: float | None, largest: float) -> str:
    """A background colour centred on 0: red for positive, blue for negative, white at 0 (and for null)."""
    if value is None or largest == 0:
        return "#fff"
    t = min(1.0, abs(value) / largest)
    fade = round(255 * (1 - t))
    return f"rgb(255,{fade},{fade})" if value > 0 else f"rgb({fade},{fade},255)"


def grid_html(rows: list[str], columns: list[str], values: list[list[float | None]], caption: str) -> str:
    largest = max((abs(v) for row in values for v in row if v is not None), default=0.0)
    head = "".join(f"<th>{escape(str(c))}</th>" for c in columns)
    body = "".join(
        f"<tr><th>{escape(r)}</th>" + "".join(
            f'<td style="background:{shade(v, largest)}" title="{"null" if v is None else f"{v:.4g}"}">'
            f'{"" if v is None else f"{v:.2f}"}</td>' for v in row) + "</tr>"
        for r, row in zip(rows, values, strict=True))
    return (f'<table style="border-collapse:collapse;font:12px monospace"><caption>{escape(caption)}</caption>'
            f"<tr><th></th>{head}</tr>{body}</table>")


@dataclass(repr=False)
class Patching:
    """One patching experiment's answer (`answer`, as POST /api/patch's), with numpy views and an HTML table."""

    answer: dict

    def names(self) -> list[str]:
        return [m["name"] for m in self.answer["maps"]]

    def _map(self, name: str | None) -> dict:
        maps = {m["name"]: m for m in self.answer["maps"]}
        if name is None:
            return self.answer["maps"][0]
        if name not in maps:
            raise KeyError(f"no map {name!r}; the maps are {', '.join(maps)}")
        return maps[name]

    def recovery(self, name: str | None = None) -> np.ndarray:
        """The map's recovery as float64, shaped as its dims (NaN where undefined)."""
        return np.array(self._map(name)["recovery"], dtype=float)

    def patched(self, name: str | None = None) -> np.ndarray:
        return np.array(self._map(name)["patched"], dtype=float)

    def __repr__(self) -> str:
        a = self.answer
        return (f"Patching({a['model']!r}, {a['patch']}, {a['direction']}, {a['metric']['name']}: clean "
                f"{a['clean_metric']:.4g}, corrupted {a['corrupted_metric']:.4g}; maps {', '.join(self.names())})")

    def _repr_html_(self) -> str:
        a = self.answer
        parts = [f"<p>{escape(repr(self))}</p>", f"<p>recovery = {escape(a['recovery_formula'])}</p>"]
        for m in a["maps"]:
            values, dims = m["recovery"], m["dims"]
            if len(dims) == 3:  # layer x head x position: one table per layer, heads down, positions across
                for layer, rows in zip(m["labels"]["layer"], values, strict=True):
                    parts.append(grid_html(m["labels"]["head"], m["labels"]["position"], rows,
                                           f"{m['name']} {layer}: recovery, head x position"))
            else:
                parts.append(grid_html(m["labels"][dims[0]], m["labels"][dims[1]], values,
                                       f"{m['name']}: recovery, {' x '.join(dims)}"))
        return "".join(parts)


@dataclass(repr=False)
class Attribution:
    """One direct logit attribution (`answer`, as POST /api/attribute's)."""

    answer: dict

    @property
    def components(self) -> list[dict]:
        return self.answer["components"]

    def __repr__(self) -> str:
        a = self.answer
        return (f"Attribution({a['model']!r}, logit({a['answer']['token']!r}) - logit({a['wrong']['token']!r}) = "
                f"{a['total']:.4g}, {len(a['components'])} components summing to {a['sum']:.4g})")

    def _repr_html_(self) -> str:
        ranked = sorted(self.components, key=lambda c: -abs(c["value"]))
        largest = max((abs(c["value"]) for c in ranked), default=0.0)
        rows = "".join(f'<tr><td>{escape(c["name"])}</td><td>{c["type"]}</td>'
                       f'<td style="background:{shade(c["value"], largest)}">{c["value"]:.4f}</td></tr>' for c in ranked)
        return (f"<p>{escape(repr(self))}; {escape(self.answer['norm']['about'])}</p>"
                f'<table style="font:12px monospace"><tr><th>component</th><th>type</th><th>value</th></tr>{rows}'
                "</table>")


def patch(clean: str, corrupted: str, answer: str | None = None, wrong: str | None = None, *,
          model: str | ModelSpec | AttentionModel = DEFAULT_MODEL, metric: str | None = None, patch: str = "heads",
          direction: str = "denoise", step: int | None = None, max_work: int | None = None) -> Patching:
    """Activation patching, as POST /api/patch (docs/patching.md). max_work: a bound on the positions run (None: no
    bound; the server's is Settings.patch_max_work)."""
    spec = PatchSpec(clean, corrupted, answer, wrong, metric, patch, direction, step)
    return Patching(activation_patching(get_model(model), spec, max_work))


def attribute(text: str, answer: str, wrong: str, *, model: str | ModelSpec | AttentionModel = DEFAULT_MODEL,
              step: int | None = None) -> Attribution:
    """Direct logit attribution, as POST /api/attribute (docs/patching.md)."""
    return Attribution(direct_logit_attribution(get_model(model), text, answer, wrong, step))
