"""slime.types: The data model, the Protocols of every plugin seam, plugin resolution and the error classes."""
