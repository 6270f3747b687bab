"""Storage of OnModel: the content-addressed object store and the SQL asset catalog.

`S3ObjectStore` lives in `storage.s3` so that boto3 is imported only when an
s3:// location is opened.
"""

from storage.catalog import Catalog
from storage.errors import AmbiguousIdError, DuplicateRowError
from storage.objects import LocalObjectStore, ObjectStore, open_store

__all__ = [
    "AmbiguousIdError",
    "Catalog",
    "DuplicateRowError",
    "LocalObjectStore",
    "ObjectStore",
    "open_store",
]
