// pea-dashboard's only script (served from the binary; the CSP allows no other).
// - refreshes <main> every data-refresh seconds with a fragment fetched from the same URL
//   (paused while the tab is hidden or the user is typing in a field of <main>);
// - submits the namespace filter when its select changes.
// No HTML is built here: fragments come from the server, where every field is escaped.
(function () {
  "use strict";
  var main = document.getElementById("main");
  var live = document.getElementById("live");
  document.addEventListener("change", function (e) {
    var t = e.target;
    if (t && t.matches && t.matches("select[data-autosubmit]") && t.form) {
      t.form.submit();
    }
  });
  function scrollLog() {
    var log = document.getElementById("log");
    if (log) log.scrollTop = log.scrollHeight;
  }
  scrollLog();
  if (!main) return;
  var every = parseInt(main.getAttribute("data-refresh") || "0", 10);
  if (!(every > 0)) return;
  var last = null;
  var busy = false;
  function typing() {
    var a = document.activeElement;
    return a && main.contains(a) && /^(INPUT|TEXTAREA|SELECT)$/.test(a.tagName);
  }
  function refresh() {
    if (busy || document.hidden || typing()) return;
    busy = true;
    fetch(location.href, {
      headers: { "X-Pea-Fragment": "1" },
      credentials: "same-origin",
      cache: "no-store",
      redirect: "error",
    })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.text();
      })
      .then(function (html) {
        if (html !== last && !typing()) {
          main.innerHTML = html;
          last = html;
          scrollLog();
        }
        if (live) live.textContent = "Updated " + new Date().toLocaleTimeString();
      })
      .catch(function (e) {
        if (live) live.textContent = "Not updated: " + e.message;
      })
      .then(function () {
        busy = false;
      });
  }
  setInterval(refresh, every * 1000);
})();
