"""The one reader of HTCondor sizes (request_memory, request_disk), as condor_submit reads them.

condor_submit parses these with `parse_int64_bytes` (HTCondor src/condor_utils/metric_units.cpp):
a number, optionally with a fraction, optional spaces, then an optional K, M, G or T (any
case) optionally followed by one b or B. Anything else (`8GiB`, `8 gigs`, `8e3`) is not a
size: the bindings pass it on as an expression the job cannot match. A bare number is read
in the attribute's own unit: MB for request_memory, KiB for request_disk. Because `20`
meaning 20 KiB of disk is almost always a mistake, this reader refuses bare numbers and
says what HTCondor would have read.

copier.yml's validators use SIZE_PATTERN (the same text; a test compares them) and the
maintainer checks import this file, so the template, the tasks and the checks agree.
"""

from __future__ import annotations

import re

SIZE_PATTERN = r"^[ \t]*([0-9]+(\.[0-9]*)?|\.[0-9]+)[ \t]*([KMGTkmgt])[Bb]?[ \t]*\Z"
UNIT_BYTES = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
# What a bare number counts in, per submit command (condor_submit's `base`).
BARE_UNIT = {"request_memory": ("M", "MB"), "request_disk": ("K", "KiB")}


class SizeError(ValueError):
    """A value HTCondor would misread or refuse; the message is one sentence."""


def size_bytes(text: str, command: str) -> int:
    """``text`` (a request_memory or request_disk value) in bytes, or SizeError saying why not."""
    value = str(text).strip()
    match = re.fullmatch(SIZE_PATTERN, value)
    if match is None:
        if re.fullmatch(r"[0-9]+(\.[0-9]*)?", value):
            unit, name = BARE_UNIT[command]
            raise SizeError(
                f"{command} = {value} has no unit, which HTCondor reads as {value} {name}; "
                f"write the unit, e.g. {value}GB."
            )
        raise SizeError(
            f"{command} = {value or '(empty)'} is not a size HTCondor reads (a number and K, M, G or T, "
            "e.g. 8GB or 512MB; not GiB)."
        )
    number = float(match.group(1))
    if number <= 0:
        raise SizeError(f"{command} = {value} asks for nothing; write a size such as 8GB.")
    return int(number * UNIT_BYTES[match.group(3).upper()])
