"""The status page's HTML: each view's dict (:mod:`.status`) rendered on the server.

No build step and nothing from the internet: one inline style sheet and, on the sign-in page, one
inline script, both allowed by a per-response nonce in a strict Content-Security-Policy; the chart
is inline SVG. Every text from a record, a lease or a request is HTML-escaped (:func:`esc`).
"""

from __future__ import annotations

import html
import secrets
import time
from typing import Any
from urllib.parse import quote

NAV = (("", "Overview"), ("steps", "Top steps"), ("misses", "Recent misses"), ("leases", "In flight"),
       ("health", "Health"))


def esc(value: object) -> str:
    """``value`` as HTML text, quotes escaped too (safe in attributes)."""
    return html.escape(str(value), quote=True)


def csp(nonce: str) -> str:
    """The Content-Security-Policy of a page: only its own nonce'd style and script, requests to itself."""
    return (f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; img-src 'self' data:; "
            "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def new_nonce() -> str:
    """A fresh nonce for one page's Content-Security-Policy."""
    return secrets.token_urlsafe(16)


def headers(nonce: str) -> dict[str, str]:
    """The security headers of every page."""
    return {"Content-Security-Policy": csp(nonce), "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY", "Cache-Control": "no-store"}


_STYLE = """
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;
color:#1d232a;background:#f6f7f9}header{background:#1f3a5f;color:#fff;padding:.6rem 1rem;display:flex;
flex-wrap:wrap;gap:.4rem 1rem;align-items:center}header b{font-size:1.1rem;margin-right:.5rem}
header a{color:#dce8f7;text-decoration:none}header a.on{color:#fff;font-weight:600;text-decoration:underline}
header .who{margin-left:auto;font-size:.85rem}main{max-width:64rem;margin:0 auto;padding:1rem}
h1{font-size:1.3rem;margin:.2rem 0 1rem}h2{font-size:1.05rem;margin:1.4rem 0 .5rem}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(10rem,1fr));gap:.7rem}
.card{background:#fff;border:1px solid #dde2e8;border-radius:8px;padding:.7rem .8rem}
.card .n{font-size:1.35rem;font-weight:600;display:block}.card .l{color:#5b6773;font-size:.85rem}
.bar{height:.5rem;background:#e5e9ee;border-radius:4px;overflow:hidden;margin-top:.3rem}
.bar i{display:block;height:100%;background:#2f7d4f}
.scroll{overflow-x:auto;background:#fff;border:1px solid #dde2e8;border-radius:8px}
table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{text-align:left;padding:.4rem .6rem;
border-bottom:1px solid #eef1f4;vertical-align:top}th{background:#f0f3f6;font-weight:600}td.r,th.r{text-align:right}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.85rem;word-break:break-all}
pre{background:#fff;border:1px solid #dde2e8;border-radius:8px;padding:.6rem;overflow-x:auto}
svg{width:100%;height:auto;background:#fff;border:1px solid #dde2e8;border-radius:8px}
.tree ul{list-style:none;padding-left:1.1rem;border-left:2px solid #dde2e8;margin:.2rem 0}
.tree li{margin:.3rem 0}.muted{color:#5b6773}.bad{color:#a4262c}.ok{color:#2f7d4f}
form.signin{background:#fff;border:1px solid #dde2e8;border-radius:8px;padding:1rem;max-width:24rem}
form.signin label{display:block;margin:.5rem 0 .2rem}form.signin input{width:100%;padding:.5rem;font-size:1rem}
button{margin-top:.8rem;padding:.5rem 1rem;font-size:1rem;border-radius:6px;border:1px solid #1f3a5f;
background:#1f3a5f;color:#fff}header button{margin:0;padding:.15rem .5rem;font-size:.8rem;background:none;
border-color:#dce8f7}.tabs a{margin-right:.8rem}.legend i{display:inline-block;width:.8rem;height:.8rem;
margin:0 .3rem 0 .8rem;vertical-align:-1px}
.legend .hit-key{background:#2f7d4f}.legend .miss-key{background:#c2cad3}svg.usage{height:.5rem;border:0;margin-top:.3rem}
@media (max-width:36rem){main{padding:.6rem}td,th{padding:.35rem .4rem}.hide-s{display:none}}
"""

# Signs the sign-in request as pairio.signing does: HMAC-SHA256, keyed by the password, over
# channel, method, path, query, SHA-256 of the body, timestamp and nonce; the password never leaves.
_SIGNIN_SCRIPT = """
const hex = b => Array.from(new Uint8Array(b), x => x.toString(16).padStart(2, "0")).join("");
const enc = new TextEncoder();
const form = document.getElementById("signin");
const field = id => document.getElementById(id);
const say = t => { document.getElementById("signin-error").textContent = t; };
form.addEventListener("submit", async ev => {
  ev.preventDefault();
  if (!window.crypto || !crypto.subtle) { say("Signing in needs HTTPS (or a page on localhost)."); return; }
  const channel = field("channel").value, password = field("password").value, body = "{}";
  const path = form.dataset.path, ts = String(Math.floor(Date.now() / 1000));
  const nonce = hex(crypto.getRandomValues(new Uint8Array(16)));
  const bodyHash = hex(await crypto.subtle.digest("SHA-256", enc.encode(body)));
  const key = await crypto.subtle.importKey("raw", enc.encode(password), {name: "HMAC", hash: "SHA-256"},
                                            false, ["sign"]);
  const message = [channel, "POST", path, "", bodyHash, ts, nonce].join("\\n");
  const signature = hex(await crypto.subtle.sign("HMAC", key, enc.encode(message)));
  field("password").value = "";
  const r = await fetch(form.dataset.url, {method: "POST", body, credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-Pairio-Channel": channel, "X-Pairio-Timestamp": ts,
              "X-Pairio-Nonce": nonce, "X-Pairio-Signature": signature}});
  if (r.ok) { location.reload(); } else { say("Sign-in refused: " + ((await r.json()).error || r.status)); }
});
"""

_SIGNOUT_SCRIPT = """
const out = document.getElementById("signout");
if (out) out.addEventListener("click", async () => {
  await fetch(out.dataset.url, {method: "POST", credentials: "same-origin"}); location.reload();
});
"""


def layout(title: str, body: str, nonce: str, *, root: str = "", active: str | None = "", who: str | None = None,
           signout: bool = False, source: str = "server") -> str:
    """A whole page: header with the views' links, ``body`` (already HTML), and the sign-out button."""
    links = "".join(f'<a href="{esc(root)}/{path}" class="{"on" if path == active else ""}">{esc(label)}</a>'
                    for path, label in NAV) if active is not None else ""
    whom = ""
    if who is not None:
        whom = f'<span class="who">{esc(who)}'
        if signout:
            whom += f' <button id="signout" type="button" data-url="{esc(root)}/api/v1/status/signout">Sign out</button>'
        whom += "</span>"
    script = f'<script nonce="{nonce}">{_SIGNOUT_SCRIPT}</script>' if signout else ""
    name = "pairio" if source == "server" else "pairio (this machine)"
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)} · pairio</title><style nonce=\"{nonce}\">{_STYLE}</style></head>"
            f"<body><header><b>{esc(name)}</b>{links}{whom}</header><main><h1>{esc(title)}</h1>{body}</main>"
            f"{script}</body></html>")


