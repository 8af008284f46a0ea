"""Groups and their memberships, in a segment buffer (pure: no locks, no processes).

Theory of operation
-------------------
A group record (``layout.GROUP``) is found by name through the group index and heads a doubly
linked list of member records. Each member record (``layout.MEMBER``) names one channel (its
full name, ``prefix!local`` included) and carries the time it was last added. Members of the
same channel across all groups form a second list, found through the member index by channel
name, so "remove this channel from every group" (needed when one of its messages expires) costs
O(groups of that channel), never a scan.

The ``used`` byte of each record is the commit point; lists, counts, indexes and free lists are
derived and rebuilt by ``recovery`` after a crash. Every method assumes the segment lock is held.
"""

from __future__ import annotations

import struct

from .errors import SegmentCorrupt, TableFull
from .index import HashIndex, name_hash
from .layout import GROUP_RECORD, HEADER, MEMBER_RECORD, NAME_MAX, Layout

__all__ = ["Groups"]

_U32 = struct.Struct("<I")
_F64 = struct.Struct("<d")
GROUP_SIZE, MEMBER_SIZE = GROUP_RECORD.size, MEMBER_RECORD.size
# offsets within a group record
_G_NAMELEN, _G_HASH = GROUP_RECORD.at("name_len"), GROUP_RECORD.at("hash")
_G_COUNT, _G_HEAD, _G_TAIL = GROUP_RECORD.at("count"), GROUP_RECORD.at("head"), GROUP_RECORD.at("tail")
_G_FREE, GROUP_NAME_AT = GROUP_RECORD.at("next_free"), GROUP_RECORD.at("name")
# offsets within a member record
_M_NAMELEN, _M_GROUP, _M_ADDED = MEMBER_RECORD.at("name_len"), MEMBER_RECORD.at("group"), \
    MEMBER_RECORD.at("added")
_M_GPREV, _M_GNEXT = MEMBER_RECORD.at("group_prev"), MEMBER_RECORD.at("group_next")
_M_CPREV, _M_CNEXT = MEMBER_RECORD.at("channel_prev"), MEMBER_RECORD.at("channel_next")
MEMBER_NAME_AT = MEMBER_RECORD.at("name")
# heads of the free lists, in the header
_GROUP_FREE_AT, _MEMBER_FREE_AT = HEADER.at("group_free"), HEADER.at("member_free")


