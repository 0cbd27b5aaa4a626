"""The OpenAPI 3.1 document of the manager's HTTP API, and its reference page.

The document is made of two parts (issue 14, item 8): its paths come from the route table
(`wr.manager.routes`), the same entries that declare the routes, their guards and their
handlers, so every served route is described and "no token needed" is said exactly where
the table leaves a route open; everything else (what the API is, its tags, and the shared
schemas, parameters and answers the operations refer to) is data, in
``static/openapi/components.yaml``. Two tests keep it honest
(tests/integration/test_openapi.py and test_routes.py): every route is described (and
nothing else), and schemathesis fuzzes a live manager with it, checking that no request
gets a 5xx and that every answer matches what the document says.

* ``GET /rest/openapi.json``: the document as JSON (no token, like ``/rest/version/``);
* ``GET /rest/docs``: the reference page, rendered here from the document into one static
  HTML page with its style inline: nothing is fetched from anywhere, so it works offline
  and with the page's strict content security policy. ``python -m wr.manager.openapi``
  writes the same page to stdout (docs/api-reference.html is made that way).
"""

from __future__ import annotations

import functools
import html
import re
import sys
from importlib import resources
from typing import Any

import orjson
import yaml
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from wr import __version__
from wr.job_table import job_keys
from wr.manager.routes import ROUTES
from wr.manager.routing import TOKEN_SECURITY, openapi_paths

COMPONENTS = ("static", "openapi", "components.yaml")
"""Where the document's shared parts are, inside the ``wr.manager`` package."""
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
"""The operation keys of a path item, in the order the page shows them."""


@functools.cache
def document() -> dict[str, Any]:
    """The document, with ``info.version`` set to this wr's version."""
    text = resources.files("wr.manager").joinpath(*COMPONENTS).read_text(encoding="utf-8")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    shared = yaml.load(text, Loader=loader)  # a safe loader (C-accelerated when available)
    shared["info"]["version"] = __version__
    # The job object's keys are the field table's, each with its schema and help (issue
    # 14, item 6): a key added to the table is documented here at once.
    shared["components"]["schemas"]["JobInput"]["properties"] = {
        name: schema for name, schema, _ in job_keys()}
    return {"openapi": shared["openapi"], "info": shared["info"],
            "servers": shared["servers"], "security": TOKEN_SECURITY,
            "tags": shared["tags"], "paths": openapi_paths(ROUTES),
            "components": shared["components"]}


@functools.cache
def document_json() -> bytes:
    return orjson.dumps(document(), option=orjson.OPT_APPEND_NEWLINE)


@functools.cache
def reference_page() -> str:
    return render(document())


# Open routes (routes.py): neither says anything of the jobs.

async def serve_document(request: Request) -> Response:
    return Response(document_json(), media_type="application/json; charset=UTF-8",
                    headers={"Access-Control-Allow-Origin": "*"})


async def serve_page(request: Request) -> Response:
    return HTMLResponse(reference_page(), headers=_PAGE_HEADERS)


_PAGE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
}
"""The page is one file: inline style, no script, nothing from elsewhere."""


# -- rendering --------------------------------------------------------------------------------

