"""`python -m tap_marketo_results`."""

from tap_marketo_results.tap import TapMarketoResults

TapMarketoResults.cli()