def signin_page(nonce: str, root: str = "", message: str = "") -> str:
    """The sign-in form: channel and password, the request signed in the browser."""
    body = (f'<p>Sign in with your channel (as in your pairio config). Your password stays in this browser: '
            f"the page signs one request with it and the server answers with a session cookie.</p>"
            f'<form id="signin" class="signin" method="post" data-path="/api/v1/status/session" '
            f'data-url="{esc(root)}/api/v1/status/session">'
            # No name attributes: without the script, submitting the form sends neither field anywhere.
            f'<label for="channel">Channel</label><input id="channel" autocomplete="username" required>'
            f'<label for="password">Password</label>'
            f'<input id="password" type="password" autocomplete="current-password" required>'
            f'<button type="submit">Sign in</button><p id="signin-error" class="bad">{esc(message)}</p>'
            f'<noscript><p class="bad">Signing in needs JavaScript: the page signs with your password '
            f"in the browser.</p></noscript></form>"
            f'<script nonce="{nonce}">{_SIGNIN_SCRIPT}</script>')
    return layout("Sign in", body, nonce, root=root, active=None)


# --- formatting ------------------------------------------------------------------------------


def size(n: float | None) -> str:
    """Bytes, in the largest unit that keeps a number of at least 1."""
    if n is None:
        return "no limit"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def seconds(s: float) -> str:
    """A duration, in s, min, h or days."""
    if abs(s) < 60:
        return f"{s:.3g} s" if abs(s) >= 0.01 or s == 0 else f"{s * 1000:.2g} ms"
    if abs(s) < 3600:
        return f"{s / 60:.1f} min"
    if abs(s) < 86_400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86_400:.1f} days"