class Groups:
    """Group and membership operations on one segment buffer.

    ``buf[at]`` is a record's ``used`` byte, and group and member records keep a name's length
    at the same offset (``layout.check`` holds the tables to both at import).
    """

    def __init__(self, buf, layout: Layout) -> None:
        self.buf = buf
        self.layout = layout
        self.group_count = layout.sizes.groups
        self.member_count = layout.sizes.members
        self.group_index = HashIndex(buf, layout.group_index_at, layout.group_index_slots,
                                     self.group_count)
        self.member_index = HashIndex(buf, layout.member_index_at, layout.member_index_slots,
                                      self.member_count)

    # -- helpers ---------------------------------------------------------------------------------
    def _g(self, gid: int) -> int:
        if not 0 <= gid < self.group_count:
            raise SegmentCorrupt(f"group reference {gid} out of range")
        return self.layout.groups_at + gid * GROUP_SIZE

    def _m(self, mid: int) -> int:
        if not 0 <= mid < self.member_count:
            raise SegmentCorrupt(f"member reference {mid} out of range")
        return self.layout.members_at + mid * MEMBER_SIZE

    def _get(self, at: int) -> int:
        return _U32.unpack_from(self.buf, at)[0]

    def _put(self, at: int, value: int) -> None:
        _U32.pack_into(self.buf, at, value)

    def _name(self, at: int, name_at: int) -> bytes:
        """The name of the group or member record at ``at`` (both keep its length at the same
        offset, checked at import below)."""
        n = self.buf[at + _G_NAMELEN]
        if n > NAME_MAX:
            raise SegmentCorrupt(f"record at {at} has a {n}-byte name")
        return bytes(self.buf[at + name_at:at + name_at + n])

    def _alloc(self, head_at: int, what: str, limit: int, offset_of, free_at: int) -> int:
        """Take the first record of the free list whose head is at ``head_at`` (in the header);
        ``free_at`` is the offset of the link to the next free record within a record."""
        head = self._get(head_at)
        if not head:
            raise TableFull(f"all {limit} {what} records are in use; raise the layer's "
                            f"'{'groups' if what == 'group' else 'group_members'}' size")
        rid = head - 1
        at = offset_of(rid)
        if self.buf[at]:
            raise SegmentCorrupt(f"{what} free list holds record {rid}, which is in use")
        self._put(head_at, self._get(at + free_at))
        return rid

    def _free(self, head_at: int, rid: int, at: int, free_at: int) -> None:
        self._put(at + free_at, self._get(head_at))
        self._put(head_at, rid + 1)

    # -- lookups ---------------------------------------------------------------------------------
    def find_group(self, name: bytes) -> int:
        """Record id of the group called ``name``, or -1."""
        n = len(name)

        def same(gid: int) -> bool:
            at = self._g(gid)
            return self.buf[at] == 1 and self.buf[at + _G_NAMELEN] == n and \
                self.buf[at + GROUP_NAME_AT:at + GROUP_NAME_AT + n] == name

        return self.group_index.lookup(name_hash(name), same)

    def _first_member_of_channel(self, channel: bytes) -> int:
        n = len(channel)

        def same(mid: int) -> bool:
            at = self._m(mid)
            return self.buf[at] == 1 and self.buf[at + _M_NAMELEN] == n and \
                self.buf[at + MEMBER_NAME_AT:at + MEMBER_NAME_AT + n] == channel

        return self.member_index.lookup(name_hash(channel), same)

    def _channel_members(self, channel: bytes) -> list[int]:
        out = []
        mid = self._first_member_of_channel(channel)
        while mid >= 0:
            out.append(mid)
            if len(out) > self.member_count:
                raise SegmentCorrupt("a channel's membership list does not end")
            mid = self._get(self._m(mid) + _M_CNEXT) - 1
        return out

    # -- operations ----------------------------------------------------------------------------
    def add(self, group: bytes, channel: bytes, now: float) -> None:
        """Add ``channel`` to ``group`` (idempotent: refreshes the membership's age)."""
        gid = self.find_group(group)
        if gid >= 0:
            for mid in self._channel_members(channel):
                if self._get(self._m(mid) + _M_GROUP) == gid:
                    _F64.pack_into(self.buf, self._m(mid) + _M_ADDED, now)
                    return
        else:
            gid = self._create_group(group)
        mid = self._alloc(_MEMBER_FREE_AT, "group member", self.member_count, self._m_unchecked, _M_GNEXT)
        buf = self.buf
        at = self._m(mid)
        buf[at:at + MEMBER_SIZE] = bytes(MEMBER_SIZE)
        buf[at + _M_NAMELEN] = len(channel)
        self._put(at + _M_GROUP, gid)
        _F64.pack_into(buf, at + _M_ADDED, now)
        buf[at + MEMBER_NAME_AT:at + MEMBER_NAME_AT + len(channel)] = channel
        buf[at] = 1  # commit
        # group list: append at tail
        g = self._g(gid)
        tail = self._get(g + _G_TAIL)
        self._put(at + _M_GPREV, tail)
        if tail:
            self._put(self._m(tail - 1) + _M_GNEXT, mid + 1)
        else:
            self._put(g + _G_HEAD, mid + 1)
        self._put(g + _G_TAIL, mid + 1)
        self._put(g + _G_COUNT, self._get(g + _G_COUNT) + 1)
        # channel list: push at front, and point the member index at the new first member
        first = self._first_member_of_channel(channel)
        h = name_hash(channel)
        if first >= 0:
            self._put(at + _M_CNEXT, first + 1)
            self._put(self._m(first) + _M_CPREV, mid + 1)
            self.member_index.remove(h, first)
        self.member_index.insert(h, mid)

    def _m_unchecked(self, mid: int) -> int:
        return self.layout.members_at + mid * MEMBER_SIZE

    def _g_unchecked(self, gid: int) -> int:
        return self.layout.groups_at + gid * GROUP_SIZE

    def _create_group(self, group: bytes) -> int:
        gid = self._alloc(_GROUP_FREE_AT, "group", self.group_count, self._g_unchecked, _G_FREE)
        at = self._g(gid)
        buf = self.buf
        buf[at:at + GROUP_SIZE] = bytes(GROUP_SIZE)
        h = name_hash(group)
        buf[at + _G_NAMELEN] = len(group)
        _U32.pack_into(buf, at + _G_HASH, h)
        buf[at + GROUP_NAME_AT:at + GROUP_NAME_AT + len(group)] = group
        buf[at] = 1  # commit
        self.group_index.insert(h, gid)
        return gid

    def discard(self, group: bytes, channel: bytes) -> bool:
        """Remove ``channel`` from ``group``; return whether it was a member."""
        gid = self.find_group(group)
        if gid < 0:
            return False
        for mid in self._channel_members(channel):
            if self._get(self._m(mid) + _M_GROUP) == gid:
                self.remove_member(mid)
                return True
        return False

    def remove_member(self, mid: int) -> None:
        """Unlink and free member record ``mid`` (and its group if that becomes empty)."""
        buf = self.buf
        at = self._m(mid)
        gid = self._get(at + _M_GROUP)
        g = self._g(gid)
        channel = self._name(at, MEMBER_NAME_AT)
        buf[at] = 0  # commit: no longer a member
        gprev, gnext = self._get(at + _M_GPREV), self._get(at + _M_GNEXT)
        if gprev:
            self._put(self._m(gprev - 1) + _M_GNEXT, gnext)
        else:
            self._put(g + _G_HEAD, gnext)
        if gnext:
            self._put(self._m(gnext - 1) + _M_GPREV, gprev)
        else:
            self._put(g + _G_TAIL, gprev)
        count = self._get(g + _G_COUNT)
        self._put(g + _G_COUNT, count - 1 if count else 0)
        cprev, cnext = self._get(at + _M_CPREV), self._get(at + _M_CNEXT)
        if cprev:
            self._put(self._m(cprev - 1) + _M_CNEXT, cnext)
        else:
            h = name_hash(channel)
            self.member_index.remove(h, mid)
            if cnext:
                self.member_index.insert(h, cnext - 1)
        if cnext:
            self._put(self._m(cnext - 1) + _M_CPREV, cprev)
        self._free(_MEMBER_FREE_AT, mid, at, _M_GNEXT)
        if count <= 1:
            self._release_group(gid)

    def _release_group(self, gid: int) -> None:
        at = self._g(gid)
        h = _U32.unpack_from(self.buf, at + _G_HASH)[0]
        self.buf[at] = 0  # commit
        self.group_index.remove(h, gid)
        self._free(_GROUP_FREE_AT, gid, at, _G_FREE)

    def members(self, group: bytes, now: float, group_expiry: float) -> list[bytes]:
        """Names of the current members of ``group``, dropping memberships past expiry."""
        gid = self.find_group(group)
        if gid < 0:
            return []
        names, stale = [], []
        mid = self._get(self._g(gid) + _G_HEAD) - 1
        limit = self.member_count
        # The walk of a 1,000-member group is group_send's main cost: the checks of _m and
        # _name are inlined here, with the buffer and the struct methods in locals.
        buf, members_at, count = self.buf, self.layout.members_at, self.member_count
        added_of, next_of = _F64.unpack_from, _U32.unpack_from
        while mid >= 0:
            if mid >= count:
                raise SegmentCorrupt(f"member reference {mid} out of range")
            at = members_at + mid * MEMBER_SIZE
            if added_of(buf, at + _M_ADDED)[0] + group_expiry <= now:
                stale.append(mid)
            else:
                n = buf[at + _M_NAMELEN]
                if n > NAME_MAX:
                    raise SegmentCorrupt(f"record at {at} has a {n}-byte name")
                names.append(bytes(buf[at + MEMBER_NAME_AT:at + MEMBER_NAME_AT + n]))
            mid = next_of(buf, at + _M_GNEXT)[0] - 1
            limit -= 1
            if limit < 0:
                raise SegmentCorrupt("a group's member list does not end")
        for mid in stale:
            self.remove_member(mid)
        return names

    def drop_channel(self, channel: bytes) -> int:
        """Remove ``channel`` from every group; return how many memberships went."""
        mids = self._channel_members(channel)
        for mid in mids:
            self.remove_member(mid)
        return len(mids)

    def drop_prefix(self, prefix: bytes) -> int:
        """Remove every channel named ``prefix...`` from every group (an O(memberships) walk,
        for a dead process's ``prefix!`` channels); return how many memberships went."""
        mids = []
        for mid in range(self.member_count):
            at = self.layout.member(mid)
            if self.buf[at] and self._name(at, MEMBER_NAME_AT).startswith(prefix):
                mids.append(mid)
        for mid in mids:
            self.remove_member(mid)
        return len(mids)

    def group_sizes(self) -> dict[str, int]:
        """Every group's member count (an O(table) walk, for statistics and tools)."""
        out = {}
        for gid in range(self.group_count):
            at = self._g(gid)
            if self.buf[at]:
                out[self._name(at, GROUP_NAME_AT).decode("ascii", "replace")] = \
                    self._get(at + _G_COUNT)
        return out

    def reset_free_lists(self) -> None:
        """Chain every unused group and member record into the free lists."""
        self._put(_GROUP_FREE_AT, self._chain_free(self.group_count, self._g_unchecked, _G_FREE))
        self._put(_MEMBER_FREE_AT,
                  self._chain_free(self.member_count, self._m_unchecked, _M_GNEXT))

    def _chain_free(self, count: int, offset_of, free_at: int) -> int:
        head = 0
        for rid in range(count - 1, -1, -1):
            at = offset_of(rid)
            if not self.buf[at]:
                self._put(at + free_at, head)
                head = rid + 1
        return head