class _Page:
    """Turns the document into HTML, resolving ``$ref``s to links."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    def ref(self, obj: Any) -> Any:
        """Follow a local ``$ref`` (``#/components/...``) to what it names."""
        while isinstance(obj, dict) and "$ref" in obj:
            node: Any = self.doc
            for part in obj["$ref"].lstrip("#/").split("/"):
                node = node[part]
            obj = node
        return obj

    def type_of(self, schema: Any) -> str:
        """A schema in a few words of HTML: ``string``, ``array of <a>JobStatus</a>``, ..."""
        if not isinstance(schema, dict) or not schema:
            return "any"
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            return f'<a href="#schema-{name}">{_esc(name)}</a>'
        for key, word in (("oneOf", "one of"), ("anyOf", "any of"), ("allOf", "all of")):
            if key in schema:
                parts = [self.type_of(s) for s in schema[key]]
                if key != "allOf" and len(parts) == 2 and "null" in parts:
                    parts.remove("null")
                    return f"{parts[0]} or null"
                return f"{word} " + ", ".join(parts)
        kinds = schema.get("type", "any")
        kinds = list(kinds) if isinstance(kinds, list) else [kinds]
        words = []
        for kind in kinds:
            if kind == "array":
                words.append("array of " + self.type_of(schema.get("items")))
            elif kind == "object" and "additionalProperties" in schema and not schema.get(
                    "properties"):
                words.append("object of " + self.type_of(schema["additionalProperties"]))
            else:
                words.append(_esc(str(kind)))
        text = " or ".join(words)
        facts = []
        if "enum" in schema:
            facts.append("one of " + ", ".join(f"<code>{_esc(str(v))}</code>"
                                               for v in schema["enum"]))
        for key, word in (("minimum", "≥"), ("maximum", "≤"), ("minLength", "length ≥"),
                          ("minItems", "items ≥"), ("maxItems", "items ≤"),
                          ("minProperties", "properties ≥")):
            if key in schema:
                facts.append(f"{word} {schema[key]}")
        if "pattern" in schema:
            facts.append(f"matching <code>{_esc(schema['pattern'])}</code>")
        if facts:
            text += f' <span class="facts">({"; ".join(facts)})</span>'
        return text

    def properties(self, schema: dict[str, Any]) -> list[tuple[str, Any, bool]]:
        """(name, schema, required) of an object schema, ``allOf`` parts merged."""
        out: dict[str, tuple[str, Any, bool]] = {}
        parts = schema.get("allOf", [schema])
        for part in parts:
            part = self.ref(part)
            if "allOf" in part:
                for item in self.properties(part):
                    out[item[0]] = item
                continue
            required = set(part.get("required", ()))
            for name, sub in (part.get("properties") or {}).items():
                out[name] = (name, sub, name in required)
        return list(out.values())

    def schema_block(self, schema: Any) -> str:
        """A schema where it is used: its type, and a table of its properties if inline."""
        if isinstance(schema, dict) and "$ref" not in schema and (
                schema.get("properties") or schema.get("allOf")):
            return self.property_table(schema)
        return f"<p>{self.type_of(schema)}</p>"

    def property_table(self, schema: dict[str, Any]) -> str:
        rows = []
        for name, sub, required in self.properties(schema):
            sub_doc = sub.get("description", "") if isinstance(sub, dict) else ""
            rows.append(f"<tr><td><code>{_esc(name)}</code>{' <b>*</b>' if required else ''}"
                        f"</td><td>{self.type_of(_without_description(sub))}</td>"
                        f"<td>{_inline(sub_doc)}</td></tr>")
        if not rows:
            return f"<p>{self.type_of(schema)}</p>"
        return ("<table><thead><tr><th>property</th><th>type</th><th>meaning</th></tr>"
                "</thead><tbody>" + "".join(rows) + "</tbody></table>")

    def operation(self, path: str, method: str, op: dict[str, Any], shared: list[Any]) -> str:
        anchor = op.get("operationId") or f"{method}-{path}"
        out = [f'<section class="op" id="op-{_esc(anchor)}">',
               f'<h3><span class="method {method}">{method.upper()}</span> '
               f"<code>{_esc(path)}</code></h3>",
               f"<p class=\"summary\">{_inline(op.get('summary', ''))}</p>"]
        if op.get("security") == []:
            out.append('<p class="auth">No token needed.</p>')
        if op.get("description"):
            out.append(_markdown(op["description"]))
        params = [self.ref(p) for p in [*shared, *op.get("parameters", [])]]
        if params:
            out.append("<h4>Parameters</h4><table><thead><tr><th>name</th><th>in</th>"
                       "<th>type</th><th>meaning</th></tr></thead><tbody>")
            for p in params:
                req = " <b>*</b>" if p.get("required") else ""
                out.append(f"<tr><td><code>{_esc(p['name'])}</code>{req}</td>"
                           f"<td>{_esc(p['in'])}</td><td>{self.type_of(p.get('schema'))}</td>"
                           f"<td>{_inline(p.get('description', ''))}</td></tr>")
            out.append("</tbody></table>")
        if "requestBody" in op:
            body = self.ref(op["requestBody"])
            req = " (required)" if body.get("required") else ""
            out.append(f"<h4>Request body{req}</h4>")
            if body.get("description"):
                out.append(_markdown(body["description"]))
            for media, content in body.get("content", {}).items():
                out.append(f"<p><code>{_esc(media)}</code></p>")
                out.append(self.schema_block(content.get("schema")))
                if "example" in content:
                    out.append(_example(content["example"]))
        out.append("<h4>Responses</h4><table><thead><tr><th>status</th><th>meaning</th>"
                   "<th>body</th></tr></thead><tbody>")
        for status, response in op.get("responses", {}).items():
            response = self.ref(response)
            bodies = []
            for media, content in (response.get("content") or {}).items():
                bodies.append(f"<code>{_esc(media)}</code>: "
                              f"{self.type_of(content.get('schema'))}")
            out.append(f"<tr><td><b>{_esc(str(status))}</b></td>"
                       f"<td>{_inline(response.get('description', ''))}</td>"
                       f"<td>{'<br>'.join(bodies)}</td></tr>")
        out.append("</tbody></table></section>")
        return "\n".join(out)

    def render(self) -> str:
        doc = self.doc
        info = doc["info"]
        by_tag: dict[str, list[str]] = {t["name"]: [] for t in doc.get("tags", [])}
        toc: dict[str, list[str]] = {name: [] for name in by_tag}
        for path, item in doc["paths"].items():
            shared = item.get("parameters", [])
            for method in METHODS:
                op = item.get(method)
                if op is None:
                    continue
                tag = (op.get("tags") or ["Other"])[0]
                by_tag.setdefault(tag, []).append(self.operation(path, method, op, shared))
                anchor = op.get("operationId") or f"{method}-{path}"
                toc.setdefault(tag, []).append(
                    f'<li><a href="#op-{_esc(anchor)}"><span class="method {method}">'
                    f"{method.upper()}</span> {_esc(path)}</a></li>")
        descriptions = {t["name"]: t.get("description", "") for t in doc.get("tags", [])}
        parts = [_HEAD.format(title=_esc(info["title"]), version=_esc(info["version"])),
                 '<nav><h2>Contents</h2><ul class="toc">']
        for tag, items in toc.items():
            if items:
                parts.append(f'<li><a href="#tag-{_slug(tag)}">{_esc(tag)}</a><ul>'
                             + "".join(items) + "</ul></li>")
        parts.append('<li><a href="#schemas">Schemas</a></li><li><a href="#auth">'
                     "Authentication</a></li></ul></nav><main>")
        parts.append(f"<h1>{_esc(info['title'])} <small>{_esc(info['version'])}</small></h1>")
        parts.append(_markdown(info.get("description", "")))
        parts.append('<h2 id="auth">Authentication</h2><ul>')
        for name, scheme in doc["components"].get("securitySchemes", {}).items():
            how = (f"HTTP {scheme.get('scheme', '')}" if scheme["type"] == "http"
                   else f"{scheme.get('in', '')} parameter <code>{scheme.get('name', '')}</code>")
            parts.append(f"<li><b>{_esc(name)}</b>: {how}. "
                         f"{_inline(scheme.get('description', ''))}</li>")
        parts.append("</ul>")
        for tag, sections in by_tag.items():
            if sections:
                parts.append(f'<h2 id="tag-{_slug(tag)}">{_esc(tag)}</h2>')
                parts.append(_markdown(descriptions.get(tag, "")))
                parts.extend(sections)
        parts.append('<h2 id="schemas">Schemas</h2>')
        for name, schema in doc["components"].get("schemas", {}).items():
            parts.append(f'<section class="schema" id="schema-{_esc(name)}">'
                         f"<h3>{_esc(name)}</h3>")
            if schema.get("description"):
                parts.append(_markdown(schema["description"]))
            if self.properties(schema):
                parts.append(f"<p>{self.type_of(_shape(schema))}</p>")
                parts.append(self.property_table(schema))
            else:
                parts.append(f"<p>{self.type_of(_without_description(schema))}</p>")
            parts.append("</section>")
        parts.append("</main></body></html>\n")
        return "\n".join(parts)


def render(doc: dict[str, Any]) -> str:
    """The reference page of an OpenAPI document (as this module's document uses it)."""
    return _Page(doc).render()


def _shape(schema: dict[str, Any]) -> dict[str, Any]:
    """An object schema's own type line, without its properties."""
    if "allOf" in schema:
        return {"allOf": [s for s in schema["allOf"] if "$ref" in s]}
    return {k: v for k, v in schema.items() if k in ("type",)}


def _without_description(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: v for k, v in schema.items() if k != "description"}
    return schema


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def _inline(text: str) -> str:
    """Escape, then `code`, **bold** and [links](url) (only local #anchors and https)."""
    pieces = _CODE.split(_esc(text.strip()))
    out = []
    for i, piece in enumerate(pieces):
        if i % 2:
            out.append(f"<code>{piece}</code>")
            continue
        piece = _BOLD.sub(r"<strong>\1</strong>", piece)
        piece = _LINK.sub(lambda m: (f'<a href="{m.group(2)}">{m.group(1)}</a>'
                                     if m.group(2).startswith(("#", "https://"))
                                     else m.group(0)), piece)
        out.append(piece)
    return "".join(out)


def _markdown(text: str) -> str:
    """Paragraphs, ``- `` lists and fenced code blocks: all the documents' texts use."""
    out: list[str] = []
    blocks = re.split(r"\n\s*\n", text.strip()) if text.strip() else []
    in_code: list[str] | None = None
    for block in blocks:
        if in_code is not None or block.startswith("```"):
            lines = block.split("\n")
            if in_code is None:
                in_code = []
                lines = lines[1:]
            done = bool(lines) and lines[-1].strip() == "```"
            in_code.extend(lines[:-1] if done else lines)
            if done:
                out.append("<pre>" + _esc("\n".join(in_code)) + "</pre>")
                in_code = None
            else:
                in_code.append("")
            continue
        lines = block.split("\n")
        if lines[0].startswith(("- ", "* ")):
            items: list[str] = []
            for line in lines:
                if line.startswith(("- ", "* ")):
                    items.append(line[2:])
                elif items:
                    items[-1] += " " + line.strip()
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in items) + "</ul>")
        else:
            out.append(f"<p>{_inline(' '.join(line.strip() for line in lines))}</p>")
    if in_code is not None:
        out.append("<pre>" + _esc("\n".join(in_code)) + "</pre>")
    return "\n".join(out)