def when(t: float) -> str:
    """A time as UTC."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))


def rate(r: float | None) -> str:
    """A hit rate as a percentage (a dash without calls)."""
    return "–" if r is None else f"{100 * r:.1f}%"


def entry_link(root: str, collection: str, key: str, text: str | None = None) -> str:
    """A link to an entry's page."""
    href = f"{root}/entry?collection={quote(collection, safe='')}&key={quote(key, safe='')}"
    return f'<a class="mono" href="{esc(href)}">{esc(text if text is not None else key[:12])}</a>'


def _card(name: str, value: str, label: str, extra: str = "") -> str:
    return f'<div class="card"><span class="n" data-stat="{esc(name)}">{esc(value)}</span><span class="l">{esc(label)}</span>{extra}</div>'


# --- the views --------------------------------------------------------------------------------


def overview_body(view: dict[str, Any]) -> str:
    """The overview: cards, then the chart of the last 7 days."""
    used = ""
    if view["used"] is not None:
        # A width in SVG attributes: the CSP refuses inline style attributes.
        used = (f'<svg class="usage" viewBox="0 0 100 4" preserveAspectRatio="none" role="img" '
                f'aria-label="{esc(rate(view["used"]))} of the limit"><rect width="100" height="4" fill="#e5e9ee"/>'
                f'<rect width="{min(100.0, 100 * view["used"]):.2f}" height="4" fill="#2f7d4f"/></svg>')
    today, week = view["today"], view["week"]
    cards = "".join((
        _card("entries", f"{view['entries']:,}", f"entries of {view['functions']} functions"
              + (" (the newest; `pairio ls` lists them all)" if view.get("capped") else "")),
        _card("bytes", size(view["bytes"]),
              f"stored, of {size(view['limit'])}" if view["limit"] else "stored (no size limit)", used),
        _card("hit-rate-today", rate(today["hit_rate"]), f"hit rate today, UTC ({today['hits']} hits, {today['misses']} misses)"),
        _card("saved-today", seconds(today["seconds_saved"]), "saved today"),
        _card("hit-rate-week", rate(week["hit_rate"]), f"hit rate, 7 days ({week['hits']} hits, {week['misses']} misses)"),
        _card("saved-week", seconds(week["seconds_saved"]), "saved in 7 days"),
    ))
    return (f'<div class="cards">{cards}</div><h2>Calls per hour, last 7 days</h2>{chart(view["chart"])}'
            f'<p class="legend muted"><i class="hit-key"></i>hits<i class="miss-key"></i>misses '
            f'(the tallest bar: {max((p["hits"] + p["misses"] for p in view["chart"]), default=0)} calls)</p>')


