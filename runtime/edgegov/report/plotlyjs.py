"""Where the report's plotly.js comes from: plotly's *basic* bundle (scatter, bar, pie;
the report draws only scatter traces), from the npm package ``plotly.js-basic-dist-min``
that the install step (``make install``) puts in ``build/js``. About 1.2 MB instead of the
4.7 MB full bundle the plotly Python package carries; the page carries it gzip-packed
(about 0.5 MB) and unpacks it itself, so it stays light and still opens offline."""

from __future__ import annotations

import os
from pathlib import Path

from .reading import ReportError

PACKAGE = "plotly.js-basic-dist-min"
VERSION = "4.1.1"  # pinned here and in the Makefile's install step
BUNDLE = "plotly-basic.min.js"
ENV = "EDGEGOV_PLOTLY_JS"  # a path to the bundle, overriding the default place


def bundle_path() -> Path:
    """The basic bundle's path: ``$EDGEGOV_PLOTLY_JS`` when set, else the repository's
    ``build/js/node_modules/plotly.js-basic-dist-min/plotly-basic.min.js``."""
    override = os.environ.get(ENV)
    if override:
        return Path(override)
    repo = Path(__file__).resolve().parents[3]
    return repo / "build" / "js" / "node_modules" / PACKAGE / BUNDLE


def plotly_js() -> str:
    """The bundle's text. Raises ``ReportError`` (one line: what and what to do) when it
    is not installed."""
    path = bundle_path()
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        raise ReportError(f"plotly.js basic bundle not found at {path}: run `make install` "
                          f"(npm install {PACKAGE}@{VERSION}) or set {ENV} to its path"
                          ) from None


__all__ = ["plotly_js", "bundle_path", "PACKAGE", "VERSION"]
