"""tajo-braze: keeps Braze and Brevo in sync, both ways."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["BrazeConnector", "__version__"]

if TYPE_CHECKING:
    from .connector import BrazeConnector


def __getattr__(name: str) -> Any:
    # Imported lazily so `import tajo_braze` stays cheap for hosts that only read metadata.
    if name == "BrazeConnector":
        from .connector import BrazeConnector

        return BrazeConnector
    raise AttributeError(name)
