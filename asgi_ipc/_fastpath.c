/*
 * asgi_ipc._fastpath: the common case of send and receive in C.
 *
 * Theory of operation
 * -------------------
 * The pure-Python modules (store, arena, index, waiters) are the reference implementation of
 * the segment layout and of every operation. This module repeats only the two hot critical
 * sections of critical.py - "append a message to an existing channel and pick a waiter" and
 * "take the head message of one of these channels, or register as their waiter" - with the
 * same commit order (data first, then one aligned link write; a waiter slot's state last), so
 * crash safety rests on the same argument as the Python code (see recovery.py).
 *
 * Whenever anything is unusual - the channel record does not exist yet, the queue is at
 * capacity, the head message has expired, no free block of the right size or free waiter slot
 * exists, a waiter lists more channels than a slot holds, or any reference fails its bounds check - the function releases
 * the lock WITHOUT having changed anything and returns SLOW; the caller then performs the whole
 * operation in Python, which knows how to create records, expire, coalesce and report
 * corruption. The lock itself is the segment's robust mutex; EOWNERDEAD and timeouts are handed
 * back to Python (with the lock held for EOWNERDEAD, so Python repairs under it).
 *
 * Waiters are picked (marked NOTIFIED) under the lock and rung just after it is released, so
 * a woken receiver never finds the lock still held by its waker. A sender killed in between
 * leaves a NOTIFIED slot that nobody rang: its receiver notices at its next check (see
 * layer.CHECK_INTERVAL and Attachment.stalled). A waiter whose doorbell is gone is reported
 * back as (wid, pid, cid); Python frees its slot and wakes another waiter of that channel.
 *
 * Every segment offset and constant comes from _layout.h, which setup.py generates from
 * layout.py at build time; the names below only map this file's short names onto it. The
 * module exports the LAYOUT_HASH it was built with, and the Python side refuses to use a build
 * whose hash differs from layout.py's (a stale build after a layout change); it also passes
 * LAYOUT_VERSION and the region offsets at construction.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "_layout.h" /* generated from layout.py by setup.py: pip install -e . */

#define FP_LAYOUT_VERSION LAYOUT_VERSION
#define UNIT LAYOUT_UNIT
#define CH_SIZE LAYOUT_CHANNEL_SIZE
#define CH_USED LAYOUT_CHANNEL_USED
#define CH_NAMELEN LAYOUT_CHANNEL_NAME_LEN
#define CH_HEAD LAYOUT_CHANNEL_HEAD
#define CH_TAIL LAYOUT_CHANNEL_TAIL
#define CH_DEPTH LAYOUT_CHANNEL_DEPTH
#define CH_RATE_SEC LAYOUT_CHANNEL_RATE_SECOND
#define CH_SENT LAYOUT_CHANNEL_SENT
#define CH_RATE_CUR LAYOUT_CHANNEL_SENT_THIS_SECOND
#define CH_RATE_PREV LAYOUT_CHANNEL_SENT_LAST_SECOND
#define CH_RECEIVED LAYOUT_CHANNEL_RECEIVED
#define CH_WAITERS LAYOUT_CHANNEL_WAITERS
#define CH_WAITERS_SIZE LAYOUT_CHANNEL_WAITERS_SIZE
#define CH_NAME LAYOUT_CHANNEL_NAME
#define MSG_SIZE LAYOUT_MESSAGE_SIZE
#define M_DEADLINE LAYOUT_MESSAGE_DEADLINE
#define M_SENT_AT LAYOUT_MESSAGE_SENT_AT
#define M_NEXT LAYOUT_MESSAGE_NEXT
#define M_PAYLOAD_LEN LAYOUT_MESSAGE_PAYLOAD_LEN
#define M_EXTRA_LEN LAYOUT_MESSAGE_EXTRA_LEN
#define M_NAME_LEN LAYOUT_MESSAGE_NAME_LEN
#define M_KIND LAYOUT_MESSAGE_KIND
#define M_PAD LAYOUT_MESSAGE_PAD
#define NAME_MAX_LEN LAYOUT_NAME_MAX
#define H_LOCKSTATE LAYOUT_HEADER_LOCK_HOLDER
#define H_FREE LAYOUT_HEADER_FREE_HEADS
#define H_FREE_ITEM LAYOUT_HEADER_FREE_HEADS_ITEM_SIZE
#define H_ANY LAYOUT_HEADER_ANY_WAITERS
#define H_ANY_SIZE LAYOUT_HEADER_ANY_WAITERS_SIZE
#define MUTEX_SIZE LAYOUT_HEADER_MUTEX_SIZE
#define BITMAP_WORDS (LAYOUT_CHANNEL_WAITERS_SIZE / LAYOUT_CHANNEL_WAITERS_ITEM_SIZE)
#define INDEX_ENTRY_SIZE LAYOUT_INDEX_ENTRY_SIZE
#define IX_HASH LAYOUT_INDEX_ENTRY_HASH
#define IX_REF LAYOUT_INDEX_ENTRY_REF
#define FREE_NEXT LAYOUT_FREE_BLOCK_NEXT
#define BM_FREE LAYOUT_BM_FREE
#define BM_USED LAYOUT_BM_USED
#define BM_TAG LAYOUT_BM_TAG
#define BM_ORDER LAYOUT_BM_ORDER
#define W_WAITING LAYOUT_W_WAITING
#define W_NOTIFIED LAYOUT_W_NOTIFIED
#define WAIT_ANY LAYOUT_WAIT_ANY
#define WAIT_CHANNELS LAYOUT_WAIT_CHANNELS
#define W_STATE LAYOUT_WAITER_STATE
#define W_PID LAYOUT_WAITER_PID
#define W_NONCE LAYOUT_WAITER_NONCE
#define W_COUNT LAYOUT_WAITER_COUNT
#define WAITER_HDR LAYOUT_WAITER_CHANNELS
#define W_ID_SIZE LAYOUT_WAITER_CHANNELS_ITEM_SIZE

