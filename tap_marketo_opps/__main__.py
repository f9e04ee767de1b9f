"""`python -m tap_marketo_opps`."""

from tap_marketo_opps.tap import TapMarketoOpps

TapMarketoOpps.cli()
