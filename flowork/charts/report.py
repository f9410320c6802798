"""One self-contained HTML page per sweep: every chart embedded (base64 PNG), opens from disk, no network."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from flowork.charts.style import log

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #1f2937; padding: 0 1rem; }}
h1 {{ font-size: 1.6rem; }} h2 {{ font-size: 1.25rem; border-bottom: 1px solid #e5e7eb; padding-bottom: .3rem; }}
table {{ border-collapse: collapse; margin: 1rem 0; }} td, th {{ border: 1px solid #e5e7eb; padding: .3rem .6rem; }}
figure {{ margin: 1rem 0; }} img {{ max-width: 100%; border: 1px solid #f3f4f6; }}
figcaption {{ color: #6b7280; font-size: .9rem; }} .meta {{ color: #6b7280; }}
</style></head>
<body><h1>{title}</h1><p class="meta">{meta}</p>
{body}
<script>
  // for automated checks (and a human's devtools): did every chart decode?
  window.addEventListener("load", () => {{
    const images = [...document.images];
    document.body.dataset.images = images.length;
    document.body.dataset.imagesOk = images.every((i) => i.complete && i.naturalWidth > 0);
  }});
</script>
</body></html>
"""


def figure_html(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    name = html.escape(path.stem.replace("_", " "))
    return f'<figure><img src="data:image/png;base64,{data}" alt="{name}"><figcaption>{name}</figcaption></figure>'


def table_html(rows: list[dict], metric: str) -> str:
    def num(x: float | None) -> str:
        return "—" if x is None else f"{x:.4f}"

    head = (
        f"<tr><th>rank</th><th>model</th><th>best CV {metric} ± std</th><th>holdout {metric}</th>"
        "<th>trials ok / failed / pruned</th><th>time (s)</th></tr>"
    )
    body = "".join(
        f"<tr><td>{i}</td><td>{html.escape(r['model'])}</td><td>{num(r['best'])} ± {num(r['std'])}</td>"
        f"<td>{num(r['holdout'])}</td><td>{r['ok']} / {r['failed']} / {r['pruned']}</td>"
        f"<td>{r['seconds']:.1f}</td></tr>"
        for i, r in enumerate(rows, 1)
    )
    return f"<table>{head}{body}</table>"


def write(out: Path, title: str, meta: str, sections: list[tuple[str, str, list[Path]]]) -> Path:
    """`sections`: (heading, html text, chart files). Missing files are skipped with a warning."""
    body = []
    for heading, text, charts in sections:
        figures = []
        for p in charts:
            if p.exists():
                figures.append(figure_html(p))
            else:
                log.warning("report: chart %s is missing", p)
        body.append(f"<section><h2>{html.escape(heading)}</h2>{text}{''.join(figures)}</section>")
    out.write_text(PAGE.format(title=html.escape(title), meta=html.escape(meta), body="\n".join(body)))
    return out