/* The widths this file reads and writes fields with: a layout change that alters one stops the
 * build here instead of corrupting segments. */
#define FP_U32(f) (LAYOUT_##f##_SIZE == 4)
#define FP_U64(f) (LAYOUT_##f##_SIZE == 8)
_Static_assert(FP_U32(CHANNEL_HEAD) && FP_U32(CHANNEL_TAIL) && FP_U32(CHANNEL_DEPTH) &&
               FP_U32(CHANNEL_RATE_SECOND) && FP_U32(CHANNEL_SENT_THIS_SECOND) &&
               FP_U32(CHANNEL_SENT_LAST_SECOND) && FP_U64(CHANNEL_SENT) &&
               FP_U64(CHANNEL_RECEIVED) && LAYOUT_CHANNEL_WAITERS_ITEM_SIZE == 8 &&
               LAYOUT_CHANNEL_USED_SIZE == 1 && LAYOUT_CHANNEL_NAME_LEN_SIZE == 1,
               "channel record widths differ from what _fastpath.c reads");
_Static_assert(FP_U64(MESSAGE_DEADLINE) && FP_U64(MESSAGE_SENT_AT) && FP_U32(MESSAGE_NEXT) &&
               FP_U32(MESSAGE_PAYLOAD_LEN) && FP_U32(MESSAGE_EXTRA_LEN) &&
               LAYOUT_MESSAGE_NAME_LEN_SIZE == 2 && LAYOUT_MESSAGE_KIND_SIZE == 1,
               "message header widths differ from what _fastpath.c reads");
_Static_assert(FP_U32(WAITER_STATE) && FP_U32(WAITER_PID) && FP_U32(WAITER_NONCE) &&
               FP_U32(WAITER_COUNT) && W_ID_SIZE == 4 && FP_U32(INDEX_ENTRY_HASH) &&
               FP_U32(INDEX_ENTRY_REF) && FP_U32(FREE_BLOCK_NEXT) && H_FREE_ITEM == 4 &&
               FP_U32(HEADER_LOCK_HOLDER) && LAYOUT_HEADER_ANY_WAITERS_ITEM_SIZE == 8,
               "waiter, index, free-list or header widths differ from what _fastpath.c reads");

#define CH_KIND LAYOUT_CHANNEL_KIND
#define CH_OWNER LAYOUT_CHANNEL_OWNER
#define KIND_PROCESS LAYOUT_KIND_PROCESS
#define H_WAITER_FREE LAYOUT_HEADER_WAITER_FREE
#define W_FREE LAYOUT_W_FREE
#define W_NEXT_FREE LAYOUT_WAITER_NEXT_FREE
#define CH_WAITERS_ITEM LAYOUT_CHANNEL_WAITERS_ITEM_SIZE
_Static_assert(FP_U32(CHANNEL_OWNER) && LAYOUT_CHANNEL_KIND_SIZE == 1 && FP_U32(HEADER_WAITER_FREE) &&
               FP_U32(WAITER_NEXT_FREE) && CH_WAITERS_ITEM == 8,
               "take() reads these fields with rd32/a byte: rebuild the C code for the new widths");

#define R_SLOW (-1)
#define R_OWNERDEAD (-2)
#define R_TIMEOUT (-3)
#define R_LOCKERR (-4)
#define MAX_PICKS 16 /* waiters woken per call; others stay WAITING and see the queue at their check */
#define BELL_PREFIX_MAX 64

typedef struct {
    PyObject_HEAD
    Py_buffer view;
    int has_view;
    char *base;
    Py_ssize_t size;
    pthread_mutex_t *mutex;
    double lock_timeout;
    uint32_t pid;
    uint32_t channels, index_slots, units, max_order, waiters, waiter_size;
    Py_ssize_t channels_at, index_at, arena_at, map_at, waiters_at;
    int ring_fd;                       /* the process's Ringer socket, -1 until bound */
    char bell_prefix[BELL_PREFIX_MAX]; /* doorbell_address() up to the pid */
    size_t bell_prefix_len;
    int stop_at_ring;                  /* test hook: ASGI_IPC_TEST_STOP_AT_RING=1 */
} FastPath;

