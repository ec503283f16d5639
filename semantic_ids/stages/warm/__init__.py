"""A warm start from a previous export: ``start`` (what each stage gets) and ``algorithms``."""
