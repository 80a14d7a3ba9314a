"""Protocol-faithful local stand-ins for payment gateways, so everything runs offline."""

from __future__ import annotations

import os


def refuse_outside_development() -> None:
    """The emulators are development tools: outside KASSA_ENVIRONMENT=development (the
    default) no emulator app, and so no /_emulator route, can be built."""
    environment = os.environ.get("KASSA_ENVIRONMENT", "development")
    if environment != "development":
        raise RuntimeError(
            f"the gateway emulators run only in development (KASSA_ENVIRONMENT={environment!r})"
        )
