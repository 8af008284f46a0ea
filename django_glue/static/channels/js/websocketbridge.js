/*
 * WebSocketBridge: the Channels 1.x JavaScript wrapper, for django_glue (no build step, no
 * dependencies). Load it with {% static "channels/js/websocketbridge.js" %}; it defines
 * `channels.WebSocketBridge` (and module.exports.WebSocketBridge under CommonJS).
 *
 *   const bridge = new channels.WebSocketBridge();
 *   bridge.connect("/things/lobby/");           // "/path", "ws://host/path" or nothing (this page)
 *   bridge.listen(function (message, stream) { ... });          // frames without a stream
 *   bridge.demultiplex("things", function (payload, stream) { ... });
 *   bridge.send({any: "json"});
 *   bridge.stream("things").send({action: "create", data: {...}});
 *
 * Multiplexed frames are the server demultiplexer's {"stream": name, "payload": {...}}.
 * The socket (`bridge.socket`) reconnects by itself when it closes, waiting
 * min(maxReconnectionDelay, minReconnectionDelay * reconnectionDelayGrowFactor ** attempt) ms
 * (plus up to 10% jitter; defaults 1500, 10000 and 1.3, as reconnecting-websocket 3.x which
 * Channels 1.1 bundled) between attempts, and gives up after `maxRetries` attempts in a row.
 * Messages sent while it is not open are queued (at most `maxQueued`) and sent on (re)connect.
 * `bridge.socket.close()` closes it for good.
 */
