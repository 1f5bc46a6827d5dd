// skiff console: live refresh of the page's #live part on store changes
// (server-sent events from /ui/live), and live log following on the pod
// page. Everything works without it, only not live.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (live && window.EventSource) {
    // A refresh that fails (the network, a busy server) is tried again,
    // 1 s after the first failure and up to 10 s apart after more: a
    // change already announced must not be lost because one fetch of it
    // failed, as no other event may come for a long time.
    var busy = false, again = false, timer = null, retry = null, backoff = 0;
    var failed = function (why) {
      backoff = Math.min(backoff ? backoff * 2 : 1000, 10000);
      console.warn("skiff: refresh failed (" + why + "), again in " + backoff + " ms");
      clearTimeout(retry);
      retry = setTimeout(refresh, backoff);
    };
    var refresh = function () {
      if (busy) { again = true; return; }
      busy = true;
      clearTimeout(retry);
      // A fetch that hangs (a connection gone quiet) would hold busy for
      // good: it is cut after 20 s and counts as failed.
      var ctl = window.AbortController ? new AbortController() : null;
      var cut = ctl && setTimeout(function () { ctl.abort(); }, 20000);
      fetch(location.href, { headers: { "X-Skiff-Fragment": "1" }, credentials: "same-origin", cache: "no-store", signal: ctl && ctl.signal })
        .then(function (r) {
          if (r.status === 401) { location.href = "/ui/login?why=expired"; return null; }
          if (!r.ok) { failed("status " + r.status); return null; }
          return r.text();
        })
        .then(function (t) {
          if (t !== null) { live.innerHTML = t; live.dataset.updated = Date.now(); backoff = 0; }
        }, function (e) { failed(e); })
        .then(function () { clearTimeout(cut); busy = false; if (again) { again = false; refresh(); } });
    };
    var open = function () {
      var es = new EventSource("/ui/live");
      es.addEventListener("change", function () {
        clearTimeout(timer);
        timer = setTimeout(refresh, 150);
      });
      es.addEventListener("hello", function () { document.body.dataset.live = "1"; refresh(); });
      es.addEventListener("signout", function () { location.href = "/ui/login?why=expired"; });
      // The browser reconnects by itself after a dropped stream (and the
      // server's hello then refreshes), but gives up for good on an
      // answer other than 200 (too many pages open, a restart): open it
      // again a little later.
      es.addEventListener("error", function () {
        if (es.readyState === EventSource.CLOSED) {
          delete document.body.dataset.live;
          console.warn("skiff: the live stream closed, opening it again in 5 s");
          setTimeout(open, 5000);
        }
      });
    };
    open();
  }
  var log = document.getElementById("log");
  if (log && log.dataset.follow && window.EventSource) {
    var first = true;
    var les = new EventSource(log.dataset.follow);
    les.onmessage = function (e) {
      if (first) { log.textContent = ""; first = false; log.dataset.following = "1"; }
      var atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      log.appendChild(document.createTextNode(e.data + "\n"));
      if (atEnd) { log.scrollTop = log.scrollHeight; }
    };
    les.addEventListener("error", function (e) {
      if (e.data) { var p = document.getElementById("logerr"); if (p) { p.textContent = e.data; } les.close(); }
    });
  }
  // Confirm destructive actions.
  document.addEventListener("submit", function (e) {
    var m = e.target.getAttribute("data-confirm");
    if (m && !window.confirm(m)) { e.preventDefault(); }
  });
})();
