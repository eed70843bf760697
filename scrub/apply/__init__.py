"""The apply job: a match plan run over a dataset into an output folder, on the runtime."""

from scrub.apply.job import ApplyResult, apply
from scrub.apply.report import REPORT_NAME, build_report
from scrub.apply.request import ApplyRequest, plan_builder

__all__ = ["REPORT_NAME", "ApplyRequest", "ApplyResult", "apply", "build_report",
           "plan_builder"]
