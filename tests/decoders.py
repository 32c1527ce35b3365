"""Which CPU decoders the tests run: PyAV everywhere, decord where it is a declared dependency.

decord2 is declared where it has wheels (pyproject's marker): there a missing decord fails the
tests that use it instead of dropping them; elsewhere PyAV is the decoder and they are skipped.
"""

from __future__ import annotations

import platform
import sys

DECORD_DECLARED = (sys.platform == "linux" and platform.machine() in ("x86_64", "aarch64")) or (
    sys.platform == "win32" and platform.machine() == "AMD64"
)
# the decoders a test parametrised over both runs with
DECODERS = ["pyav"] + (["decord"] if DECORD_DECLARED else [])
