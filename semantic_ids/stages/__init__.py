"""The build stages, one implementation each: read (``catalog``, ``sequences``), embed (``embed``,
``cache``, ``shards``), train (``train``, ``checkpoint``), encode, resolve (``resolve``, ``resolve_disk``),
metrics, and a warm start from a previous export (``warm``). Imports ``export`` and below."""
