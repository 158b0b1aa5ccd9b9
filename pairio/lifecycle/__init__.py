"""Living with a cache for months: records of each result, lineage, why a call missed,
eviction within ``max_size`` and garbage collection.

Modules: :mod:`.records` (the record beside each pair), :mod:`.provenance` (where a
result came from), :mod:`.misses` (why a call missed), :mod:`.eviction` (GDSF within
``max_size``), :mod:`.gc` (unreferenced content, orphaned pairs, temporary files, locks),
:mod:`.calls` (what it keeps of the decorator's calls). How writers, readers and removers of
content meet is :mod:`pairio.content.directory_lock`; ``50GB`` and ``30d`` are
:mod:`pairio.units`. Nothing is imported here.
"""

# The orders entries are listed in (records.entries, ``pairio ls --sort``): here, so that the command
# line's parser has them without loading the stores.
SORTS = ("created", "size", "seconds", "hits")