typedef struct {
    int n;
    uint32_t wid[MAX_PICKS], pid[MAX_PICKS], nonce[MAX_PICKS], cid[MAX_PICKS];
} Picks;

static uint32_t crc_table[256];

static void make_crc_table(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

/* Same value as zlib.crc32(key) or 1 (index.name_hash). */
static uint32_t name_hash(const char *key, Py_ssize_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (Py_ssize_t i = 0; i < n; i++)
        c = crc_table[(c ^ (unsigned char)key[i]) & 0xFF] ^ (c >> 8);
    c ^= 0xFFFFFFFFu;
    return c ? c : 1;
}

static inline uint32_t rd32(FastPath *s, Py_ssize_t at) {
    uint32_t v;
    memcpy(&v, s->base + at, 4);
    return v;
}
static inline void wr32(FastPath *s, Py_ssize_t at, uint32_t v) { memcpy(s->base + at, &v, 4); }
static inline uint64_t rd64(FastPath *s, Py_ssize_t at) {
    uint64_t v;
    memcpy(&v, s->base + at, 8);
    return v;
}
static inline void wr64(FastPath *s, Py_ssize_t at, uint64_t v) { memcpy(s->base + at, &v, 8); }
static inline double rdf(FastPath *s, Py_ssize_t at) {
    double v;
    memcpy(&v, s->base + at, 8);
    return v;
}
static inline void wrf(FastPath *s, Py_ssize_t at, double v) { memcpy(s->base + at, &v, 8); }

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Take the segment lock. Critical sections here last about a microsecond, so a contended
 * lock is usually free again within a few: spin briefly (bounded, ~2-4 us) before paying for
 * a futex sleep and wake-up, which cost more than the critical section itself. */
static int fp_lock(FastPath *s) {
    int rc = pthread_mutex_trylock(s->mutex);
    for (int spin = 0; rc == EBUSY && spin < 64; spin++) {
        for (int i = 0; i < 16; i++) cpu_relax();
        rc = pthread_mutex_trylock(s->mutex);
    }
    if (rc == EBUSY) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double secs = s->lock_timeout;
        ts.tv_sec += (time_t)secs;
        ts.tv_nsec += (long)((secs - (double)(time_t)secs) * 1e9);
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec += 1;
            ts.tv_nsec -= 1000000000L;
        }
        Py_BEGIN_ALLOW_THREADS
        rc = pthread_mutex_timedlock(s->mutex, &ts);
        Py_END_ALLOW_THREADS
    }
    if (rc == 0) {
        wr32(s, H_LOCKSTATE, s->pid);
        return 0;
    }
    if (rc == EOWNERDEAD) return R_OWNERDEAD;
    if (rc == ETIMEDOUT) return R_TIMEOUT;
    return R_LOCKERR;
}

static inline void fp_unlock(FastPath *s) { pthread_mutex_unlock(s->mutex); }

/* Record id of the channel called key, or -1 (also -1 on any bad reference). */
static long lookup(FastPath *s, const char *key, Py_ssize_t n) {
    uint32_t h = name_hash(key, n);
    uint32_t mask = s->index_slots - 1;
    uint32_t slot = h & mask;
    for (uint32_t i = 0; i <= mask; i++) {
        Py_ssize_t e = s->index_at + (Py_ssize_t)slot * INDEX_ENTRY_SIZE;
        uint32_t eh = rd32(s, e + IX_HASH), ref = rd32(s, e + IX_REF);
        if (ref == 0) return -1;
        if (eh == h) {
            uint32_t cid = ref - 1;
            if (cid >= s->channels) return -1;
            Py_ssize_t at = s->channels_at + (Py_ssize_t)cid * CH_SIZE;
            if (s->base[at + CH_USED] && (unsigned char)s->base[at + CH_NAMELEN] == n &&
                memcmp(s->base + at + CH_NAME, key, (size_t)n) == 0)
                return (long)cid;
        }
        slot = (slot + 1) & mask;
    }
    return -1;
}

static inline int order_for(Py_ssize_t nbytes) {
    int order = 0;
    Py_ssize_t size = UNIT;
    while (size < nbytes) {
        size <<= 1;
        order++;
    }
    return order;
}

/* Take a free block of order want (splitting a larger one); -1 if none or inconsistent. */
static long take_block(FastPath *s, int want) {
    int order = want;
    uint32_t head = 0;
    for (; order <= (int)s->max_order; order++) {
        head = rd32(s, H_FREE + H_FREE_ITEM * order);
        if (head) break;
    }
    if (!head) return -1;
    uint32_t unit = head - 1;
    if (unit >= s->units || (unsigned char)s->base[s->map_at + unit] != (BM_FREE | order))
        return -1;
    uint32_t next = rd32(s, s->arena_at + (Py_ssize_t)unit * UNIT + FREE_NEXT);
    if (next > s->units) return -1;
    wr32(s, H_FREE + H_FREE_ITEM * order, next);
    while (order > want) {
        order--;
        uint32_t buddy = unit + (1u << order);
        wr32(s, s->arena_at + (Py_ssize_t)buddy * UNIT + FREE_NEXT,
             rd32(s, H_FREE + H_FREE_ITEM * order));
        s->base[s->map_at + buddy] = (char)(BM_FREE | order);
        wr32(s, H_FREE + H_FREE_ITEM * order, buddy + 1);
    }
    s->base[s->map_at + unit] = (char)(BM_USED | want);
    return (long)unit;
}

