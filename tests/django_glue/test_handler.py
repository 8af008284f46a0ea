"""AsgiRequest / AsgiHandler / ViewConsumer in-process, against the test project's views."""
import json
import re

from django.contrib.auth.models import User
from django.core.signals import request_finished, request_started
from django.test import override_settings

from django_glue.asgi import channel_layers
from django_glue.default_consumers import ViewConsumer
from django_glue.handler import AsgiHandler
from django_glue.message import Message
from django_glue.request import AsgiRequest
from django_glue.staticfiles import StaticFilesConsumer
from django_glue.test import ChannelTestCase
from tests.django_glue.project.views import FILE_SIZE


def collect(layer, reply):
    """All response messages on ``reply`` (bounded by what is queued)."""
    messages = []
    while True:
        channel, content = layer.receive([reply], block=False)
        if channel is None:
            return messages
        messages.append(content)
        if not content.get("more_content", False):
            return messages


class HttpTests(ChannelTestCase):
    consumer_class = ViewConsumer

    def setUp(self):
        self.layer = channel_layers["default"]
        self.consumer = self.consumer_class()
        self.n = 0

    def request(self, path, method="GET", headers=(), body=b"", query=b"", **extra):
        self.n += 1
        reply = f"http.response.test!{self.n}"
        content = {
            "reply_channel": reply, "http_version": "1.1", "method": method, "path": path,
            "query_string": query, "headers": [[b"host", b"testserver"], *headers], "body": body,
            "client": ["10.1.2.3", 5555], "server": ["127.0.0.1", 8000], **extra,
        }
        self.consumer(Message(content, "http.request", self.layer))
        messages = collect(self.layer, "http.response.test!")
        self.assertTrue(messages, f"no response for {path}")
        self.assertIn("status", messages[0])
        body = b"".join(m.get("content", b"") for m in messages)
        headers = [(k.decode().lower(), v.decode("latin-1")) for k, v in messages[0]["headers"]]
        return messages[0]["status"], dict(headers), body, messages, headers

    def test_hello(self):
        status, headers, body, messages, _ = self.request("/hello/")
        self.assertEqual((status, body, len(messages)), (200, b"hello", 1))
        self.assertEqual(headers["content-type"], "text/html; charset=utf-8")
        self.assertFalse(messages[0]["more_content"])

    def test_request_meta(self):
        status, _, body, _, _ = self.request(
            "/prefix/echo/", query=b"a=1&b=%C3%A9",
            headers=[[b"x-custom", b"one"], [b"x-custom", b"two"], [b"x_custom", b"spoof"],
                     [b"cookie", b"a=1"], [b"cookie", b"b=2"]],
            root_path="/prefix", scheme="https",
        )
        data = json.loads(body)
        self.assertEqual(status, 200)
        self.assertEqual(data["path"], "/prefix/echo/")
        self.assertEqual(data["path_info"], "/echo/")
        self.assertEqual(data["query"], {"a": "1", "b": "é"})
        self.assertEqual(data["x_custom"], "one,two")  # joined; the underscore header dropped
        self.assertEqual(data["cookies"], {"a": "1", "b": "2"})
        self.assertEqual((data["scheme"], data["secure"]), ("https", True))
        self.assertEqual((data["remote_addr"], data["server_port"]), ("10.1.2.3", "8000"))

    def test_post_form_body(self):
        status, _, body, _, _ = self.request(
            "/echo/", method="POST", body=b"x=1&y=two",
            headers=[[b"content-type", b"application/x-www-form-urlencoded"]],
        )
        self.assertEqual(json.loads(body)["post"], {"x": "1", "y": "two"})

    def test_body_channel_chunks(self):
        body_channel = self.layer.new_channel("http.request.body?")
        self.layer.send(body_channel, {"content": b"&y=2", "more_content": True})
        self.layer.send(body_channel, {"content": b"&z=3", "more_content": False})
        status, _, body, _, _ = self.request(
            "/echo/", method="POST", body=b"x=1", body_channel=body_channel,
            headers=[[b"content-type", b"application/x-www-form-urlencoded"]],
        )
        self.assertEqual(json.loads(body)["post"], {"x": "1", "y": "2", "z": "3"})

    def test_multipart_upload_through_body_channel(self):
        boundary = b"XyZ"
        payload = b"a" * 300_000
        raw = (b"--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.bin\"\r\n"
               b"Content-Type: application/octet-stream\r\n\r\n" + payload + b"\r\n--XyZ--\r\n")
        body_channel = self.layer.new_channel("http.request.body?")
        for start in range(0, len(raw), 100_000):
            piece = raw[start:start + 100_000]
            self.layer.send(body_channel, {"content": piece, "more_content": start + 100_000 < len(raw)})
        status, _, body, _, _ = self.request(
            "/echo/", method="POST", body_channel=body_channel,
            headers=[[b"content-type", b"multipart/form-data; boundary=" + boundary]],
        )
        self.assertEqual(json.loads(body)["files"], {"f": len(payload)})

    def test_aborted_body_gives_no_response(self):
        body_channel = self.layer.new_channel("http.request.body?")
        self.layer.send(body_channel, {"closed": True})
        finished = []
        receiver = lambda **kw: finished.append(1)  # noqa: E731
        request_finished.connect(receiver)
        try:
            self.consumer(Message({"reply_channel": "gone!1", "method": "POST", "path": "/echo/",
                                   "query_string": b"", "headers": [], "body_channel": body_channel},
                                  "http.request", self.layer))
        finally:
            request_finished.disconnect(receiver)
        self.assertEqual(collect(self.layer, "gone!"), [])
        self.assertEqual(finished, [1])

    def test_slow_body_times_out_with_408(self):
        body_channel = self.layer.new_channel("http.request.body?")
        old = AsgiRequest.body_receive_timeout
        AsgiRequest.body_receive_timeout = 0.3
        try:
            status, _, body, _, _ = self.request("/echo/", method="POST", body_channel=body_channel)
        finally:
            AsgiRequest.body_receive_timeout = old
        self.assertEqual(status, 408)

    @override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=100)
    def test_data_upload_max_memory_size_is_enforced(self):
        status, _, _, _, _ = self.request(
            "/echo/", method="POST", body=b"x=" + b"1" * 500,
            headers=[[b"content-type", b"application/x-www-form-urlencoded"]],
        )
        self.assertEqual(status, 400)

    def test_malformed_message_gets_400(self):
        status, _, _, _, _ = self.request("/hello/", body="not bytes")
        self.assertEqual(status, 400)

    def test_large_response_is_chunked(self):
        status, _, body, messages, _ = self.request("/big/")
        self.assertEqual((status, len(body)), (200, FILE_SIZE))
        self.assertEqual(len(messages), 3)
        self.assertTrue(all(len(m["content"]) <= AsgiHandler.chunk_size for m in messages))
        self.assertEqual([m["more_content"] for m in messages], [True, True, False])

    def test_chunks_fit_a_layer_with_small_messages(self):
        from django_glue.test import isolated_layer

        small = isolated_layer(max_message_size=64 * 1024)
        try:
            self.consumer(Message({"reply_channel": "small!1", "method": "GET", "path": "/big/",
                                   "query_string": b"", "headers": [[b"host", b"testserver"]]},
                                  "http.request", small))
            messages = collect(small, "small!")
        finally:
            small.channel_layer.close()
        self.assertEqual(sum(len(m.get("content", b"")) for m in messages), FILE_SIZE)
        self.assertTrue(all(len(m["content"]) <= 32 * 1024 for m in messages))

    def test_streaming_response(self):
        status, _, body, messages, _ = self.request("/stream/", query=b"parts=4")
        self.assertEqual(body, b"part0;part1;part2;part3;")
        self.assertEqual(messages[-1], {"more_content": False})
        self.assertTrue(all(m["more_content"] for m in messages[:-1]))

    def test_file_response_in_chunks(self):
        status, headers, body, messages, _ = self.request("/download/")
        self.assertEqual(len(body), FILE_SIZE)
        self.assertEqual(body[:256], bytes(range(256)))
        self.assertGreaterEqual(len(messages), 4)  # headers, 3 chunks, end
        self.assertEqual(headers["content-length"], str(FILE_SIZE))

    def test_view_error_is_500_and_worker_survives(self):
        with self.assertLogs("django.request", "ERROR"):
            status, _, _, _, _ = self.request("/error/")
        self.assertEqual(status, 500)
        self.assertEqual(self.request("/hello/")[0], 200)

    def test_404(self):
        with self.assertLogs("django.request", "WARNING"):
            self.assertEqual(self.request("/missing/")[0], 404)

    def test_response_later_sends_nothing(self):
        self.consumer(Message({"reply_channel": "later!1", "method": "GET", "path": "/later/",
                               "query_string": b"", "headers": [[b"host", b"testserver"]]},
                              "http.request", self.layer))
        self.assertEqual(collect(self.layer, "later!"), [])

    def test_full_reply_channel_is_abandoned_after_bounded_retry(self):
        for i in range(self.layer.capacity):
            self.layer.send("stuck!x", {"filler": i})
        self.consumer.send_timeout = 0.2
        with self.assertLogs("django_glue.views", "WARNING") as logs:
            self.consumer(Message({"reply_channel": "stuck!1", "method": "GET", "path": "/stream/",
                                   "query_string": b"", "headers": [[b"host", b"testserver"]]},
                                  "http.request", self.layer))
        self.assertIn("abandoning response to GET /stream/", logs.output[0])
        self.assertEqual(self.request("/hello/")[0], 200)  # the consumer is still usable

    def test_encode_response_classmethod(self):
        from django.http import HttpResponse

        messages = list(AsgiHandler.encode_response(HttpResponse(b"abc", status=201)))
        self.assertEqual((messages[0]["status"], messages[0]["content"], messages[0]["more_content"]),
                         (201, b"abc", False))

    def test_cookies_become_set_cookie_headers(self):
        _, _, _, _, headers = self.request("/cookie/")
        cookies = [v for k, v in headers if k == "set-cookie"]
        self.assertEqual(len(cookies), 2)
        self.assertTrue(any(c.startswith("second=2") and "HttpOnly" in c for c in cookies))

    def test_request_signals_fire_once_each(self):
        seen = []
        started = lambda **kw: seen.append("started")  # noqa: E731
        finished = lambda **kw: seen.append("finished")  # noqa: E731
        request_started.connect(started)
        request_finished.connect(finished)
        try:
            self.request("/stream/")
        finally:
            request_started.disconnect(started)
            request_finished.disconnect(finished)
        self.assertEqual(seen, ["started", "finished"])

    def test_form_with_csrf_and_session_cookie(self):
        status, headers, body, _, all_headers = self.request("/form/")
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1)
        cookie = next(v for k, v in all_headers if k == "set-cookie").split(";")[0]
        form_headers = [[b"content-type", b"application/x-www-form-urlencoded"], [b"cookie", cookie.encode()]]
        status, _, body, _, _ = self.request("/form/", method="POST", headers=form_headers,
                                             body=b"name=ann&csrfmiddlewaretoken=" + token)
        self.assertEqual((status, body), (200, b"hi ann"))
        status, _, _, _, _ = self.request("/form/", method="POST", body=b"name=ann",
                                          headers=form_headers[:1])
        self.assertEqual(status, 403)  # no CSRF token

    def test_sessions_persist_across_requests(self):
        _, _, body, _, headers = self.request("/session/")
        cookie = next(v for k, v in headers if k == "set-cookie").split(";")[0]
        _, _, body2, _, _ = self.request("/session/", headers=[[b"cookie", cookie.encode()]])
        self.assertEqual((body, body2), (b"1", b"2"))

    def test_admin_login_works(self):
        User.objects.create_superuser("admin", "a@example.com", "pw")
        _, _, body, _, headers = self.request("/admin/login/")
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1)
        csrf = next(v for k, v in headers if k == "set-cookie" and v.startswith("csrftoken")).split(";")[0]
        status, resp_headers, _, _, all_headers = self.request(
            "/admin/login/", method="POST",
            headers=[[b"content-type", b"application/x-www-form-urlencoded"], [b"cookie", csrf.encode()]],
            body=b"username=admin&password=pw&next=/admin/&csrfmiddlewaretoken=" + token,
        )
        self.assertEqual((status, resp_headers["location"]), (302, "/admin/"))
        session = next(v for k, v in all_headers if k == "set-cookie" and v.startswith("sessionid")).split(";")[0]
        status, _, body, _, _ = self.request("/admin/", headers=[[b"cookie", session.encode()]])
        self.assertEqual(status, 200)
        self.assertIn(b"Site administration", body)


@override_settings(DEBUG=True)
class StaticFilesTests(HttpTests):
    consumer_class = StaticFilesConsumer

    def test_static_file_served(self):
        status, headers, body, _, _ = self.request("/static/css/site.css")
        self.assertEqual((status, body), (200, b"body { color: #123456; }\n"))
        self.assertIn("text/css", headers["content-type"])

    def test_missing_static_file_is_404(self):
        status, _, body, _, _ = self.request("/static/nope.css")
        self.assertEqual(status, 404)
        self.assertIn(b"nope.css", body)  # DEBUG: the technical 404 page names the file
