"""`pr diagnose --sample N`: a static labelling sheet, so people can check the automatic labels.

One self-contained HTML page (images inlined as data URLs, plain inline JS, no network): each sampled
item's image, question, response with the judged facts marked by verdict, the automatic label, and a
human verdict (perception error yes / no / can't tell, notes). "Export JSONL" downloads
`{id, perception_error, notes}` lines, what `pr diagnose --agreement` reads. Opening the page with
`#selftest` fills in answers and writes the export into `<pre id="export">` (a headless-browser test).
"""

from __future__ import annotations

import base64
import html
import json
import mimetypes
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prcli.judge.lexical import normalise
from prcli.judge.statements import _STATEMENT, _relations, _subject, stated_values


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    """The objects of a JSONL file `pr diagnose` has already validated (streamed)."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                obj = json.loads(line)
                if isinstance(obj, dict):
                    yield obj


def fact_spans(fact: str, response: str) -> list[tuple[int, int]]:
    """Where the response speaks of the fact: its statements of the fact's quantities, else the
    sentences naming the fact's lines (a relation), else the fact's own words."""
    subjects = set(stated_values(normalise(fact)))
    spans = [
        m.span()
        for m in _STATEMENT.finditer(response)
        if _subject(m.group("kind"), m.group("name")) in subjects
    ]
    if not spans and _relations(fact):
        lines = set().union(*(set(ls) for ls, _ in _relations(fact)))
        for m in re.finditer(r"[^.!?;\n]+", response):
            named = {"".join(sorted(n)) for n in re.findall(r"\b[A-Z]{2}\b", m.group())}
            if lines <= named:
                spans.append(m.span())
    if not spans and fact.strip():
        spans = [m.span() for m in re.finditer(re.escape(fact.strip()), response, re.IGNORECASE)]
    return spans


def marked_response(response: str, facts: list[dict[str, Any]]) -> str:
    """The response as HTML, each span about a judged fact in a <mark> of its verdict (no overlaps:
    contradicted first, the reading that makes a perception error)."""
    order = {"contradicted": 0, "consistent": 1, "absent": 2}
    spans: list[tuple[int, int, int, dict[str, Any]]] = []
    for i, f in sorted(enumerate(facts), key=lambda p: order.get(p[1].get("verdict"), 3)):
        for a, b in fact_spans(f["fact"], response):
            if all(b <= s or a >= e for s, e, _, _ in spans):
                spans.append((a, b, i, f))
    out, pos = [], 0
    for a, b, i, f in sorted(spans, key=lambda s: s[0]):
        out.append(html.escape(response[pos:a]))
        title = html.escape(f"fact {i + 1}: {f['fact']} ({f['verdict']})")
        out.append(f'<mark class="{f["verdict"]}" title="{title}">{html.escape(response[a:b])}</mark>')
        pos = b
    out.append(html.escape(response[pos:]))
    return "".join(out)


def _data_url(path: Path) -> str | None:
    if not path.is_file():
        return None
    mime = mimetypes.guess_type(path.name)[0] or "image/png"
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _images(record: dict[str, Any] | None, base: Path) -> list[Path]:
    images = (record or {}).get("images") or []
    if isinstance(images, str):
        images = [images]
    return [p if p.is_absolute() else base / p for p in (Path(str(x)).expanduser() for x in images)]


_STYLE = """
body{font-family:sans-serif;max-width:60em;margin:auto;padding:1em}
section.item{border:1px solid #ccc;border-radius:6px;padding:1em;margin:1em 0}
img{max-width:100%;max-height:30em;display:block;margin:.5em 0}
.response{white-space:pre-wrap;background:#f8f8f8;padding:.5em}
mark.contradicted{background:#f99}mark.consistent{background:#9e9}mark.absent{background:#ddd}
li.contradicted{color:#a00}li.consistent{color:#070}li.absent{color:#666}
.noimage{color:#888;font-style:italic}pre#export{white-space:pre-wrap;background:#eef}
"""

_SCRIPT = """
function exportLines() {
  var out = [];
  document.querySelectorAll("section.item").forEach(function (s) {
    var picked = s.querySelector("input[type=radio]:checked");
    if (!picked) return;
    var pe = picked.value === "yes" ? true : picked.value === "no" ? false : null;
    var notes = s.querySelector("textarea").value;
    out.push(JSON.stringify({id: s.dataset.id, perception_error: pe, notes: notes || null}));
  });
  return out.map(function (l) { return l + "\\n"; }).join("");
}
function download() {
  var text = exportLines();
  document.getElementById("export").textContent = text;
  var a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], {type: "application/x-ndjson"}));
  a.download = document.body.dataset.name;
  document.body.appendChild(a); a.click(); a.remove();
}
document.getElementById("export-button").addEventListener("click", download);
if (location.hash === "#selftest") {
  var choices = ["yes", "no", "unknown"];
  document.querySelectorAll("section.item").forEach(function (s, i) {
    s.querySelector("input[value=" + choices[i % 3] + "]").checked = true;
    s.querySelector("textarea").value = i === 0 ? "selftest note" : "";
  });
  document.getElementById("export").textContent = exportLines();
  document.body.dataset.selftest = "done";
}
"""


def _item_html(
    n: int, lab: dict[str, Any], item: dict[str, Any], record: dict[str, Any] | None, images: list[Path]
) -> str:
    e = html.escape
    facts = lab.get("facts") or []
    parts = [f'<section class="item" data-id="{e(str(lab["id"]))}">', f"<h2>{n}. {e(str(lab['id']))}</h2>"]
    urls = [u for u in map(_data_url, images) if u]
    parts += [f'<img alt="image {i + 1}" src="{u}">' for i, u in enumerate(urls)] or [
        '<p class="noimage">no image</p>'
    ]
    question = item.get("question") or (record or {}).get("question")
    parts.append(
        f'<p class="question"><b>Question:</b> {e(str(question))}</p>'
        if question
        else '<p class="question">no question</p>'
    )
    response = item.get("response") or ""
    parts.append(
        f'<div class="response">{marked_response(response, facts) if response else "(no response)"}</div>'
    )
    parts.append('<ol class="facts">')
    parts += [f'<li class="{e(f["verdict"])}">{e(f["fact"])} <i>({e(f["verdict"])})</i></li>' for f in facts]
    parts.append("</ol>")
    auto = lab.get("perception_error")
    auto_text = {True: "perception error", False: "no perception error", None: "unknown"}[auto]
    reason = f" ({e(str(lab['reason']))})" if lab.get("reason") else ""
    parts.append(
        f'<p class="auto">automatic: <b>{auto_text}</b>{reason}; correct: {e(str(lab.get("correct")))}; '
        f"type: {e(str(lab.get('error_type')))}</p>"
    )
    name = f"pe-{n}"
    parts.append(
        "<fieldset><legend>Your verdict: does the response misread the figure?</legend>"
        + "".join(
            f'<label><input type="radio" name="{name}" value="{v}"> {t}</label> '
            for v, t in (
                ("yes", "perception error"),
                ("no", "no perception error"),
                ("unknown", "can't tell"),
            )
        )
        + '<br><textarea rows="2" cols="60" placeholder="notes"></textarea></fieldset>'
    )
    parts.append("</section>")
    return "\n".join(parts)


def write_sheet(
    labels_path: Path,
    items_path: Path,
    annotations: Path | None,
    annotation_key: str,
    sample: int,
    seed: int,
    out: Path,
) -> dict[str, Any]:
    """Draw `sample` labelled items (seeded; file order kept) and write their sheet to `out`."""
    labels = list(_lines(labels_path))
    chosen = sorted(random.Random(seed).sample(range(len(labels)), min(sample, len(labels))))
    picked = [labels[i] for i in chosen]
    ids = {str(lab["id"]) for lab in picked}
    items = {str(o.get("id")): o for o in _lines(items_path) if str(o.get("id")) in ids}
    refs = {str(items.get(i, {}).get(annotation_key, i)) for i in ids}
    records = {}
    if annotations is not None:
        records = {str(o.get("id")): o for o in _lines(annotations) if str(o.get("id")) in refs}
    blocks = []
    for n, lab in enumerate(picked, 1):
        item = items.get(str(lab["id"]), {})
        record = records.get(str(item.get(annotation_key, lab["id"])))
        images = _images(item, items_path.parent) if item.get("images") else []
        if not images and annotations is not None:
            images = _images(record, annotations.parent)
        blocks.append(_item_html(n, lab, item, record, images))
    export_name = (labels_path.stem if labels_path.suffix == ".jsonl" else labels_path.name) + ".human.jsonl"
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>pr diagnose: labelling sheet ({len(picked)} items)</title><style>{_STYLE}</style></head>\n"
        f'<body data-name="{html.escape(export_name)}"><h1>Labelling sheet: {len(picked)} of {len(labels)} items '
        f'(seed {seed})</h1>\n<p>Marks: <mark class="contradicted">contradicted</mark> '
        '<mark class="consistent">consistent</mark> facts. Unanswered items are left out of the export.</p>\n'
        + "\n".join(blocks)
        + '\n<p><button id="export-button" type="button">Export JSONL</button></p>\n<pre id="export"></pre>\n'
        f"<script>{_SCRIPT}</script>\n</body></html>\n"
    )
    out.write_text(page, encoding="utf-8")
    return {"path": str(out), "n": len(picked), "of": len(labels), "seed": seed}