static void free_block(FastPath *s, uint32_t unit, int order) {
    wr32(s, s->arena_at + (Py_ssize_t)unit * UNIT + FREE_NEXT,
         rd32(s, H_FREE + H_FREE_ITEM * order));
    s->base[s->map_at + unit] = (char)(BM_FREE | order);
    wr32(s, H_FREE + H_FREE_ITEM * order, unit + 1);
}

static int any_waiting(FastPath *s, Py_ssize_t at) {
    static const char zero[CH_WAITERS_SIZE > H_ANY_SIZE ? CH_WAITERS_SIZE : H_ANY_SIZE] = {0};
    return memcmp(s->base + at + CH_WAITERS, zero, CH_WAITERS_SIZE) != 0 ||
           memcmp(s->base + H_ANY, zero, H_ANY_SIZE) != 0;
}

static void set_bit(FastPath *s, Py_ssize_t word_at, uint32_t wid, int on) {
    uint64_t w = rd64(s, word_at + CH_WAITERS_ITEM * (wid >> 6));
    uint64_t bit = (uint64_t)1 << (wid & 63);
    wr64(s, word_at + CH_WAITERS_ITEM * (wid >> 6), on ? (w | bit) : (w & ~bit));
}

/* waiters.pick: choose one WAITING slot of channel cid, unregister it, mark it notified.
 * Returns 1 and fills wid/pid/nonce, 0 if nobody waits, -1 on a bad reference. */
static int pick(FastPath *s, uint32_t cid, uint32_t *wid_out, uint32_t *pid_out, uint32_t *nonce_out) {
    Py_ssize_t at = s->channels_at + (Py_ssize_t)cid * CH_SIZE;
    for (int w = 0; w < BITMAP_WORDS; w++) {
        uint64_t mine = rd64(s, at + CH_WAITERS + 8 * w);
        uint64_t word = mine | rd64(s, H_ANY + 8 * w);
        while (word) {
            int bit = __builtin_ctzll(word);
            word &= word - 1;
            uint32_t wid = (uint32_t)(w * 64 + bit);
            if (wid >= s->waiters) return -1;
            Py_ssize_t wat = s->waiters_at + (Py_ssize_t)wid * s->waiter_size;
            uint32_t state = rd32(s, wat + W_STATE), pid = rd32(s, wat + W_PID);
            uint32_t nonce = rd32(s, wat + W_NONCE), count = rd32(s, wat + W_COUNT);
            if (state == W_WAITING) {
                if (count == WAIT_ANY) {
                    set_bit(s, H_ANY, wid, 0);
                } else {
                    if (count > WAIT_CHANNELS) return -1;
                    for (uint32_t i = 0; i < count; i++) {
                        uint32_t other = rd32(s, wat + WAITER_HDR + W_ID_SIZE * i);
                        if (other >= s->channels) return -1;
                        set_bit(s, s->channels_at + (Py_ssize_t)other * CH_SIZE + CH_WAITERS, wid, 0);
                    }
                }
                wr32(s, wat + W_STATE, W_NOTIFIED);
                wr32(s, wat + W_COUNT, 0);
                *wid_out = wid;
                *pid_out = pid;
                *nonce_out = nonce;
                return 1;
            }
            if (mine & ((uint64_t)1 << bit))
                set_bit(s, at + CH_WAITERS, wid, 0); /* stale bit */
        }
    }
    return 0;
}

/* Ring the doorbell of waiter (pid, nonce), as doorbell.Ringer.ring does. Returns 0 if the
 * doorbell is gone (its process died), 1 otherwise (a full buffer means a ring is pending). */
static int ring(FastPath *s, uint32_t pid, uint32_t nonce) {
    struct sockaddr_un addr;
    memset(&addr, 0, offsetof(struct sockaddr_un, sun_path));
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, s->bell_prefix, s->bell_prefix_len);
    int n = snprintf(addr.sun_path + s->bell_prefix_len, sizeof(addr.sun_path) - s->bell_prefix_len,
                     "%u/%08x", pid, nonce);
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + s->bell_prefix_len + n);
    if (s->stop_at_ring) raise(SIGSTOP); /* the crash tests kill the process here */
    for (;;) {
        if (sendto(s->ring_fd, "!", 1, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&addr, len) >= 0)
            return 1;
        if (errno == EINTR) continue;
        return !(errno == ECONNREFUSED || errno == ENOENT);
    }
}

/* Pick (under the lock) one waiter of channel cid to ring once the lock is released. */
static void pick_into(FastPath *s, uint32_t cid, Picks *picks) {
    if (picks->n >= MAX_PICKS) return;
    int i = picks->n;
    if (pick(s, cid, &picks->wid[i], &picks->pid[i], &picks->nonce[i]) > 0) {
        picks->cid[i] = cid;
        picks->n++;
    }
}

