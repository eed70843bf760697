"""The apply job: a match plan run over a dataset into an output folder, on the runtime."""

from scrub.apply.job import ApplyResult, apply
from scrub.apply.report import REPORT_NAME, ApplyReport, ShardSummary, build_report
from scrub.apply.request import ApplyRequest, plan_builder

__all__ = ["REPORT_NAME", "ApplyReport", "ApplyRequest", "ApplyResult", "ShardSummary", "apply",
           "build_report", "plan_builder"]
