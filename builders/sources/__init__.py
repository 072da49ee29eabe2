"""One module per image source; each yields `SourceItem`s or `Rejection`s (see base.py)."""
