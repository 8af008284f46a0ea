"""Nothing a client sends can forge a log line: control characters are escaped in the access log
and in the process's own log."""

from __future__ import annotations

import io
import logging

from procman.interface.access_log import AccessLog, EscapingFilter, escape_for_log
from tests.procman.interface.conftest import read_http_response

FORGED = b"/x%0a10.9.8.7:4444%20-%20-%20[01/Jan/2026:00:00:00]%20%22GET%20/admin%22%20200%200"


def test_escape_for_log():
    assert escape_for_log('/a\nb\r\x00\x7f\x85"\\') == "/a\\x0ab\\x0d\\x00\\x7f\\x85\\x22\\x5c"
    assert escape_for_log('say "hi"\n', quoted=False) == 'say "hi"\\x0a'
    assert escape_for_log("/caf\u00e9 ok") == "/caf\u00e9 ok"


def test_access_log_line_stays_one_line():
    stream = io.StringIO()
    AccessLog(stream).write(["10.0.0.1\n", 1], 'GET /x\n1.2.3.4 - - "GET /admin"', 200, 5)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert '"GET /x\\x0a1.2.3.4 - - \\x22GET /admin\\x22" 200 5' in lines[0]
    assert lines[0].startswith("10.0.0.1\\x0a:1 - - [")


def test_escaping_filter_escapes_the_formatted_message():
    record = logging.LogRecord("procman.interface", logging.WARNING, __file__, 1, "no answer for %s", ("/a\nFORGED",), None)
    EscapingFilter().filter(record)
    assert record.getMessage() == "no answer for /a\\x0aFORGED"


def test_a_forged_access_log_line_is_escaped_by_the_running_server(layer, app, start_interface):
    interface = start_interface(layer, "--http-timeout", "0.5")
    sock = interface.connect()
    sock.sendall(b"GET " + FORGED + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    request = app.request()
    assert request["path"].startswith("/x\n10.9.8.7")  # the application gets the real path
    app.respond(request)
    assert read_http_response(sock)[0] == 200
    log = interface.wait_for_log('"GET /x\\x0a10.9.8.7', source="access")
    assert not any(line.startswith("10.9.8.7") for line in log.splitlines())
    # The process's own log (a warning naming the path) is escaped too.
    sock.sendall(b"GET /y%0dFORGED HTTP/1.1\r\nHost: x\r\n\r\n")
    app.request()  # never answered: the server warns after --http-timeout
    stderr = interface.wait_for_log("/y\\x0dFORGED")
    assert "\rFORGED" not in stderr
    sock.close()