/* Ring the picked waiters (the lock released); return those whose doorbell is gone as a list
 * of (wid, pid, cid) for Python to free and replace, or NULL with an exception set. */
static PyObject *ring_picks(FastPath *s, Picks *picks) {
    PyObject *gone = PyList_New(0);
    if (!gone) return NULL;
    for (int i = 0; i < picks->n; i++) {
        if (ring(s, picks->pid[i], picks->nonce[i])) continue;
        PyObject *t = Py_BuildValue("(III)", picks->wid[i], picks->pid[i], picks->cid[i]);
        if (!t || PyList_Append(gone, t) < 0) {
            Py_XDECREF(t);
            Py_DECREF(gone);
            return NULL;
        }
        Py_DECREF(t);
    }
    return gone;
}

/* ---------------------------------------------------------------------------------------- */

static int FastPath_init(FastPath *self, PyObject *args, PyObject *Py_UNUSED(kwds)) {
    PyObject *buffer;
    unsigned long mutex_offset, version;
    if (!PyArg_ParseTuple(args, "OkkdIIIIIIInnnnn", &buffer, &version, &mutex_offset,
                          &self->lock_timeout, &self->channels, &self->index_slots, &self->units,
                          &self->max_order, &self->waiters, &self->waiter_size, &self->pid,
                          &self->channels_at, &self->index_at, &self->arena_at, &self->map_at,
                          &self->waiters_at))
        return -1;
    if (version != FP_LAYOUT_VERSION) {
        PyErr_Format(PyExc_ValueError, "_fastpath was built for layout %d, not %lu",
                     FP_LAYOUT_VERSION, version);
        return -1;
    }
    if (self->has_view) {
        PyBuffer_Release(&self->view);
        self->has_view = 0;
    }
    if (PyObject_GetBuffer(buffer, &self->view, PyBUF_WRITABLE) < 0) return -1;
    self->has_view = 1;
    self->base = (char *)self->view.buf;
    self->size = self->view.len;
    if (self->index_slots == 0 || (self->index_slots & (self->index_slots - 1)) ||
        self->arena_at + (Py_ssize_t)self->units * UNIT > self->size ||
        (Py_ssize_t)mutex_offset + MUTEX_SIZE > self->size) {
        PyErr_SetString(PyExc_ValueError, "_fastpath: layout does not fit the buffer");
        return -1;
    }
    self->mutex = (pthread_mutex_t *)(self->base + mutex_offset);
    self->ring_fd = -1;
    self->bell_prefix_len = 0;
    const char *hook = getenv("ASGI_IPC_TEST_STOP_AT_RING");
    self->stop_at_ring = hook != NULL && strcmp(hook, "1") == 0;
    return 0;
}

/* bind_ringer(fd, address_prefix): the socket to ring from and doorbell_address() up to the pid. */
static PyObject *FastPath_bind_ringer(FastPath *self, PyObject *args) {
    int fd;
    const char *prefix;
    Py_ssize_t plen;
    if (!PyArg_ParseTuple(args, "iy#", &fd, &prefix, &plen)) return NULL;
    if (plen <= 0 || plen > BELL_PREFIX_MAX - 1 || plen + 24 > (Py_ssize_t)sizeof(((struct sockaddr_un *)0)->sun_path)) {
        PyErr_SetString(PyExc_ValueError, "_fastpath: doorbell address prefix too long");
        return NULL;
    }
    memcpy(self->bell_prefix, prefix, (size_t)plen);
    self->bell_prefix_len = (size_t)plen;
    self->ring_fd = fd;
    Py_RETURN_NONE;
}

