// skiff console: live refresh of the page's #live part on store changes
// (server-sent events from /ui/live), and live log following on the pod
// page. Everything works without it, only not live.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (live && window.EventSource) {
    var busy = false, again = false, timer = null;
    var refresh = function () {
      if (busy) { again = true; return; }
      busy = true;
      fetch(location.href, { headers: { "X-Skiff-Fragment": "1" }, credentials: "same-origin" })
        .then(function (r) {
          if (r.status === 401) { location.href = "/ui/login?why=expired"; return null; }
          return r.ok ? r.text() : null;
        })
        .then(function (t) { if (t !== null) { live.innerHTML = t; live.dataset.updated = Date.now(); } })
        .catch(function () {})
        .then(function () { busy = false; if (again) { again = false; refresh(); } });
    };
    var es = new EventSource("/ui/live");
    es.addEventListener("change", function () {
      clearTimeout(timer);
      timer = setTimeout(refresh, 150);
    });
    es.addEventListener("hello", function () { document.body.dataset.live = "1"; refresh(); });
    es.addEventListener("signout", function () { location.href = "/ui/login?why=expired"; });
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
