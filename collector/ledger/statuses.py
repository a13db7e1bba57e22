"""Names of the status codes stored with readings (`readings.status`).

The codes are OPC UA StatusCodes (32 bits; the low bits may carry info flags). Their names
come from the OPC UA specification's table, which asyncua holds; it is loaded the first time
a stored status is shown, so answers without one never pay for it.
"""

from __future__ import annotations

from functools import lru_cache

_SUBCODE = 0xFFFF0000  # severity and subcode: what the name is given for


@lru_cache(maxsize=1024)
def status_name(code: int) -> str:
    """`BadSensorFailure` for 0x808B0000; a code the specification does not name as hex."""
    from asyncua.ua.status_codes import code_to_name_doc

    for key in (code, code & _SUBCODE):
        known = code_to_name_doc.get(key)
        if known is not None:
            return str(known[0])
    return f"0x{code:08X}"
