"""The server's HTTP/1.x rules, on top of whichever parser reads the bytes: one home for each
rule, with the RFC 9110/9112 section it comes from.

Theory of operation
-------------------
A parser adapter extracts the request line and the header fields; :func:`request_head` decides
whether the request is acceptable and how its body is framed, raising
:class:`~procman.interface.http_events.ClientError` with the status to answer. The stance:

* **Every framing ambiguity is a 400 that closes the connection.** Where RFC 9112 lets a recipient
  be lenient (bare LF line ends, duplicate identical ``Content-Length``), we are not: a proxy in
  front may read the same bytes differently, and that disagreement is request smuggling.
* **Limits** answer 414 (request line), 431 (head size, field count) and 413 (body, enforced by
  the connection with ``--max-request-body``).
* **Methods are case-sensitive** and must be registered ones: ``head`` is not ``HEAD`` (a
  case-insensitive HEAD would drop the body a proxy in front expects), unknown methods get 501.

llhttp (httptools) already refuses malformed bytes (bare CR/LF, obs-fold, bad chunk lines) itself;
:func:`check_head_bytes` gives the h11 adapter the same strictness for the head, which h11 parses
leniently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from procman.interface.http_events import ClientError, RequestHead

__all__ = ["HeadLimits", "KNOWN_METHODS", "body_framing", "check_chunk_line", "check_head_bytes", "request_head"]

#: RFC 9110 section 5.6.2: token characters (method and field names).
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
#: RFC 9112 section 3.2: a request target is visible ASCII (no spaces, controls or 8-bit bytes).
_TARGET = re.compile(rb"[\x21-\x7e]+\Z")
#: RFC 9110 section 5.5: field values hold no control characters except HTAB.
_FIELD_VALUE_BAD = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
#: RFC 9110 section 8.6: Content-Length = 1*DIGIT (no sign, no list; 18 digits fit an int64).
_CONTENT_LENGTH = re.compile(rb"[0-9]{1,18}\Z")
#: RFC 9112 section 2.2: a bare CR, or a LF without its CR.
_BARE_CR_OR_LF = re.compile(rb"\r(?!\n)|(?<!\r)\n")
#: RFC 9112 section 5.2: a line starting with whitespace continues (folds) the previous one.
_FOLD = re.compile(rb"\r\n[ \t]")

#: RFC 9112 section 7.1: chunk-size (hex; at most 16 digits, so it fits 64 bits), then chunk
#: extensions free of control characters other than HTAB (a bare CR inside one is a line end to
#: some proxies), then CRLF.
_CHUNK_LINE = re.compile(rb"[0-9A-Fa-f]{1,16}(?:;[\t\x20-\x7e\x80-\xff]*)?\r\n")

#: Registered methods (RFC 9110 section 9 plus the IANA registry entries llhttp knows). Matched
#: case-sensitively (RFC 9110 section 9.1); anything else is 501 (section 9.1, last paragraph).
KNOWN_METHODS = frozenset(
    """GET HEAD POST PUT DELETE OPTIONS TRACE PATCH COPY LOCK MKCOL MOVE PROPFIND PROPPATCH
    SEARCH UNLOCK BIND REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE M-SEARCH NOTIFY
    SUBSCRIBE UNSUBSCRIBE PURGE MKCALENDAR LINK UNLINK SOURCE QUERY""".split()
)


@dataclass(frozen=True)
class HeadLimits:
    """Bounds on a request head; over them the request is refused before it is buffered further.

    :param max_request_line: longest request line (longer: 414, RFC 9112 section 3).
    :param max_head_size: largest request head, line and fields (larger: 431, RFC 6585 section 5).
    :param max_header_count: most header fields (more: 431).
    """

    max_request_line: int = 8192
    max_head_size: int = 32768
    max_header_count: int = 100


def check_head_bytes(raw: bytes | bytearray, start: int = 0, end: int | None = None) -> None:
    """Refuse a head (or the part ``raw[start:end]`` of one still arriving) whose lines are not
    cleanly CRLF separated, or that folds a field value.

    * RFC 9112 section 2.2: a bare CR MUST be rejected or replaced; a bare LF MAY be accepted as
      a line end - we reject it, as a proxy that does not would see different lines.
    * RFC 9112 section 5.2: obs-fold; a server MUST reject it or replace it - we reject.
    """
    stop = len(raw) if end is None else end
    if _BARE_CR_OR_LF.search(raw, start, stop):
        raise ClientError(400, "Bare CR or LF in the request head")
    if _FOLD.search(raw, max(0, start - 2), stop):
        raise ClientError(400, "Obsolete header line folding is not accepted")


def check_chunk_line(line: bytes) -> None:
    """Refuse a chunk-size line (``line`` starts with it; anything after its CRLF is ignored)
    that is not strictly ``chunk-size [chunk-ext] CRLF`` (RFC 9112 section 7.1)."""
    if not _CHUNK_LINE.match(line):
        raise ClientError(400, "Malformed chunked body: bad chunk-size line")


def request_head(
    method: bytes,
    target: bytes,
    http_version: str,
    headers: list[tuple[bytes, bytes]],
    limits: HeadLimits,
) -> RequestHead:
    """Apply every rule to a parsed head; return the :class:`RequestHead` with its framing.

    :param headers: ``(name, value)`` pairs as received, duplicates kept (names in any case).
    :raises ClientError: the request must be refused with ``status``; the connection closes.
    """
    if http_version not in ("1.0", "1.1"):
        # RFC 9110 section 15.6.6: 505 for a major version we do not serve.
        raise ClientError(505, "HTTP version not supported (HTTP/1.0 and HTTP/1.1 only)")
    if not _TOKEN.match(method):
        raise ClientError(400, "Malformed request method")
    text_method = method.decode("ascii")
    if text_method not in KNOWN_METHODS:
        if text_method == "CONNECT":
            raise ClientError(501, "CONNECT is not supported (this server is not a proxy)")
        raise ClientError(501, "Method not implemented (methods are case-sensitive)")
    if not _TARGET.match(target):
        raise ClientError(400, "Invalid characters in the request target")
    if len(headers) > limits.max_header_count:
        raise ClientError(431, "Too many request header fields")
    fields = []
    for name, value in headers:
        if not _TOKEN.match(name):
            raise ClientError(400, "Malformed header field name")  # RFC 9112 section 5.1
        value = value.strip(b" \t")
        if _FIELD_VALUE_BAD.search(value):
            raise ClientError(400, "Control characters in a header field value")
        fields.append((name.lower(), value))
    head = RequestHead(
        method=text_method, target=target, http_version=http_version, headers=fields, keep_alive=False
    )
    _apply_host_rule(head)
    head.content_length, head.chunked = body_framing(http_version, fields)
    _apply_connection(head)
    return head


def _apply_host_rule(head: RequestHead) -> None:
    # RFC 9112 section 3.2: "A server MUST respond with a 400 (Bad Request) status code to any
    # HTTP/1.1 request message that lacks a Host header field and to any request message that
    # contains more than one Host header field line or a Host header field with an invalid
    # field value." More than one Host is also a routing ambiguity (first vs last).
    count = sum(1 for name, _ in head.headers if name == b"host")
    if count > 1:
        raise ClientError(400, "More than one Host header field")
    if count == 0 and head.http_version == "1.1":
        raise ClientError(400, "HTTP/1.1 request without a Host header field")


def body_framing(http_version: str, fields: list[tuple[bytes, bytes]]) -> tuple[int | None, bool]:
    """``(content_length, chunked)`` of a request body from its header ``fields`` (lower-case
    names, stripped values); raises :class:`ClientError` for every ambiguous framing."""
    lengths = [value for name, value in fields if name == b"content-length"]
    codings_fields = [value for name, value in fields if name == b"transfer-encoding"]
    if codings_fields:
        if lengths:
            # RFC 9112 section 6.1: a request with both "ought to be handled as an error";
            # section 6.3 (3): it is a smuggling vector. Refuse and close.
            raise ClientError(400, "Both Transfer-Encoding and Content-Length given")
        if http_version == "1.0":
            # RFC 9112 section 6.1: an HTTP/1.0 message with Transfer-Encoding MUST be treated
            # as having faulty framing.
            raise ClientError(400, "Transfer-Encoding is not allowed in HTTP/1.0")
        codings = [c.strip(b" \t").lower() for value in codings_fields for c in value.split(b",")]
        if codings[-1] != b"chunked" or codings.count(b"chunked") > 1:
            # RFC 9112 section 6.3 (4): chunked not final -> 400; section 7: chunked MUST NOT
            # be applied more than once.
            raise ClientError(400, "Transfer-Encoding must end with a single 'chunked'")
        if codings != [b"chunked"]:
            # RFC 9112 section 6.1: a transfer coding we do not understand -> 501.
            raise ClientError(501, "Only the 'chunked' transfer coding is supported")
        return None, True
    if lengths:
        # RFC 9110 section 8.6 lets a recipient accept a list of identical values or repeated
        # identical fields; RFC 9112 section 6.3 (5) calls anything else unrecoverable. Both
        # forms are ambiguous to some proxy in front, so only one plain 1*DIGIT value is taken.
        if len(lengths) != 1:
            raise ClientError(400, "More than one Content-Length header field")
        if not _CONTENT_LENGTH.match(lengths[0]):
            raise ClientError(400, "Invalid Content-Length (one decimal number expected)")
        return int(lengths[0]), False
    return None, False


def _apply_connection(head: RequestHead) -> None:
    tokens: set[bytes] = set()
    upgrade = b""
    for name, value in head.headers:
        if name == b"connection":
            tokens.update(v.strip(b" \t").lower() for v in value.split(b","))
        elif name == b"expect":
            # RFC 9110 section 10.1.1: only 100-continue is defined.
            head.expect_continue = value.lower() == b"100-continue"
        elif name == b"upgrade":
            upgrade = value.lower()
    # RFC 9112 section 9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 only with "keep-alive".
    if head.http_version == "1.1":
        head.keep_alive = b"close" not in tokens
    else:
        head.keep_alive = b"keep-alive" in tokens
    # RFC 6455 section 4.1: a GET with Connection: Upgrade and Upgrade: websocket.
    head.upgrade_websocket = (
        head.method == "GET" and b"upgrade" in tokens and b"websocket" in upgrade
    )
    if b"upgrade" in tokens and not head.upgrade_websocket:
        # RFC 9110 section 7.8: a server may ignore Upgrade; we answer the request and close,
        # so bytes meant for another protocol are never read as a next request.
        head.keep_alive = False
