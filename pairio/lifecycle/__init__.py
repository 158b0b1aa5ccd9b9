"""Living with a cache for months: records of each result, lineage, why a call missed,
eviction within ``max_size`` and garbage collection.

Modules: :mod:`.records` (the record beside each pair), :mod:`.provenance` (where a
result came from), :mod:`.misses` (why a call missed), :mod:`.eviction` (GDSF within
``max_size``), :mod:`.gc` (unreferenced content, orphaned pairs, temporary files, locks),
:mod:`.locks` (how writers, readers and removers meet), :mod:`.hooks` (the two calls the
decorator makes), :mod:`.units` (``50GB``, ``30d``). Nothing is imported here, so the
config can use :mod:`.units` without importing the rest.
"""
