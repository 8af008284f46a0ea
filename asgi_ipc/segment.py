"""Creating, attaching to, validating and removing shared-memory segments.

A segment is a POSIX shared-memory object named ``/asgi_ipc.<prefix>`` (so it appears as
``/dev/shm/asgi_ipc.<prefix>``), created with ``O_EXCL`` and mode 0600 by one *owner*, which
alone removes it. Its header (see ``layout``) starts with a magic string and layout version,
records the sizes, the layout's fingerprint and the creator (pid, uid, process start time), and
ends with a ready flag written last, so an attacher never uses a half-initialised segment, a
segment of another program, version or layout (``layout_problem``), or one made with other sizes.
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import re
import stat
import time
import weakref
from dataclasses import dataclass

import posix_ipc

from .errors import (
    SegmentCorrupt,
    SegmentError,
    SegmentExists,
    SegmentLost,
    SegmentMismatch,
    SegmentMissing,
)
from .layout import (
    H_CREATOR,
    H_CREATOR_AT,
    H_IDENT,
    H_MUTEX_AT,
    H_SIZES,
    H_SIZES_AT,
    HEADER_SIZE,
    LAYOUT_FINGERPRINT,
    LAYOUT_VERSION,
    MAGIC,
    READY,
    Layout,
    Sizes,
)

__all__ = [
    "Segment",
    "segment_name",
    "segment_path",
    "validate_prefix",
    "process_start",
    "is_alive",
    "list_segments",
    "SegmentInfo",
    "inspect",
    "SHM_DIR",
    "mapping_pids",
    "read_sizes",
    "layout_problem",
]

SHM_DIR = "/dev/shm"
NAME_PREFIX = "asgi_ipc."
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")


def validate_prefix(prefix: object) -> str:
    """Return ``prefix`` if usable in a segment name, else raise ``ValueError``."""
    if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
        raise ValueError(
            f"prefix {prefix!r} is not usable: use 1-64 characters from letters, digits, "
            "'_', '.' and '-'"
        )
    return prefix


def segment_name(prefix: str) -> str:
    """The POSIX shared-memory name of a prefix's segment."""
    return "/" + NAME_PREFIX + validate_prefix(prefix)


def segment_path(prefix: str) -> str:
    """The file a prefix's segment shows as on this machine (``/dev/shm/asgi_ipc.<prefix>``).

    :raises ValueError: ``prefix`` is not usable in a segment name.
    """
    return SHM_DIR + segment_name(prefix)