def chart(points: list[dict[str, Any]]) -> str:
    """Hits and misses per hour as stacked bars in inline SVG (oldest left), with day marks."""
    width, height, top = 700, 160, 10
    peak = max((p["hits"] + p["misses"] for p in points), default=0) or 1
    step = width / max(len(points), 1)
    bars = []
    for i, p in enumerate(points):
        x = i * step
        h_hits = (height - top) * p["hits"] / peak
        h_miss = (height - top) * p["misses"] / peak
        tip = f"{when(p['hour'])}: {p['hits']} hits, {p['misses']} misses, saved {seconds(p['seconds_saved'])}"
        if p["hits"] or p["misses"]:
            bars.append(f'<g><title>{esc(tip)}</title>'
                        f'<rect x="{x:.1f}" y="{height - h_hits:.1f}" width="{max(step - 0.5, 0.5):.1f}" '
                        f'height="{h_hits:.1f}" fill="#2f7d4f"/>'
                        f'<rect x="{x:.1f}" y="{height - h_hits - h_miss:.1f}" width="{max(step - 0.5, 0.5):.1f}" '
                        f'height="{h_miss:.1f}" fill="#c2cad3"/></g>')
        if p["hour"] % 86_400 == 0:
            bars.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{height}" stroke="#eef1f4"/>'
                        f'<text x="{x + 2:.1f}" y="{top + 10}" font-size="10" fill="#5b6773">'
                        f'{esc(time.strftime("%a %d", time.gmtime(p["hour"])))}</text>')
    return (f'<svg id="chart" viewBox="0 0 {width} {height}" role="img" aria-label="calls per hour, last 7 days" '
            f'data-peak="{peak}">{"".join(bars)}</svg>')


def steps_body(view: dict[str, Any], root: str) -> str:
    """Top steps: one row per function, ordered as asked."""
    tabs = " ".join(f'<a href="{esc(root)}/steps?by={by}" class="{"on" if by == view["by"] else ""}">{label}</a>'
                    for by, label in (("saved", "by time saved"), ("computed", "by compute spent"),
                                      ("size", "by size")))
    rows = "".join(
        f'<tr data-function="{esc(s["function"])}"><td class="mono">{esc(s["function"])}</td>'
        f'<td class="r" data-col="saved">{esc(seconds(s["seconds_saved"]))}</td>'
        f'<td class="r" data-col="computed">{esc(seconds(s["seconds_computed"]))}</td>'
        f'<td class="r" data-col="size">{esc(size(s["size"]))}</td>'
        f'<td class="r" data-col="entries">{s["entries"]}</td><td class="r hide-s" data-col="hits">{s["hits"]}</td></tr>'
        for s in view["steps"])
    if not rows:
        rows = '<tr><td colspan="6" class="muted">No recorded entries yet.</td></tr>'
    return (f'<p class="tabs">{tabs}</p><div class="scroll"><table id="steps"><thead><tr><th>Function</th>'
            f'<th class="r">Time saved</th><th class="r">Compute spent</th><th class="r">Size</th>'
            f'<th class="r">Entries</th><th class="r hide-s">Hits</th></tr></thead><tbody>{rows}</tbody></table></div>')


def misses_body(view: dict[str, Any], root: str) -> str:
    """Recent misses and why each missed."""
    rows = "".join(
        f'<tr data-key="{esc(m["key"])}"><td class="hide-s">{esc(when(m["created"]))}</td>'
        f'<td class="mono">{esc(m["function"])}</td><td>{entry_link(root, m["collection"], m["key"])}</td>'
        f'<td class="r">{esc(seconds(m["seconds"]))}</td><td class="reason">{esc(m["reason"])}</td></tr>'
        for m in view["misses"])
    if not rows:
        rows = '<tr><td colspan="5" class="muted">No misses recorded yet.</td></tr>'
    return (f'<div class="scroll"><table id="misses"><thead><tr><th class="hide-s">When</th><th>Function</th>'
            f'<th>Entry</th><th class="r">Computed in</th><th>Why it missed</th></tr></thead><tbody>{rows}</tbody>'
            f"</table></div>")