static void FastPath_dealloc(FastPath *self) {
    if (self->has_view) PyBuffer_Release(&self->view);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *FastPath_release(FastPath *self, PyObject *Py_UNUSED(unused)) {
    if (self->has_view) {
        PyBuffer_Release(&self->view);
        self->has_view = 0;
        self->base = NULL;
    }
    Py_RETURN_NONE;
}

/* send(key, name, payload, deadline, now, capacity[, extra, kind])
 *   -> None | [(wid, pid), ...] of waiters found dead (to free) | int code */
static PyObject *FastPath_send(FastPath *s, PyObject *args) {
    const char *key, *name, *payload, *extra = "";
    Py_ssize_t klen, nlen, plen, elen = 0;
    double deadline, now;
    unsigned long capacity;
    int kind = 0;
    if (!s->has_view || s->ring_fd < 0) {
        PyErr_SetString(PyExc_ValueError, "_fastpath released or its ringer not bound");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "y#y#y#ddk|y#i", &key, &klen, &name, &nlen, &payload, &plen,
                          &deadline, &now, &capacity, &extra, &elen, &kind))
        return NULL;
    if (kind < 0 || kind > 255 || elen > 0x7FFFFFFF) return PyLong_FromLong(R_SLOW);
    if (nlen > NAME_MAX_LEN) return PyLong_FromLong(R_SLOW);
    int rc = fp_lock(s);
    if (rc) return PyLong_FromLong(rc);
    long cid = lookup(s, key, klen);
    if (cid < 0) goto slow;
    Py_ssize_t at = s->channels_at + (Py_ssize_t)cid * CH_SIZE;
    uint32_t head = rd32(s, at + CH_HEAD), tail = rd32(s, at + CH_TAIL), depth = rd32(s, at + CH_DEPTH);
    if (depth >= capacity) goto slow;
    if (tail && (tail > s->units || !head ||
                 ((unsigned char)s->base[s->map_at + tail - 1] & BM_TAG) != BM_USED))
        goto slow;
    int want = order_for(MSG_SIZE + nlen + elen + plen);
    if (want > (int)s->max_order) goto slow;
    long unit = take_block(s, want);
    if (unit < 0) goto slow;
    Py_ssize_t off = s->arena_at + (Py_ssize_t)unit * UNIT;
    wrf(s, off + M_DEADLINE, deadline);
    wrf(s, off + M_SENT_AT, now);
    wr32(s, off + M_NEXT, 0);
    wr32(s, off + M_PAYLOAD_LEN, (uint32_t)plen);
    wr32(s, off + M_EXTRA_LEN, (uint32_t)elen);
    uint16_t n16 = (uint16_t)nlen;
    memcpy(s->base + off + M_NAME_LEN, &n16, sizeof n16);
    s->base[off + M_KIND] = (char)kind;
    s->base[off + M_PAD] = 0;
    memcpy(s->base + off + MSG_SIZE, name, (size_t)nlen);
    memcpy(s->base + off + MSG_SIZE + nlen, extra, (size_t)elen);
    memcpy(s->base + off + MSG_SIZE + nlen + elen, payload, (size_t)plen);
    /* commit */
    if (tail)
        wr32(s, s->arena_at + (Py_ssize_t)(tail - 1) * UNIT + M_NEXT, (uint32_t)unit + 1);
    else
        wr32(s, at + CH_HEAD, (uint32_t)unit + 1);
    wr32(s, at + CH_TAIL, (uint32_t)unit + 1);
    wr32(s, at + CH_DEPTH, depth + 1);
    uint32_t sec = (uint32_t)now, r_sec = rd32(s, at + CH_RATE_SEC);
    uint32_t cur = rd32(s, at + CH_RATE_CUR), prev = rd32(s, at + CH_RATE_PREV);
    if (r_sec != sec) {
        prev = (sec - r_sec == 1) ? cur : 0;
        cur = 0;
    }
    wr32(s, at + CH_RATE_SEC, sec);
    wr64(s, at + CH_SENT, rd64(s, at + CH_SENT) + 1);
    wr32(s, at + CH_RATE_CUR, cur + 1);
    wr32(s, at + CH_RATE_PREV, prev);
    Picks picks = {0};
    if (any_waiting(s, at)) pick_into(s, (uint32_t)cid, &picks);
    fp_unlock(s);
    if (!picks.n) Py_RETURN_NONE;
    return ring_picks(s, &picks);
slow:
    fp_unlock(s);
    return PyLong_FromLong(R_SLOW);
}

/* The waiter slot wid as its owner (pid, nonce) left it: allocated to it, listing a sane number
 * of existing channels. Returns the slot's offset, or -1 (the caller goes SLOW). */
static Py_ssize_t own_slot(FastPath *s, long wid, uint32_t pid, uint32_t nonce) {
    if (wid < 0 || (uint32_t)wid >= s->waiters) return -1;
    Py_ssize_t wat = s->waiters_at + (Py_ssize_t)wid * s->waiter_size;
    if (rd32(s, wat) == W_FREE || rd32(s, wat + W_PID) != pid || rd32(s, wat + W_NONCE) != nonce) return -1;
    uint32_t count = rd32(s, wat + W_COUNT);
    if (count == WAIT_ANY) return wat;
    if (count > WAIT_CHANNELS) return -1;
    for (uint32_t i = 0; i < count; i++)
        if (rd32(s, wat + WAITER_HDR + 4 * i) >= s->channels) return -1;
    return wat;
}

/* waiters.unregister on a slot own_slot accepted: clear its bits, leave it NOTIFIED. */
static void unregister_slot(FastPath *s, uint32_t wid, Py_ssize_t wat) {
    uint32_t count = rd32(s, wat + W_COUNT);
    if (count == WAIT_ANY) {
        set_bit(s, H_ANY, wid, 0);
    } else {
        for (uint32_t i = 0; i < count; i++) {
            uint32_t cid = rd32(s, wat + WAITER_HDR + 4 * i);
            set_bit(s, s->channels_at + (Py_ssize_t)cid * CH_SIZE + CH_WAITERS, wid, 0);
        }
    }
    wr32(s, wat, W_NOTIFIED);
    wr32(s, wat + W_COUNT, 0);
    wr32(s, wat + W_NEXT_FREE, 0);
}

