"""The export directory: atomic writes, the manifest (checksums, format versions), what an output
path may replace, ID tokens, and writing/reading an export (``io``). Imports ``model`` and below."""
