"""Region codes: the subdivisions of ISO 3166-2:CN (a pattern alone would admit CN-XX)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

CN_REGIONS = (
    "AH", "BJ", "CQ", "FJ", "GD", "GS", "GX", "GZ", "HA", "HB", "HE", "HI", "HK", "HL", "HN",
    "JL", "JS", "JX", "LN", "MO", "NM", "NX", "QH", "SC", "SD", "SH", "SN", "SX", "TJ", "TW",
    "XJ", "XZ", "YN", "ZJ",
)
_CODES = "|".join(CN_REGIONS)

Region = Annotated[str, Field(pattern=rf"^CN-({_CODES})$", examples=["CN-GD"])]
"""A policyholder's region, such as `CN-GD`."""

ServedRegion = Annotated[str, Field(pattern=r"^(CN-[A-Z]{2}|\*)$", examples=["CN-GD", "*"])]
"""A region a vendor serves, or `*` for all. Only its shape is checked: vendors are matched
against policies' regions, which intake validates against the real list."""
