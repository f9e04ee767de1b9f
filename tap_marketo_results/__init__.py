"""tap-marketo-results: target-marketo-opps's results file as a Singer stream, to load into a warehouse."""