def _example(value: Any) -> str:
    text = orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    return f"<p>Example:</p><pre>{_esc(text)}</pre>"


_HEAD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} {version}</title>
<style>
body {{ margin: 0; font: 15px/1.5 system-ui, sans-serif; color: #1d2430; display: flex; }}
nav {{ width: 19rem; flex: none; height: 100vh; overflow-y: auto; position: sticky; top: 0;
       background: #f4f6f9; border-right: 1px solid #d8dde6; padding: 0 .8rem; font-size: 13px; }}
nav ul {{ list-style: none; padding-left: .6rem; margin: .2rem 0; }}
nav a {{ text-decoration: none; color: inherit; }}
main {{ flex: 1; max-width: 62rem; padding: 0 2rem 4rem; min-width: 0; }}
h1 small {{ font-size: 55%; color: #667; }}
h2 {{ border-bottom: 2px solid #d8dde6; margin-top: 2.5rem; }}
section {{ border: 1px solid #d8dde6; border-radius: 6px; padding: 0 1rem .6rem;
           margin: 1rem 0; }}
h3 code {{ font-size: 105%; }}
.summary {{ font-weight: 600; margin-top: -.6rem; }}
.auth {{ color: #2f6b2f; }}
.method {{ display: inline-block; min-width: 3.8em; text-align: center; border-radius: 4px;
           color: #fff; font: bold 11px/1.8 monospace; padding: 0 .3em; margin-right: .2em; }}
.get {{ background: #2b6cb0; }} .post {{ background: #2f855a; }} .put {{ background: #b7791f; }}
.delete {{ background: #c53030; }} .patch {{ background: #6b46c1; }}
table {{ border-collapse: collapse; width: 100%; margin: .4rem 0; font-size: 14px; }}
th, td {{ text-align: left; vertical-align: top; border-bottom: 1px solid #e4e8ef;
          padding: .25rem .5rem; }}
th {{ background: #f4f6f9; }}
code, pre {{ font-family: ui-monospace, monospace; font-size: 92%; }}
code {{ background: #eef1f5; padding: 0 .2em; border-radius: 3px; }}
pre {{ background: #eef1f5; padding: .6rem; overflow-x: auto; border-radius: 4px; }}
.facts {{ color: #556; font-size: 90%; }}
@media (prefers-color-scheme: dark) {{
  body {{ background: #161a20; color: #d6dbe3; }}
  nav, th {{ background: #1e242d; }} nav {{ border-color: #2c3440; }}
  section, h2, th, td {{ border-color: #2c3440; }}
  code, pre {{ background: #232a34; }} .facts, h1 small {{ color: #9aa3b1; }}
}}
</style></head><body>"""


def main() -> None:
    """Write the reference page to stdout (``python -m wr.manager.openapi``)."""
    sys.stdout.write(reference_page())


if __name__ == "__main__":
    main()