def process_start(pid: int) -> int | None:
    """Start time of process ``pid`` in clock ticks since boot, or None if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # the command name (field 2) may contain spaces and parentheses: split after the last ')'
    fields = data[data.rfind(b")") + 2:].split()
    return int(fields[19])


def is_alive(pid: int, start: int | None = None) -> bool:
    """Whether ``pid`` runs (and, if ``start`` is given, is the same process as then)."""
    if pid <= 0:
        return False
    now = process_start(pid)
    if now is None:
        return False
    if start is not None and start and now != start:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except OSError:
        return False


def _write_header(buf, sizes: Sizes, layout: Layout) -> None:
    H_IDENT.pack_into(buf, 0, MAGIC, LAYOUT_VERSION, 0)
    H_SIZES.pack_into(buf, H_SIZES_AT, layout.total, sizes.unit_count, sizes.max_order,
                      sizes.channels, sizes.groups, sizes.members, sizes.waiters,
                      sizes.max_message_size, LAYOUT_FINGERPRINT)
    pid = os.getpid()
    H_CREATOR.pack_into(buf, H_CREATOR_AT, pid, os.getuid(), process_start(pid) or 0, time.time())


def read_sizes(buf) -> Sizes:
    """The sizes recorded in a header (after magic and version were checked)."""
    (_total, units, max_order, channels, groups, members, waiters, max_msg,
     _fingerprint) = H_SIZES.unpack_from(buf, H_SIZES_AT)
    return Sizes(units, max_order, channels, groups, members, waiters, max_msg)


def layout_problem(buf, ready: bool) -> str | None:
    """Why the asgi_ipc header in ``buf`` (its magic already checked) is of another layout than
    this asgi_ipc's, or ``None`` if it is not: another ``LAYOUT_VERSION``, or - once the segment
    is ready (its creator writes the fingerprint before the ready flag) - another
    ``LAYOUT_FINGERPRINT``: an asgi_ipc whose layout tables differ under the same version.
    """
    _magic, version, _ready = H_IDENT.unpack_from(buf, 0)
    if version != LAYOUT_VERSION:
        return f"layout version {version}, this asgi_ipc uses {LAYOUT_VERSION}"
    fingerprint = H_SIZES.unpack_from(buf, H_SIZES_AT)[-1]
    if ready and fingerprint != LAYOUT_FINGERPRINT:
        return (f"layout fingerprint {fingerprint:08x}, this asgi_ipc uses "
                f"{LAYOUT_FINGERPRINT:08x} (same layout version {version}, other layout tables: "
                "made by another build of asgi_ipc)")
    return None


@dataclass
class SegmentInfo:
    """What ``inspect`` learns about a segment without attaching to it."""

    name: str
    path: str
    size: int
    uid: int
    mode: int
    valid: bool
    problem: str
    creator_pid: int = 0
    creator_alive: bool = False
    created: float = 0.0
    attached_pids: tuple[int, ...] = ()

    @property
    def prefix(self) -> str:
        return self.name[len(NAME_PREFIX):]

    @property
    def stale(self) -> bool:
        """Nobody can be using it: invalid, or its creator is dead and no process maps it."""
        return not self.attached_pids and (not self.valid or not self.creator_alive)

    def verdict(self) -> str:
        if not self.valid:
            return f"invalid: {self.problem}"
        if self.creator_alive:
            return f"in use (creator pid {self.creator_pid} is running)"
        if self.attached_pids:
            return (f"orphaned: creator pid {self.creator_pid} is gone but pids "
                    f"{', '.join(map(str, self.attached_pids))} still map it")
        return f"stale: creator pid {self.creator_pid} is gone and no process maps it"


def mapping_pids(path: str) -> tuple[int, ...]:
    """Pids of processes that have ``path`` mapped (those we are allowed to inspect)."""
    pids = []
    suffix = (" " + path).encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/maps", "rb") as f:
                for line in f:
                    if line.rstrip(b"\n").endswith(suffix) or line.rstrip(b"\n").endswith(
                            suffix + b" (deleted)"):
                        pids.append(int(entry))
                        break
        except OSError:
            continue
    return tuple(pids)


def inspect(name: str) -> SegmentInfo:
    """Read a segment's header from ``/dev/shm`` and judge it, without attaching."""
    path = os.path.join(SHM_DIR, name)
    st = os.stat(path)
    info = SegmentInfo(name, path, st.st_size, st.st_uid, stat.S_IMODE(st.st_mode), False, "")
    info.attached_pids = mapping_pids(path)
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER_SIZE)
    except OSError as exc:
        info.problem = f"cannot read it ({exc.strerror})"
        return info
    if len(head) < HEADER_SIZE:
        info.problem = f"only {len(head)} bytes long"
        return info
    magic, _version, ready = H_IDENT.unpack_from(head, 0)
    if magic != MAGIC:
        info.problem = "not an asgi_ipc segment (bad magic)"
        return info
    pid, _uid, start, created = H_CREATOR.unpack_from(head, H_CREATOR_AT)
    info.creator_pid, info.created = pid, created
    info.creator_alive = is_alive(pid, start)
    problem = layout_problem(head, ready == READY)
    if problem:
        info.problem = problem
        return info
    if ready != READY:
        info.problem = "never finished initialising (its creator died during set-up)"
        return info
    info.valid = True
    return info


def list_segments() -> list[SegmentInfo]:
    """Every ``asgi_ipc.*`` object in ``/dev/shm`` that this user can see."""
    out = []
    try:
        names = sorted(os.listdir(SHM_DIR))
    except OSError:
        return out
    for name in names:
        if name.startswith(NAME_PREFIX):
            try:
                out.append(inspect(name))
            except FileNotFoundError:
                continue
    return out