(function (root, factory) {
  "use strict";
  var api = factory();
  if (typeof module === "object" && module.exports) {
    module.exports = api;
  }
  if (root) {
    root.channels = root.channels || {};
    root.channels.WebSocketBridge = api.WebSocketBridge;
    root.channels.ReconnectingWebSocket = api.ReconnectingWebSocket;
  }
})(typeof window !== "undefined" ? window : this, function () {
  "use strict";

  // The option names and defaults of reconnecting-websocket 3.x, which Channels 1.1 bundled.
  var DEFAULTS = {
    minReconnectionDelay: 1500,
    maxReconnectionDelay: 10000,
    reconnectionDelayGrowFactor: 1.3,
    connectionTimeout: 4000,
    maxRetries: Infinity,
    maxQueued: 1000,
    jitter: 0.1,
    debug: false
  };

  function withDefaults(options) {
    var merged = {};
    var key;
    for (key in DEFAULTS) { merged[key] = DEFAULTS[key]; }
    for (key in options || {}) {
      if (!(key in DEFAULTS)) {
        // Warn, not throw: pages written for Channels 1 may pass options its socket ignored.
        if (typeof console !== "undefined") {
          console.warn("WebSocketBridge: unknown option " + JSON.stringify(key) + " ignored; known options: " +
                       Object.keys(DEFAULTS).join(", "));
        }
        continue;
      }
      merged[key] = options[key];
    }
    return merged;
  }

  /* The wait before reconnection attempt number `attempt` (0 = the first), without jitter. */
  function reconnectDelay(attempt, options) {
    var o = withDefaults(options);
    return Math.min(o.maxReconnectionDelay,
                    o.minReconnectionDelay * Math.pow(o.reconnectionDelayGrowFactor, attempt));
  }

  /* "/path" and "path" are made absolute against the page (ws: or wss: as the page is served). */
  function resolveUrl(url) {
    var loc = typeof window !== "undefined" ? window.location : null;
    if (url === undefined || url === null || url === "") { url = "/"; }
    if (/^wss?:\/\//i.test(url)) { return url; }
    if (!loc) { throw new Error("WebSocketBridge: give a ws:// or wss:// URL outside a browser"); }
    var scheme = loc.protocol === "https:" ? "wss://" : "ws://";
    if (url.charAt(0) !== "/") { url = loc.pathname.replace(/[^/]*$/, "") + url; }
    return scheme + loc.host + url;
  }

  var EVENTS = ["open", "close", "message", "error", "connecting"];

  /* A WebSocket that reconnects with backoff; same event interface as WebSocket. */
  function ReconnectingWebSocket(url, protocols, options) {
    this.url = url;
    this.protocols = protocols;
    this.options = withDefaults(options);
    this.attempts = 0;          // failed attempts in a row (reset on open)
    this.reconnects = 0;        // successful opens after the first
    this.readyState = WebSocket.CONNECTING;
    this._listeners = {};
    this._queue = [];
    this._closedByUser = false;
    this._ws = null;
    this._timer = null;
    this._openedBefore = false;
    this._refreshing = false;
    for (var i = 0; i < EVENTS.length; i++) {
      this._listeners[EVENTS[i]] = [];
      this["on" + EVENTS[i]] = null;
    }
    this._open();
  }

  ReconnectingWebSocket.prototype.addEventListener = function (type, listener) {
    if (!this._listeners[type]) { throw new Error("ReconnectingWebSocket: no event " + JSON.stringify(type)); }
    if (this._listeners[type].indexOf(listener) < 0) { this._listeners[type].push(listener); }
  };

  ReconnectingWebSocket.prototype.removeEventListener = function (type, listener) {
    var list = this._listeners[type] || [];
    var at = list.indexOf(listener);
    if (at >= 0) { list.splice(at, 1); }
  };

  ReconnectingWebSocket.prototype._emit = function (type, event) {
    var handler = this["on" + type];
    var list = this._listeners[type].slice();
    if (typeof handler === "function") { list.unshift(handler); }
    for (var i = 0; i < list.length; i++) {
      try {
        list[i].call(this, event);
      } catch (err) {
        // One listener's mistake must not stop the others (nor the reconnection logic).
        if (typeof console !== "undefined") { console.error(err); }
      }
    }
  };

  ReconnectingWebSocket.prototype._log = function () {
    if (this.options.debug && typeof console !== "undefined") {
      console.debug.apply(console, ["ReconnectingWebSocket:"].concat([].slice.call(arguments)));
    }
  };

  ReconnectingWebSocket.prototype._open = function () {
    var self = this;
    this._timer = null;
    this.readyState = WebSocket.CONNECTING;
    this._emit("connecting", {attempt: this.attempts});
    var ws = this.protocols ? new WebSocket(this.url, this.protocols) : new WebSocket(this.url);
    this._ws = ws;
    var timeout = setTimeout(function () {
      self._log("connection timed out");
      ws.close();
    }, this.options.connectionTimeout);
    ws.onopen = function (event) {
      clearTimeout(timeout);
      self.readyState = WebSocket.OPEN;
      if (self._openedBefore) { self.reconnects += 1; }
      self._openedBefore = true;
      self.attempts = 0;
      self._log("open", self.url);
      self._emit("open", event);
      while (self._queue.length && self.readyState === WebSocket.OPEN) {
        ws.send(self._queue.shift());
      }
    };
    ws.onmessage = function (event) { self._emit("message", event); };
    ws.onerror = function (event) { self._emit("error", event); };
    ws.onclose = function (event) {
      clearTimeout(timeout);
      if (self._ws !== ws) { return; }
      self._ws = null;
      self._emit("close", event);
      if (self._closedByUser) {
        self.readyState = WebSocket.CLOSED;
        return;
      }
      if (self.attempts >= self.options.maxRetries) {
        self.readyState = WebSocket.CLOSED;
        self._log("giving up after", self.attempts, "attempts");
        return;
      }
      self.readyState = WebSocket.CONNECTING;
      if (self._refreshing) {
        self._refreshing = false;
        self._open();
        return;
      }
      var wait = reconnectDelay(self.attempts, self.options);
      wait += wait * self.options.jitter * Math.random();
      self.attempts += 1;
      self._log("closed (code", event.code + "); reconnecting in", Math.round(wait), "ms");
      self._timer = setTimeout(function () { self._open(); }, wait);
    };
  };

  /* Send now if open, else queue until the next open (oldest dropped beyond maxQueued). */
  ReconnectingWebSocket.prototype.send = function (data) {
    if (this._closedByUser) { throw new Error("ReconnectingWebSocket: send() after close()"); }
    if (this._ws && this.readyState === WebSocket.OPEN) {
      this._ws.send(data);
      return;
    }
    this._queue.push(data);
    if (this._queue.length > this.options.maxQueued) {
      this._queue.shift();
      if (typeof console !== "undefined") {
        console.warn("ReconnectingWebSocket: queue full (maxQueued=" + this.options.maxQueued + "); oldest message dropped");
      }
    }
  };

  /* Close for good (no reconnection). */
  ReconnectingWebSocket.prototype.close = function (code, reason) {
    this._closedByUser = true;
    if (this._timer !== null) { clearTimeout(this._timer); this._timer = null; }
    if (this._ws) {
      this.readyState = WebSocket.CLOSING;
      this._ws.close(code || 1000, reason);
    } else {
      this.readyState = WebSocket.CLOSED;
    }
  };

  /* Close the current connection and open a new one now (resets the backoff). */
  ReconnectingWebSocket.prototype.refresh = function () {
    if (this._closedByUser) { throw new Error("ReconnectingWebSocket: refresh() after close()"); }
    this.attempts = 0;
    if (this._ws) {
      this._refreshing = true;
      this._ws.close(4000, "refresh");
    } else {
      clearTimeout(this._timer);
      this._open();
    }
  };

  function WebSocketBridge(options) {
    this.options = options || {};
    withDefaults(this.options);   // unknown options are reported here, not at connect()
    this.socket = null;
    this.default_cb = null;
    this.streams = {};
  }

  /* Open the (reconnecting) socket: url as "/path", "path", "ws(s)://..." or nothing. */
  WebSocketBridge.prototype.connect = function (url, protocols, options) {
    var merged = {};
    var key;
    for (key in this.options) { merged[key] = this.options[key]; }
    for (key in options || {}) { merged[key] = options[key]; }
    if (this.socket) { this.socket.close(); }
    this.socket = new ReconnectingWebSocket(resolveUrl(url), protocols, merged);
    var self = this;
    this.socket.addEventListener("message", function (event) { self._dispatch(event); });
    return this;
  };

  WebSocketBridge.prototype._dispatch = function (event) {
    if (typeof event.data !== "string") {
      if (typeof console !== "undefined") { console.warn("WebSocketBridge: binary frame ignored"); }
      return;
    }
    var message;
    try {
      message = JSON.parse(event.data);
    } catch (err) {
      if (typeof console !== "undefined") { console.error("WebSocketBridge: frame is not JSON:", event.data); }
      return;
    }
    if (message !== null && typeof message === "object" && message.stream !== undefined) {
      var callback = this.streams[message.stream];
      if (callback) { callback(message.payload, message.stream); }
    } else if (this.default_cb) {
      this.default_cb(message, null);
    }
  };

  /* cb(message, null) for every frame that is not multiplexed. */
  WebSocketBridge.prototype.listen = function (cb) {
    this._needSocket("listen");
    this.default_cb = cb || null;
  };

  /* cb(payload, stream) for every frame of `stream`. */
  WebSocketBridge.prototype.demultiplex = function (stream, cb) {
    this.streams[stream] = cb;
  };

  /* Send a JSON-encodable value as one text frame. */
  WebSocketBridge.prototype.send = function (message) {
    this._needSocket("send");
    this.socket.send(JSON.stringify(message));
  };

  /* An object whose send(payload) sends {"stream": name, "payload": payload}. */
  WebSocketBridge.prototype.stream = function (name) {
    var self = this;
    return {
      send: function (payload) {
        self._needSocket("stream(" + JSON.stringify(name) + ").send");
        self.socket.send(JSON.stringify({stream: name, payload: payload}));
      }
    };
  };

  WebSocketBridge.prototype._needSocket = function (what) {
    if (!this.socket) { throw new Error("WebSocketBridge: call connect() before " + what + "()"); }
  };

  WebSocketBridge.reconnectDelay = reconnectDelay;
  WebSocketBridge.resolveUrl = resolveUrl;

  return {WebSocketBridge: WebSocketBridge, ReconnectingWebSocket: ReconnectingWebSocket};
});
