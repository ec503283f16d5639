"""Progress bars (tqdm) that a caller can switch off; the library never prints."""

from __future__ import annotations

from tqdm.auto import tqdm


def progress(*, total: int | None = None, desc: str = "", unit: str = "it", disable: bool = False, **kw) -> tqdm:
    """A tqdm bar on stderr; ``disable=True`` makes it a silent no-op."""
    return tqdm(total=total, desc=desc, unit=unit, disable=disable, dynamic_ncols=True, leave=False, **kw)
