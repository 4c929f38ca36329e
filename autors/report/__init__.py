"""What people look at: `report.html` of a run folder (a search's or one trained model's), one
self-contained page (inline CSS, script and pictures; opens offline), and the quicklook PNG of
a predicted map (`autors predict --preview`). Both use one class palette (`palette`).

It reads search folders and train folders, so it sits above `search` and `training` (beside
`export`); the CLI writes the report at the end of `autors search`, `autors demo` and
`autors train`, and `autors report RUN` writes it on demand.
"""

from autors.report.build import REPORT_FILE, render_report, write_report

__all__ = ["REPORT_FILE", "render_report", "write_report"]
