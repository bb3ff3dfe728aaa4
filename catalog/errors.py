"""The one error type the catalog raises.

Every message names what went wrong (the dataset, the field, the file or the server) and how to
fix it, because the person reading it is usually at a terminal running `hypernet catalog ...`,
not in a debugger.
"""

from __future__ import annotations


class CatalogError(ValueError):
    """Bad input or an unusable catalog; the message says which dataset and what to do."""