/* take(keys: tuple[bytes], start, now[, wid, pid, nonce]) ->
 *   (name, payload, extra, kind, gone: [(wid, pid, cid)]) - an entry was taken (and the
 *       waiter slot, if given, unregistered), rung waiters whose doorbell is gone in gone
 *   | None - every queue is empty (without a waiter)
 *   | wid >= 0 - every queue is empty and the waiter (pid, nonce) is registered on all of them
 *       in slot wid (allocated from the free list if wid was -1), in the same lock hold
 *   | code < 0 - SLOW (nothing changed: do it all in Python), OWNERDEAD, TIMEOUT, LOCKERR
 * Same section as critical.Sections._take_python. */
static PyObject *FastPath_take(FastPath *s, PyObject *args) {
    PyObject *keys;
    Py_ssize_t start;
    double now;
    long wid = -1;
    unsigned int pid = 0, nonce = 0;
    if (!s->has_view) {
        PyErr_SetString(PyExc_ValueError, "_fastpath released");
        return NULL;
    }
    Py_ssize_t nargs = PyTuple_GET_SIZE(args);
    if (!PyArg_ParseTuple(args, "O!nd|lII", &PyTuple_Type, &keys, &start, &now, &wid, &pid, &nonce))
        return NULL;
    int waiting = nargs > 3;
    if (s->ring_fd < 0) {
        PyErr_SetString(PyExc_ValueError, "_fastpath: ringer not bound");
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(keys);
    if (n == 0 || n > 256 || start < 0) return PyLong_FromLong(R_SLOW);
    if (waiting && n > WAIT_CHANNELS) return PyLong_FromLong(R_SLOW); /* registers as "any" */
    const char *kptr[256];
    Py_ssize_t klen[256];
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *k = PyTuple_GET_ITEM(keys, i);
        if (!PyBytes_Check(k)) {
            PyErr_SetString(PyExc_TypeError, "keys must be bytes");
            return NULL;
        }
        kptr[i] = PyBytes_AS_STRING(k);
        klen[i] = PyBytes_GET_SIZE(k);
    }
    int rc = fp_lock(s);
    if (rc) return PyLong_FromLong(rc);
    Py_ssize_t wat = -1;
    if (waiting && wid >= 0 && (wat = own_slot(s, wid, pid, nonce)) < 0) goto slow;
    uint32_t cids[WAIT_CHANNELS];
    int missing = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t j = (start + i) % n;
        long cid = lookup(s, kptr[j], klen[j]);
        if (cid < 0) {
            missing = 1;
            continue;
        }
        if (i < WAIT_CHANNELS) cids[i] = (uint32_t)cid;
        Py_ssize_t at = s->channels_at + (Py_ssize_t)cid * CH_SIZE;
        uint32_t head = rd32(s, at + CH_HEAD);
        if (!head) continue;
        uint32_t unit = head - 1;
        if (unit >= s->units) goto slow;
        unsigned char tag = (unsigned char)s->base[s->map_at + unit];
        if ((tag & BM_TAG) != BM_USED || (tag & BM_ORDER) > s->max_order) goto slow;
        int order = tag & BM_ORDER;
        Py_ssize_t off = s->arena_at + (Py_ssize_t)unit * UNIT;
        double deadline = rdf(s, off + M_DEADLINE);
        uint32_t next = rd32(s, off + M_NEXT), plen = rd32(s, off + M_PAYLOAD_LEN);
        uint32_t elen = rd32(s, off + M_EXTRA_LEN);
        uint16_t nlen;
        memcpy(&nlen, s->base + off + M_NAME_LEN, sizeof nlen);
        unsigned char kind = (unsigned char)s->base[off + M_KIND];
        if (nlen > NAME_MAX_LEN || (uint64_t)MSG_SIZE + nlen + elen + plen > ((uint64_t)UNIT << order) ||
            next > s->units)
            goto slow;
        if (deadline <= now) goto slow; /* expiry and group eviction happen in Python */
        PyObject *name = PyBytes_FromStringAndSize(s->base + off + MSG_SIZE, nlen);
        PyObject *extra = PyBytes_FromStringAndSize(s->base + off + MSG_SIZE + nlen, elen);
        PyObject *payload = PyBytes_FromStringAndSize(s->base + off + MSG_SIZE + nlen + elen, plen);
        if (!name || !extra || !payload) {
            Py_XDECREF(name);
            Py_XDECREF(extra);
            Py_XDECREF(payload);
            fp_unlock(s);
            return NULL;
        }
        /* commit: the message is taken */
        uint32_t tail = rd32(s, at + CH_TAIL), depth = rd32(s, at + CH_DEPTH);
        wr32(s, at + CH_HEAD, next);
        wr32(s, at + CH_TAIL, next ? tail : 0);
        wr32(s, at + CH_DEPTH, depth ? depth - 1 : 0);
        free_block(s, unit, order);
        wr64(s, at + CH_RECEIVED, rd64(s, at + CH_RECEIVED) + 1);
        if (wat >= 0) unregister_slot(s, (uint32_t)wid, wat);
        /* pass the wake on to receivers asleep on any of these channels with messages left */
        Picks picks = {0};
        for (Py_ssize_t k = 0; k < n; k++) {
            long other = lookup(s, kptr[k], klen[k]);
            if (other < 0) continue;
            Py_ssize_t oat = s->channels_at + (Py_ssize_t)other * CH_SIZE;
            if (!rd32(s, oat + CH_DEPTH) || !any_waiting(s, oat)) continue;
            pick_into(s, (uint32_t)other, &picks);
        }
        fp_unlock(s);
        PyObject *dead_out = ring_picks(s, &picks);
        if (!dead_out) {
            Py_DECREF(name);
            Py_DECREF(extra);
            Py_DECREF(payload);
            return NULL;
        }
        return Py_BuildValue("(NNNiN)", name, payload, extra, (int)kind, dead_out);
    }
    if (!waiting) {
        fp_unlock(s);
        Py_RETURN_NONE;
    }
    if (missing) goto slow; /* a queue record to create: Python does that */
    if (wat < 0) { /* waiters.alloc: the head of the free list */
        uint32_t head = rd32(s, H_WAITER_FREE);
        if (!head || head > s->waiters) goto slow; /* none free: Python reclaims dead slots */
        wid = (long)head - 1;
        wat = s->waiters_at + (Py_ssize_t)wid * s->waiter_size;
        uint32_t next = rd32(s, wat + W_NEXT_FREE);
        if (rd32(s, wat) != W_FREE || next > s->waiters) goto slow;
        wr32(s, H_WAITER_FREE, next);
        wr32(s, wat + W_PID, pid);
        wr32(s, wat + W_NONCE, nonce);
        wr32(s, wat + W_COUNT, 0);
        wr32(s, wat + W_NEXT_FREE, 0);
        wr32(s, wat, W_NOTIFIED);
    } else {
        unregister_slot(s, (uint32_t)wid, wat);
    }
    /* waiters.register: the channel list and bits first, the slot's state last */
    for (Py_ssize_t i = 0; i < n; i++) {
        wr32(s, wat + WAITER_HDR + W_ID_SIZE * i, cids[i]);
        Py_ssize_t at = s->channels_at + (Py_ssize_t)cids[i] * CH_SIZE;
        set_bit(s, at + CH_WAITERS, (uint32_t)wid, 1);
        if ((unsigned char)s->base[at + CH_KIND] == KIND_PROCESS && rd32(s, at + CH_OWNER) != pid)
            wr32(s, at + CH_OWNER, pid); /* store.set_owner: who reads this prefix! queue */
    }
    wr32(s, wat + W_COUNT, (uint32_t)n);
    wr32(s, wat, W_WAITING);
    fp_unlock(s);
    return PyLong_FromLong(wid);
