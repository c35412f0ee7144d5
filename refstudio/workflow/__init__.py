"""Multi-step compositions from workflow files: parse, plan, run, resume.

See :mod:`refstudio.workflow.spec` for the file format and :mod:`refstudio.workflow.plan` for how
steps are ordered.
"""

from __future__ import annotations

from .host import WorkflowHost
from .plan import Plan, PlannedStep, build_plan
from .runner import (
    RunReport,
    StepListener,
    StepReport,
    WorkflowRunner,
    ensure_refs,
    estimate,
    image_step_of,
)
from .spec import Workflow, load_workflow

__all__ = [
    "Plan",
    "PlannedStep",
    "RunReport",
    "StepListener",
    "StepReport",
    "Workflow",
    "WorkflowHost",
    "WorkflowRunner",
    "build_plan",
    "ensure_refs",
    "estimate",
    "image_step_of",
    "load_workflow",
]
