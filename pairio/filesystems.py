"""Which file system a path is on: is it shared across hosts (NFS, Lustre, ...) or FUSE?

SQLite says its WAL mode does not work over a network file system (its shared memory
index cannot be shared across hosts), and its locks rely on the file system's. So
pairio asks, when it opens a store, whether the store's directory is on one:
``statfs(2)``'s ``f_type`` (its magic number, through ctypes), or, where that cannot be
asked, the file system type of the path's mount point in ``/proc/self/mountinfo``. Anything else (macOS, Windows, a path that cannot be
examined) counts as local, as before.
"""

from __future__ import annotations

import functools
import os
import sys

# f_type magic numbers (linux/magic.h and the file systems' own headers) -> a name for people.
MAGIC_NUMBERS: dict[int, str] = {
    0x6969: "NFS",
    0x0BD00BD0: "Lustre",
    0x47504653: "GPFS",
    0x00C36400: "CephFS",
    0x19830326: "BeeGFS",
    0xFF534D42: "CIFS/SMB",
    0xFE534D42: "SMB2",
    0x517B: "SMB",
    0x65735546: "FUSE",
    0x01021997: "9P",
    0x5346414F: "AFS",
    0x01161970: "GFS2",
    0x7461636F: "OCFS2",
    0xAAD7AAEA: "PanFS",
}

# mount types in /proc/self/mountinfo -> the same names ("fuse.<anything>" is FUSE).
MOUNT_TYPES: dict[str, str] = {
    "nfs": "NFS", "nfs4": "NFS", "lustre": "Lustre", "gpfs": "GPFS", "ceph": "CephFS",
    "beegfs": "BeeGFS", "fhgfs": "BeeGFS", "cifs": "CIFS/SMB", "smb3": "CIFS/SMB", "smbfs": "SMB",
    "fuse": "FUSE", "fuseblk": "FUSE", "9p": "9P", "afs": "AFS", "gfs2": "GFS2", "ocfs2": "OCFS2",
    "panfs": "PanFS",
}

_MOUNTINFO = "/proc/self/mountinfo"


def shared_file_system(path: str | os.PathLike[str]) -> str | None:
    """The name of the network, cluster or FUSE file system ``path`` is on (``"NFS"``,
    ``"FUSE (fuse.sshfs)"``...), or None for a local one (or one that cannot be told).

    ``path`` need not exist: its nearest existing parent is examined.
    """
    existing = _existing(os.path.abspath(os.fspath(path)))
    magic = statfs_type(existing)
    if magic is None:
        return _from_mountinfo(existing)
    name = MAGIC_NUMBERS.get(magic)
    if name == "FUSE":
        mount_type = _mount_type(existing)
        if mount_type is not None and mount_type not in ("fuse", "fuseblk"):
            name = f"FUSE ({mount_type})"
    return name


def _existing(path: str) -> str:
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def statfs_type(path: str) -> int | None:
    """``statfs(path).f_type``, or None where it cannot be asked (not Linux, no libc, an error)."""
    statfs = _statfs_function()
    if statfs is None:
        return None
    import ctypes

    # struct statfs starts with f_type (a C long on every Linux ABI); 256 bytes hold all of it.
    buffer = ctypes.create_string_buffer(256)
    if statfs(os.fsencode(path), buffer) != 0:
        return None
    return ctypes.c_ulong.from_buffer(buffer).value & 0xFFFFFFFF


@functools.lru_cache(maxsize=1)
def _statfs_function():  # noqa: ANN202 - a ctypes function or None
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # here: `import pairio` stays light

    try:
        # The C library is loaded already: the process's own symbols have statfs (ctypes.util,
        # which would look for it by name, costs a store's first use 15 ms of imports).
        function = ctypes.CDLL(None, use_errno=True).statfs
    except (OSError, AttributeError):
        import ctypes.util

        try:
            function = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).statfs
        except (OSError, AttributeError):
            return None
    function.argtypes = (ctypes.c_char_p, ctypes.c_void_p)
    function.restype = ctypes.c_int
    return function


def _from_mountinfo(path: str) -> str | None:
    mount_type = _mount_type(path)
    if mount_type is None:
        return None
    base = mount_type.split(".", 1)[0]
    name = MOUNT_TYPES.get(mount_type) or MOUNT_TYPES.get(base)
    if name == "FUSE" and base != mount_type:
        name = f"FUSE ({mount_type})"
    return name


def _mount_type(path: str) -> str | None:
    """The file system type of the mount ``path`` is under, from /proc/self/mountinfo."""
    try:
        with open(_MOUNTINFO, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    real = os.path.realpath(path)
    best, best_type = -1, None
    for line in lines:
        # id parent major:minor root mount-point options [optional...] - type source super-options
        fields = line.split()
        try:
            mount_point = _unescape(fields[4])
            fs_type = fields[fields.index("-") + 1]
        except (IndexError, ValueError):
            continue
        inside = real == mount_point or real.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= best:  # the last of equal mounts is the one on top
            best, best_type = len(mount_point), fs_type
    return best_type


def _unescape(text: str) -> str:
    # mountinfo writes space, tab, newline and backslash as octal escapes (\040 ...).
    if "\\" not in text:
        return text
    return text.encode("latin-1", "backslashreplace").decode("unicode_escape")
