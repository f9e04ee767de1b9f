"""`make demo`: the whole round trip against a local Marketo sandbox."""
