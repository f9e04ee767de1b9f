"""tap_marketo_opps."""
