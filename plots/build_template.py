"""Build ``plots/template.html``, the page ``dvc plots show/diff`` fill in (``.dvc/config``: ``plots.html_template``).

DVC's own page loads Vega, Vega-Lite and Vega-Embed from a CDN, so offline its charts are blank. This page carries
the three libraries inline (minified builds from the npm registry, BSD-3-Clause, see ``plots/LICENSES.md``), so a
written ``dvc_plots/index.html`` works from any folder, offline. It has no ``{scripts}`` placeholder, so DVC adds no
CDN ``<script>`` tags; ``{plot_divs}`` is where DVC puts the charts.

    cd /tmp && npm pack vega@5.33.1 vega-lite@5.23.0 vega-embed@6.29.0     # the pinned versions
    python plots/build_template.py /tmp/vega-5.33.1.tgz /tmp/vega-lite-5.23.0.tgz /tmp/vega-embed-6.29.0.tgz
(or ``make plots-template``).
"""
from __future__ import annotations

import hashlib
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
LIBS = (("vega", "5.33.1"), ("vega-lite", "5.23.0"), ("vega-embed", "6.29.0"))

PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {refresh_tag}
    <title>DVC plots: MS-LSTM pipeline</title>
    <!-- Vega, Vega-Lite, Vega-Embed inline (BSD-3-Clause; versions and hashes below), so the page works offline. -->
%(libs)s
    <style>
        body { font-family: sans-serif; margin: 16px; }
        body > div { display: inline-block; vertical-align: top; margin: 0 24px 24px 0; }
        table { border-spacing: 15px; }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def _min_js(tgz: Path, name: str) -> str:
    with tarfile.open(tgz) as tar:
        member = tar.extractfile(f"package/build/{name}.min.js")
        if member is None:
            raise SystemExit(f"{tgz}: no package/build/{name}.min.js")
        text = member.read().decode("utf-8")
    if "</script" in text.lower():
        raise SystemExit(f"{tgz}: {name}.min.js contains '</script' and cannot be inlined")
    return text


def main(tarballs: list[str]) -> int:
    if len(tarballs) != len(LIBS):
        print(__doc__)
        return 2
    blocks = []
    for (name, version), tgz in zip(LIBS, map(Path, tarballs)):
        if f"{name}-{version}.tgz" != tgz.name:
            raise SystemExit(f"{tgz}: expected {name}-{version}.tgz")
        js = _min_js(tgz, name)
        digest = hashlib.sha256(js.encode("utf-8")).hexdigest()
        blocks.append(f"    <!-- {name}@{version} build/{name}.min.js sha256 {digest} -->\n"
                      f"    <script type=\"text/javascript\">{js}</script>")
    out = HERE / "template.html"
    tmp = out.with_suffix(".tmp")
    tmp.write_text(PAGE % {"libs": "\n".join(blocks)}, encoding="utf-8")
    tmp.replace(out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
