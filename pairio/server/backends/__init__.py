"""What the server keeps, each behind one narrow interface (see :mod:`.base`).

- the pairs: :class:`pairio.kv.base.KeyValueStore`;
- what replicas must agree on (nonces, rate limits, upload quotas, leases): :class:`.base.Coordination`;
- the content: :class:`.base.ContentBackend`;
- the results' records and hourly counts: :class:`.records.RecordStore`.

Every implementation passes the same conformance suite in tests/.
"""

from .base import ContentBackend, Coordination, Lease, Upload
from .directory import DirectoryContent
from .memory import MemoryCoordination
from .records import CountRow, EmbeddedRecords, RecordStore, ServerRecord

__all__ = ["ContentBackend", "Coordination", "CountRow", "DirectoryContent", "EmbeddedRecords", "Lease",
           "MemoryCoordination", "RecordStore", "ServerRecord", "Upload"]
