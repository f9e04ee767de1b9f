"""Singer-side pieces the tap and the target share (the Marketo API layer has no Singer imports)."""

from .config import ConnectorConfigValidation

__all__ = ["ConnectorConfigValidation"]
