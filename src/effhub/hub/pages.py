"""Web pages of the local hub: the list of models and datasets, a page per repository, and the 404 page.

Card text is untrusted. Markdown is rendered by markdown-it-py with raw HTML off (it is escaped, never passed through),
link targets are checked by markdown-it's own link validation (no `javascript:`), and every other value is escaped. On
top of that each page carries a Content-Security-Policy that allows no script at all and loads nothing from outside the
server: the pages have no JavaScript, images come from the repository, styles are inline.
"""

from __future__ import annotations

import html
import posixpath
import re
from urllib.parse import quote, urlencode

from .storage import DEFAULT_BRANCH, HubHTTPError, LocalHubStore, parse_card_data

PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; form-action 'self'; "
                               "base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
LIST_TYPES = ("model", "dataset")
MAX_COMMITS_SHOWN = 50
LFS_BADGE = ' <span class="tag">LFS</span>'
_FRONT_MATTER = re.compile(r"^\s*---[\r\n]+[\S\s]*?[\r\n]+---(\r\n|\n|$)")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")

_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;color:#1f2328;background:#fff}
header{background:#24292f;color:#fff;padding:.7em 1.5em}header a{color:#fff;text-decoration:none;font-weight:600}
main{max-width:1100px;margin:1.5em auto;padding:0 1.5em}
table{border-collapse:collapse;margin:.8em 0;width:100%}th,td{border-bottom:1px solid #d0d7de;padding:.35em .6em;
text-align:left;vertical-align:top}th{background:#f6f8fa}
.tag{display:inline-block;background:#ddf4ff;border-radius:1em;padding:0 .6em;margin:0 .2em .2em 0;font-size:.85em}
.private{background:#ffebe9}.muted{color:#656d76;font-size:.9em}.num{text-align:right;font-variant-numeric:tabular-nums}
form.filters{display:flex;flex-wrap:wrap;gap:.5em;align-items:end;background:#f6f8fa;padding:.8em;border-radius:6px}
form.filters label{display:flex;flex-direction:column;font-size:.85em}
.card{border:1px solid #d0d7de;border-radius:6px;padding:0 1.2em;margin:1em 0}.card img{max-width:100%}
pre{background:#f6f8fa;padding:.8em;overflow:auto}code{background:#f6f8fa}
"""


def _e(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(title)}</title>"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>{_STYLE}</style></head>"
            f"<body><header><a href=\"/\">effhub local hub</a></header><main>{body}</main></body></html>")


def not_found_page(message: str = "") -> tuple[int, str]:
    """The 404 page (the same for a missing and for a private repository)."""
    body = (f"<h1 id=\"not-found\">404 &mdash; not found</h1><p>{_e(message)}</p>"
            "<p>The repository, revision or page does not exist on this local hub, or it is private.</p>"
            "<p><a href=\"/\">All models and datasets</a></p>")
    return 404, _page("404 - effhub local hub", body)


def repo_path(repo_type: str, repo_id: str) -> str:
    """The URL path of a repository (`/org/name`, `/datasets/org/name`)."""
    prefix = "" if repo_type == "model" else f"/{repo_type}s"
    return f"{prefix}/{quote(repo_id)}"


def metric_rows(card: dict | None) -> list[dict]:
    """The results of a card's `model-index` as rows: task, dataset, metric (name or type), value."""
    rows = []
    entries = (card or {}).get("model-index")
    for entry in entries if isinstance(entries, list) else []:
        for result in (entry or {}).get("results") or [] if isinstance(entry, dict) else []:
            if not isinstance(result, dict):
                continue
            task, dataset = result.get("task") or {}, result.get("dataset") or {}
            for metric in result.get("metrics") or []:
                if isinstance(metric, dict) and "value" in metric:
                    rows.append({"task": task.get("name") or task.get("type"),
                                 "dataset": dataset.get("name") or dataset.get("type"),
                                 "metric": metric.get("name") or metric.get("type"),
                                 "type": metric.get("type"), "value": metric.get("value")})
    return rows


def headline_rows(rows: list[dict]) -> list[dict]:
    """The first metric per (task, dataset) of `metric_rows`, in card order: what the list page and `effhub browse`
    show for a model."""
    seen, kept = set(), []
    for row in rows:
        if (row["task"], row["dataset"]) not in seen:
            seen.add((row["task"], row["dataset"]))
            kept.append(row)
    return kept


def _metric_value(rows: list[dict], wanted: str) -> float | None:
    for row in rows:
        if wanted.lower() in (str(row["metric"]).lower(), str(row["type"]).lower()):
            try:
                return float(row["value"])
            except (TypeError, ValueError):
                return None
    return None


def _format_value(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def format_size(size: int) -> str:
    """A byte count for people: `812 B`, `47.1 KB`, `3.0 MB`."""
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


def list_page(store: LocalHubStore, can_read, query: dict) -> tuple[int, str]:
    """The front page: models and datasets with search, filters (library, task, tag, type) and sorting.

    Args:
        can_read (`callable`): `(repo_id, meta) -> bool`, whether the caller may see a repository.
        query (`dict`): `search`, `library`, `task`, `tag`, `type` (`model`/`dataset`), `sort` (`updated` or
            `metric`) and `metric` (a metric name or type of the cards' `model-index`).
    """
    search, library, task = query.get("search", "").strip(), query.get("library", ""), query.get("task", "")
    tag, kind = query.get("tag", ""), query.get("type", "")
    sort, metric = query.get("sort", "updated"), query.get("metric", "").strip()
    rows, facets = [], {"library": set(), "task": set(), "tag": set(), "metric": set()}
    for repo_type in LIST_TYPES:
        for repo_id, meta in store.list_repos(repo_type):
            if not can_read(repo_id, meta):
                continue
            try:
                info = store.repo_summary(repo_type, repo_id, siblings=False)
            except HubHTTPError:  # deleted while listing
                continue
            card = info.get("cardData") or {}
            metrics = metric_rows(card)
            row = {"type": repo_type, "id": repo_id, "private": meta.get("private"), "updated": info["lastModified"],
                   "library": card.get("library_name"), "task": card.get("pipeline_tag"), "tags": info["tags"],
                   "metrics": metrics}
            facets["library"].update([row["library"]] if row["library"] else [])
            facets["task"].update([row["task"]] if row["task"] else [])
            facets["tag"].update(str(t) for t in card.get("tags") or [] if t is not None)
            facets["metric"].update(str(m["metric"]) for m in metrics)
            if kind and repo_type != kind:
                continue
            if search and search.lower() not in repo_id.lower():
                continue
            if library and row["library"] != library:
                continue
            if task and row["task"] != task:
                continue
            if tag and tag not in row["tags"]:
                continue
            rows.append(row)
    rows.sort(key=lambda row: row["updated"], reverse=True)
    if sort == "metric" and metric:
        with_value = [row for row in rows if _metric_value(row["metrics"], metric) is not None]
        without = [row for row in rows if _metric_value(row["metrics"], metric) is None]
        descending = query.get("direction", "desc") != "asc"
        with_value.sort(key=lambda row: _metric_value(row["metrics"], metric), reverse=descending)
        rows = with_value + without

    def select(name: str, label: str, options, current: str) -> str:
        items = "".join(f"<option value=\"{_e(o)}\"{' selected' if o == current else ''}>{_e(o)}</option>"
                        for o in sorted(options))
        return f"<label>{label}<select name=\"{name}\"><option value=\"\">any</option>{items}</select></label>"

    form = (
        "<form class=\"filters\" method=\"get\" action=\"/\">"
        f"<label>Search<input type=\"search\" name=\"search\" id=\"search\" value=\"{_e(search)}\"></label>"
        + select("type", "Type", LIST_TYPES, kind) + select("library", "Library", facets["library"], library)
        + select("task", "Task", facets["task"], task) + select("tag", "Tag", facets["tag"], tag)
        + f"<label>Sort<select name=\"sort\"><option value=\"updated\">last updated</option>"
        f"<option value=\"metric\"{' selected' if sort == 'metric' else ''}>by metric</option></select></label>"
        + select("metric", "Metric", facets["metric"], metric)
        + "<button type=\"submit\" id=\"apply\">Apply</button></form>"
    )
    lines = []
    for row in rows:
        chosen = next((m for m in row["metrics"] if metric and metric.lower() in
                       (str(m["metric"]).lower(), str(m["type"]).lower())), None)
        metric_cell = "".join(
            f"<div class=\"metric\"><span class=\"metric-name\">{_e(shown['metric'])}</span> "
            f"<span class=\"metric-value\">{_e(_format_value(shown['value']))}</span>"
            f"<div class=\"muted\">{_e(shown['dataset'])}</div></div>"
            for shown in ([chosen] if chosen else headline_rows(row["metrics"])))
        badges = "".join(f"<span class=\"tag\">{_e(t)}</span>" for t in row["tags"][:8])
        private = " <span class=\"tag private\">private</span>" if row["private"] else ""
        lines.append(
            f"<tr class=\"repo\" data-repo=\"{_e(row['id'])}\"><td><a href=\"{repo_path(row['type'], row['id'])}\">"
            f"{_e(row['id'])}</a>{private}<div>{badges}</div></td><td>{_e(row['type'])}</td>"
            f"<td>{_e(row['library'] or '')}</td><td>{_e(row['task'] or '')}</td><td>{metric_cell}</td>"
            f"<td class=\"muted\">{_e(row['updated'][:19].replace('T', ' '))}</td></tr>")
    table = ("<table id=\"repos\"><thead><tr><th>repository</th><th>type</th><th>library</th><th>task</th>"
             "<th>metric</th><th>updated (UTC)</th></tr></thead><tbody>" + "".join(lines) + "</tbody></table>"
             if lines else "<p id=\"no-results\">No repository matches.</p>")
    body = f"<h1>Models and datasets</h1>{form}<p class=\"muted\">{len(rows)} repositories</p>{table}"
    return 200, _page("effhub local hub", body)


def render_card(markdown: str, repo_type: str, repo_id: str, sha: str) -> str:
    """Card markdown to safe HTML: raw HTML escaped, relative images and links pointed at the repo's files."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")
    base = f"{repo_path(repo_type, repo_id)}/resolve/{sha}/"

    def in_repo(target: str) -> str | None:
        if not target or target.startswith(("#", "/", "//")) or _SCHEME.match(target):
            return None
        path = posixpath.normpath(target.split("#")[0].split("?")[0])
        return None if path.startswith("..") or path == "." else base + quote(path)

    tokens = md.parse(_FRONT_MATTER.sub("", markdown, count=1))
    for token in tokens:
        for child in token.children or []:
            if child.type == "image":
                src = str(child.attrGet("src") or "")
                local = in_repo(src)
                if local is not None:
                    child.attrSet("src", local)
                elif not src.startswith("/"):  # nothing is loaded from outside the server: show the alt text
                    child.type, child.tag, child.nesting = "text", "", 0
                    child.content = f"[image: {child.content or src}]"
                    child.attrs, child.children = {}, None
            elif child.type == "link_open":
                href = str(child.attrGet("href") or "")
                local = in_repo(href)
                if local is not None:
                    child.attrSet("href", local)
                child.attrSet("rel", "nofollow noopener noreferrer")
    return md.renderer.render(tokens, md.options, {})


def repo_page(store: LocalHubStore, can_read, repo_type: str, repo_id: str, query: dict) -> tuple[int, str]:
    """A repository's page: card (rendered), metrics of its `model-index`, files, commits and refs.

    Args:
        can_read (`callable`): `(repo_id, meta) -> bool`; an unreadable (private) repository gives the 404 page.
        query (`dict`): `revision` (a branch, tag or commit; default `main`).
    """
    revision = query.get("revision") or DEFAULT_BRANCH
    try:
        store.check_repo(repo_type, repo_id)
        meta = store.repo_meta(repo_type, repo_id)
        if not can_read(repo_id, meta):
            return not_found_page(f"{repo_type.capitalize()} {repo_id}")
        sha, record = store.snapshot(repo_type, repo_id, revision)
        history = store.history(repo_type, repo_id, sha)[:MAX_COMMITS_SHOWN]
        branches, tags = store.branches(repo_type, repo_id), store.tags(repo_type, repo_id)
    except HubHTTPError as error:
        if error.status in (400, 404):
            return not_found_page(f"{repo_type.capitalize()} {repo_id} at {revision}")
        raise
    files = record["files"]
    readme = store.read_blob(files["README.md"]).decode("utf-8", errors="replace") if "README.md" in files else ""
    card = parse_card_data(readme.encode()) if readme else None
    card = card or {}
    here = repo_path(repo_type, repo_id)
    badges = "".join(f"<span class=\"tag\">{_e(t)}</span>"
                     for t in store.repo_summary(repo_type, repo_id, sha, siblings=False)["tags"])
    private = " <span class=\"tag private\">private</span>" if meta.get("private") else ""
    head = (f"<h1 id=\"repo-id\">{_e(repo_id)}{private}</h1><p class=\"muted\">{_e(repo_type)} &middot; revision "
            f"<code>{_e(revision)}</code> &middot; commit <code>{_e(sha[:12])}</code></p><div>{badges}</div>")
    metrics = metric_rows(card)
    metrics_html = ""
    if metrics:
        metrics_html = ("<h2>Results</h2><table id=\"metrics\"><thead><tr><th>task</th><th>dataset</th><th>metric</th>"
                        "<th class=\"num\">value</th></tr></thead><tbody>"
                        + "".join(f"<tr><td>{_e(m['task'])}</td><td>{_e(m['dataset'])}</td><td>{_e(m['metric'])}</td>"
                                  f"<td class=\"num\">{_e(_format_value(m['value']))}</td></tr>" for m in metrics)
                        + "</tbody></table>")
    card_html = (f"<div class=\"card\" id=\"card\">{render_card(readme, repo_type, repo_id, sha)}</div>"
                 if readme else "<p class=\"muted\" id=\"card\">No card (README.md).</p>")
    file_rows = "".join(
        f"<tr><td><a href=\"{here}/resolve/{sha}/{quote(path)}\" download>{_e(path)}</a>"
        f"{LFS_BADGE if entry.get('lfs') else ''}</td>"
        f"<td class=\"num\" data-bytes=\"{entry['size']}\">{_e(format_size(entry['size']))}</td></tr>"
        for path, entry in files.items())
    files_html = (f"<h2>Files</h2><table id=\"files\"><thead><tr><th>path</th><th class=\"num\">size</th></tr></thead>"
                  f"<tbody>{file_rows}</tbody></table>")
    commit_rows = "".join(
        f"<tr><td><a href=\"{here}?{urlencode({'revision': c['id']})}\"><code>{_e(c['id'][:12])}</code></a></td>"
        f"<td>{_e(c['title'])}</td><td class=\"muted\">{_e(c['date'][:19].replace('T', ' '))}</td></tr>"
        for c in history)
    commits_html = (f"<h2>Commits</h2><table id=\"commits\"><tbody>{commit_rows}</tbody></table>")
    ref_rows = "".join(
        f"<tr><td>{kind}</td><td><a href=\"{here}?{urlencode({'revision': name})}\">{_e(name)}</a></td>"
        f"<td><code>{_e(target[:12])}</code></td></tr>"
        for kind, refs in (("branch", {n: s for n, s in branches.items()}),
                           ("tag", {n: t["sha"] for n, t in tags.items()}))
        for name, target in refs.items())
    refs_html = f"<h2>Branches and tags</h2><table id=\"refs\"><tbody>{ref_rows}</tbody></table>"
    body = head + metrics_html + card_html + files_html + refs_html + commits_html
    return 200, _page(f"{repo_id} - effhub local hub", body)


__all__ = ["list_page", "repo_page", "not_found_page", "render_card", "metric_rows", "headline_rows", "format_size",
           "repo_path", "PAGE_HEADERS"]
