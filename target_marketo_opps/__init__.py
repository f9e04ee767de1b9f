"""target_marketo_opps."""
