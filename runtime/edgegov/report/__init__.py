"""Incident reports: a lineage dump → one self-contained HTML page with plots.

``write_report(dump, html)`` reads a dump (gateway lineage file or pulled device image),
verifies it, replays it to recover the limits that were in force (and, with another
envelope, what would have differed), decodes every record and writes one HTML file that
needs no network to open: a header (device, firmware, envelope, boots, counts per verdict,
verify, gaps, torn tail), the incidents with a narrative each, per-channel plots of
proposed vs output values inside the limits in force with markers for what the governor
did, the plant inputs, the operator actions, a timeline, the what-if summary, and the
record behind every marker, all on one time axis (wall time when the lineage has it).
Damage in the dump is reported in the page; only a file that cannot be a lineage at all
raises ``ReportError``.
"""

from .build import build_report, write_report
from .reading import ReportError

__all__ = ["write_report", "build_report", "ReportError"]
