"""report: groups + pairs -> report.json, collage, (console summary is the CLI's)."""

from imgsim_index.report.collage import write_collage
from imgsim_index.report.json_report import build_report, write_report

__all__ = ["build_report", "write_collage", "write_report"]
