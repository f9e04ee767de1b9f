"""`python -m target_marketo_opps`."""

from __future__ import annotations

from target_marketo_opps.target import TargetMarketoOpps

TargetMarketoOpps.cli()