# Shared-lifetime segments of this process, whose lock fds a forked child must not keep.
_SHARED: "weakref.WeakSet[Segment]" = weakref.WeakSet()


def _forget_inherited() -> None:
    """In a forked child: close the lock fds of the parent's shared-lifetime segments.

    A child shares its parent's open file descriptions, and with them the parent's ``flock``:
    kept open here, one would hold the parent's shared lock after the parent was killed, and
    the last process out could never see itself last. The child attaches anew with its own.
    """
    for segment in list(_SHARED):
        segment._release_lock_fd()
    _SHARED.clear()


os.register_at_fork(after_in_child=_forget_inherited)


class Segment:
    """One mapped segment: create it (as owner) or attach to it.

    ``create``: ``True`` must create, ``False`` must attach, ``None`` attaches or creates.
    ``sizes`` is required to create; when attaching, given sizes must match the segment's.

    ``shared=True`` gives the segment a lifetime owned by no single process: every attached
    process holds a shared ``flock`` on a descriptor of the object opened for that alone (taken
    before the segment is ready, so it is never removed under an attacher; the mapping's own
    descriptor, which ``mmap`` duplicates, stays unlocked so that a forked child can drop the
    parent's lock by closing one fd), and ``close`` removes the segment exactly when no other
    process holds one (``LOCK_EX|LOCK_NB`` succeeds), whoever created it. An attacher that finds
    the object already unlinked raises ``SegmentMissing`` (attach or create again). The kernel
    drops a killed process's lock; its segment is then removed by the last live process, and
    when the last one ends without closing it (killed, or a server re-raising SIGTERM) by the
    keeper process its creator started (:mod:`asgi_ipc.keeper`), or else by
    ``asgi-ipc doctor --clean``.
    """

    def __init__(self, prefix: str, sizes: Sizes | None, create: bool | None = None,
                 ready_timeout: float = 5.0, shared: bool = False) -> None:
        self.prefix = prefix
        self.name = segment_name(prefix)
        self.owner = False
        self.shared = shared
        self._lock_fd = -1
        self._shm = None
        self.mm: mmap.mmap | None = None
        if create is not False:
            if sizes is None:
                raise ValueError("sizes are needed to create a segment")
            try:
                self._create(sizes)
                return
            except posix_ipc.ExistentialError:
                if create:
                    raise SegmentExists(
                        f"a segment for prefix {prefix!r} already exists ({SHM_DIR}{self.name}); "
                        "another site may be running with this prefix. Stop it, choose another "
                        "prefix, or remove a stale one with 'asgi-ipc doctor --clean'"
                    ) from None
        self._attach(sizes, ready_timeout)

    # -- creation ------------------------------------------------------------------------------
    def _create(self, sizes: Sizes) -> None:
        layout = Layout(sizes)
        self._check_room(layout.total)
        old_umask = os.umask(0o077)
        try:
            shm = posix_ipc.SharedMemory(self.name, posix_ipc.O_CREX, mode=0o600)
        finally:
            os.umask(old_umask)
        self._shm = shm
        self.owner = True
        try:
            self._hold_shared()
            if self.shared:
                from .keeper import start_keeper

                start_keeper(SHM_DIR + self.name, self._lock_fd)
            os.fchmod(shm.fd, 0o600)
            # Identify the object at once (ready flag still 0), so a tool looking at it while
            # the memory is reserved sees "being initialised", not "foreign".
            os.ftruncate(shm.fd, HEADER_SIZE)
            os.pwrite(shm.fd, H_IDENT.pack(MAGIC, LAYOUT_VERSION, 0), 0)
            try:
                os.posix_fallocate(shm.fd, 0, layout.total)
            except OSError as exc:
                raise SegmentError(
                    f"cannot reserve {layout.total / 2**20:.1f} MiB in {SHM_DIR} "
                    f"({exc.strerror}); free space there, make it larger (containers: "
                    "--shm-size), or lower message_memory"
                ) from None
            self.mm = mmap.mmap(shm.fd, layout.total)
            self.layout = layout
            self.sizes = sizes
            _write_header(self.mm, sizes, layout)
        except BaseException:
            self._discard()
            raise

    def mark_ready(self) -> None:
        """Publish the segment to attachers (the creator calls this after initialising it)."""
        H_IDENT.pack_into(self.mm, 0, MAGIC, LAYOUT_VERSION, READY)

    @staticmethod
    def _check_room(total: int) -> None:
        try:
            st = os.statvfs(SHM_DIR)
        except OSError:
            return
        free = st.f_bavail * st.f_frsize
        if free < total:
            raise SegmentError(
                f"{SHM_DIR} has {free / 2**20:.1f} MiB free but the layer needs "
                f"{total / 2**20:.1f} MiB; enlarge {SHM_DIR} (Docker: --shm-size=128m) or "
                "lower message_memory"
            )

    # -- attaching -----------------------------------------------------------------------------
    def _attach(self, sizes: Sizes | None, ready_timeout: float) -> None:
        try:
            shm = posix_ipc.SharedMemory(self.name, 0)
        except posix_ipc.ExistentialError:
            raise SegmentMissing(
                f"no channel layer segment for prefix {self.prefix!r} ({SHM_DIR}{self.name}); "
                "start the site ('procman run') or create the layer first"
            ) from None
        self._shm = shm
        try:
            self._hold_shared()
            st = os.fstat(shm.fd)
            if st.st_uid != os.getuid():
                raise SegmentMismatch(
                    f"segment {self.name} belongs to uid {st.st_uid}, not to you "
                    f"(uid {os.getuid()}); run as that user or use another prefix")
            deadline = time.monotonic() + ready_timeout
            # A creator that has just made the object (0 bytes) sizes it a moment later: wait
            # for that as for the ready flag (processes of one site start together and race to
            # create). Any other short size is never a creator's: refused at once.
            while st.st_size < HEADER_SIZE:
                if st.st_size or time.monotonic() > deadline:
                    raise SegmentMismatch(
                        f"segment {self.name} is {st.st_size} bytes, too small to be an "
                        "asgi_ipc segment; remove it with 'asgi-ipc doctor --clean'")
                time.sleep(0.01)
                st = os.fstat(shm.fd)
            self.mm = mmap.mmap(shm.fd, st.st_size)
            while True:
                magic, _version, ready = H_IDENT.unpack_from(self.mm, 0)
                if magic != MAGIC and magic != b"\0" * 8:
                    raise SegmentMismatch(
                        f"{SHM_DIR}{self.name} is not an asgi_ipc segment (another program's "
                        "shared memory?); choose another prefix or remove it")
                problem = layout_problem(self.mm, ready == READY) if magic == MAGIC else None
                if problem:
                    raise SegmentMismatch(
                        f"segment {self.name} is stale or foreign: it has {problem}. Stop the "
                        "processes of the other asgi_ipc (the other site), then remove the "
                        "segment ('asgi-ipc doctor --clean' or 'procman doctor --clean')")
                if ready == READY:
                    break
                if time.monotonic() > deadline:
                    raise SegmentMismatch(
                        f"segment {self.name} was never finished by its creator; if no site "
                        "is starting, remove it with 'asgi-ipc doctor --clean'")
                time.sleep(0.01)
            st = os.fstat(shm.fd)  # mapped while its creator was still reserving the memory
            if st.st_size != len(self.mm):
                self.mm.close()
                self.mm = mmap.mmap(shm.fd, st.st_size)
            found = read_sizes(self.mm)
            layout = Layout(found)
            if layout.total > st.st_size:
                raise SegmentCorrupt(
                    f"segment {self.name} is {st.st_size} bytes but its header describes "
                    f"{layout.total}; remove it with 'asgi-ipc doctor --clean'")
            if sizes is not None and sizes != found:
                diffs = ", ".join(
                    f"{field}={getattr(found, field)} (you asked {getattr(sizes, field)})"
                    for field in found.__dataclass_fields__
                    if getattr(found, field) != getattr(sizes, field))
                raise SegmentMismatch(
                    f"segment {self.name} was created with other sizes: {diffs}. Use the same "
                    "layer settings in every process, or stop the site and start it again")
            self.layout = layout
            self.sizes = found
        except BaseException:
            self._discard()
            raise

    def _hold_shared(self) -> None:
        """Shared lifetime: open this process's lock fd on the object and take a shared lock;
        ``SegmentMissing`` if the name no longer leads to the object we opened."""
        if not self.shared:
            return
        missing = SegmentMissing(
            f"the segment for prefix {self.prefix!r} was removed while attaching (its last "
            "process stopped); attach or create it again")
        try:
            self._lock_fd = os.open(SHM_DIR + self.name, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise missing from None
        _SHARED.add(self)
        fcntl.flock(self._lock_fd, fcntl.LOCK_SH)
        ours, locked = os.fstat(self._shm.fd), os.fstat(self._lock_fd)
        if (ours.st_dev, ours.st_ino) != (locked.st_dev, locked.st_ino) or ours.st_nlink == 0:
            raise missing

    def _last_holder(self) -> bool:
        """Shared lifetime: whether no other process holds the segment (we then keep it locked
        exclusively until our lock fd closes, and the name is still this object's)."""
        if self._lock_fd < 0:
            return False
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        try:
            here = os.fstat(self._lock_fd)
            there = os.stat(SHM_DIR + self.name)
        except OSError:
            return False  # already removed
        return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)

    def _release_lock_fd(self) -> None:
        if self._lock_fd >= 0:
            try:
                os.close(self._lock_fd)
            except OSError:
                pass
            self._lock_fd = -1

    # -- state ---------------------------------------------------------------------------------
    def address(self) -> int:
        """The mapping's base address (for the mutex)."""
        view = (ctypes.c_char * 1).from_buffer(self.mm)
        address = ctypes.addressof(view)
        del view
        return address

    def mutex_address(self) -> int:
        return self.address() + H_MUTEX_AT

    def check_linked(self) -> None:
        """Raise ``SegmentLost`` if the segment was removed while we are attached."""
        if self._shm is None:
            raise SegmentLost("this layer is closed")
        if os.fstat(self._shm.fd).st_nlink == 0:
            raise SegmentLost(
                f"the segment {self.name} was removed while this process used it (its owner "
                "stopped, someone cleaned /dev/shm, or systemd's RemoveIPC); restart this "
                "process")

    def unlink(self) -> None:
        """Remove the segment's name now (owner only); the mapping stays usable."""
        if not self.owner:
            raise SegmentError("only the process that created the segment may remove it")
        try:
            posix_ipc.unlink_shared_memory(self.name)
        except posix_ipc.ExistentialError:
            pass

    def creator(self) -> tuple[int, int, int, float]:
        return H_CREATOR.unpack_from(self.mm, H_CREATOR_AT)

    def _discard(self) -> None:
        if self.mm is not None:
            try:
                self.mm.close()
            except BufferError:
                pass
            self.mm = None
        if self._shm is not None:
            if self.owner:
                try:
                    self._shm.unlink()
                except posix_ipc.ExistentialError:
                    pass
            self._shm.close_fd()
            self._shm = None
        self._release_lock_fd()
        _SHARED.discard(self)

    def close(self, unlink: bool = False) -> None:
        """Unmap; with ``unlink`` (owner only) also remove the segment.

        A shared-lifetime segment ignores ``unlink``: it is removed when this is the last
        process holding it."""
        if self._shm is None:
            return
        if self.shared:
            unlink = self._last_holder()
        elif unlink and not self.owner:
            raise SegmentError("only the process that created the segment may remove it")
        if unlink:
            try:
                self._shm.unlink()
            except posix_ipc.ExistentialError:
                pass
        if self.mm is not None:
            try:
                self.mm.close()
            except BufferError:
                pass  # a view is still alive somewhere; the mapping goes with the process
            self.mm = None
        self._shm.close_fd()
        self._shm = None
        self._release_lock_fd()  # after the unlink: nobody attaches to a removed name
        _SHARED.discard(self)


def remove(prefix_or_name: str) -> None:
    """Remove a segment by prefix or by its ``asgi_ipc.*`` name (for tools)."""
    name = prefix_or_name if prefix_or_name.startswith(NAME_PREFIX) else NAME_PREFIX + \
        validate_prefix(prefix_or_name)
    posix_ipc.unlink_shared_memory("/" + name)