def _tree(node: dict[str, Any], root: str) -> str:
    if "function" not in node:
        what = node.get("uri") or node.get("key") or ""
        label = f"{node['argument']} ← " if node.get("argument") else ""
        return f'<li>{esc(label)}<span class="mono">{esc(what)}</span> <span class="muted">({esc(node.get("note", ""))})</span></li>'
    args = ", ".join(f"{k}={v}" for k, v in node.get("arguments", {}).items())
    label = f"{node['argument']} ← " if node.get("argument") else ""
    children = "".join(_tree(child, root) for child in node.get("inputs", []))
    return (f"<li>{esc(label)}<b class=\"mono\">{esc(node['function'])}</b>({esc(args)}) "
            f"{entry_link(root, node['collection'], node['key'])}"
            + (f"<ul>{children}</ul>" if children else "") + "</li>")


def entry_body(view: dict[str, Any], root: str) -> str:
    """An entry: its record, its provenance tree, the command that fetches it."""
    r = view["record"]
    fields = [("Function", r["function"]), ("Collection", r["collection"]), ("Key", r["key"]),
              ("Result", f"sha1://{r['sha1']}" if r.get("sha1") else "–"), ("Size", size(r["size"])),
              ("Computed in", seconds(r["seconds"])), ("Hits", r["hits"]), ("Created", when(r["created"])),
              ("Last used", when(r["last_used"]) if r["last_used"] else "–"), ("Host", r["host"]),
              ("Code digest", r["code"]), ("Version", r.get("version") or "–")]
    if r.get("channel"):
        fields.append(("Set by channel", r["channel"]))
    rows = "".join(f'<tr><th>{esc(k)}</th><td class="mono" data-field="{esc(k.lower())}">{esc(v)}</td></tr>'
                   for k, v in fields)
    rows += "".join(f'<tr><th>dependency</th><td class="mono">{esc(k)} {esc(v)}</td></tr>'
                    for k, v in sorted(r["dependencies"].items()))
    rows += "".join(f'<tr><th>argument</th><td class="mono">{esc(k)} = {esc(v)}</td></tr>'
                    for k, v in r["arguments"].items())
    tree = f'<ul id="lineage">{_tree(view["lineage"], root)}</ul>' if view.get("lineage") else "<p>–</p>"
    return (f'<div class="scroll"><table id="record">{rows}</table></div><h2>Where it came from</h2>'
            f'<div class="tree">{tree}</div><h2>Fetch it</h2><pre id="fetch">{esc(view["fetch"])}</pre>')


def leases_body(view: dict[str, Any], root: str) -> str:
    """Leases in flight: who computes what, for how long."""
    rows = "".join(
        f'<tr><td class="mono">{esc(lease["function"] or "–")}</td>'
        f'<td>{entry_link(root, lease["collection"] or "", lease["key"] or "", (lease["key"] or "")[:12])}</td>'
        f'<td>{esc(lease["host"] or "–")}{esc(" pid " + str(lease["pid"]) if lease["pid"] else "")}'
        f'{esc(" (" + lease["channel"] + ")" if lease.get("channel") else "")}</td>'
        f'<td class="r">{esc(seconds(lease["age"]))}</td><td class="hide-s">{esc(when(lease["expires_at"]))}</td></tr>'
        for lease in view["leases"])
    if not rows:
        rows = '<tr><td colspan="5" class="muted">Nothing is being computed under a lease now.</td></tr>'
    return (f'<div class="scroll"><table id="leases"><thead><tr><th>Function</th><th>Key</th><th>Who</th>'
            f'<th class="r">For</th><th class="hide-s">Expires</th></tr></thead><tbody>{rows}</tbody></table></div>')


def health_body(view: dict[str, Any]) -> str:
    """The version and the backends' health."""
    status = ('<p class="ok" id="status">All backends can be used.</p>' if view["status"] == "ok" else
              '<p class="bad" id="status">Unavailable:</p><ul>'
              + "".join(f"<li>{esc(c)}</li>" for c in view["causes"]) + "</ul>")
    return f'{status}<p>pairio <span id="version">{esc(view["version"])}</span>, API v1.</p>'


def not_found_body(what: str) -> str:
    """The body of a page for something not there (or not the viewer's)."""
    return f'<p class="muted">{esc(what)}</p>'