slow:
    fp_unlock(s);
    return PyLong_FromLong(R_SLOW);
}

static PyMethodDef FastPath_methods[] = {
    {"send", (PyCFunction)FastPath_send, METH_VARARGS,
     "send(key, name, payload, deadline, now, capacity[, extra, kind]) -> None | [(wid, pid, cid)] dead | code"},
    {"take", (PyCFunction)FastPath_take, METH_VARARGS,
     "take(keys, start, now[, wid, pid, nonce]) -> (name, payload, extra, kind, [(wid, pid, cid)] dead)"
     " | None | registered wid | code"},
    {"bind_ringer", (PyCFunction)FastPath_bind_ringer, METH_VARARGS,
     "bind_ringer(fd, address_prefix): the socket rings are sent from, and the doorbell address prefix."},
    {"release", (PyCFunction)FastPath_release, METH_NOARGS, "Release the buffer."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject FastPathType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "asgi_ipc._fastpath.FastPath",
    .tp_basicsize = sizeof(FastPath),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)FastPath_init,
    .tp_dealloc = (destructor)FastPath_dealloc,
    .tp_methods = FastPath_methods,
    .tp_doc = "The hot critical sections of send and receive on one mapped segment.",
};

static struct PyModuleDef fastpath_module = {
    PyModuleDef_HEAD_INIT, "_fastpath", "C fast path of asgi_ipc's send/receive.", -1, NULL,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastpath(void) {
    make_crc_table();
    if (PyType_Ready(&FastPathType) < 0) return NULL;
    PyObject *m = PyModule_Create(&fastpath_module);
    if (!m) return NULL;
    Py_INCREF(&FastPathType);
    if (PyModule_AddObject(m, "FastPath", (PyObject *)&FastPathType) < 0) {
        Py_DECREF(&FastPathType);
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "LAYOUT_VERSION", FP_LAYOUT_VERSION);
    PyModule_AddStringConstant(m, "LAYOUT_HASH", LAYOUT_HASH);
    PyModule_AddIntConstant(m, "SLOW", R_SLOW);
    PyModule_AddIntConstant(m, "OWNERDEAD", R_OWNERDEAD);
    PyModule_AddIntConstant(m, "TIMEOUT", R_TIMEOUT);
    PyModule_AddIntConstant(m, "LOCKERR", R_LOCKERR);
    return m;
}
