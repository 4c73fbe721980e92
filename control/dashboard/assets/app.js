// pea-dashboard's page script (served from the binary; the CSP allows no other source).
// - live pages: <main data-live=URL> subscribes to the server's Server-Sent Events stream
//   (the server watches what the page shows) and swaps in the main part it sends after a
//   change; held back while the user types in a field of <main>;
// - followed logs: <pre data-follow=URL> appends the lines of the log stream as text,
//   keeping at most data-max-lines;
// - submits the namespace filter when its select changes.
// No HTML is built here: fragments come from the server, where every field is escaped; log
// lines are inserted as text.
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
  function say(text) {
    if (live) live.textContent = text;
  }
  function typing() {
    var a = document.activeElement;
    return a && main && main.contains(a) && /^(INPUT|TEXTAREA|SELECT)$/.test(a.tagName);
  }

  var url = main && main.getAttribute("data-live");
  if (url) {
    var pending = null;
    var source = new EventSource(url, { withCredentials: false });
    var apply = function (html) {
      if (typing()) {
        pending = html;
        return;
      }
      pending = null;
      main.innerHTML = html;
      say("Live · updated " + new Date().toLocaleTimeString());
    };
    document.addEventListener("focusout", function () {
      setTimeout(function () {
        if (pending !== null && !typing()) apply(pending);
      }, 0);
    });
    source.addEventListener("open", function () {
      say("Live");
      document.body.setAttribute("data-live-state", "open");
    });
    source.addEventListener("main", function (e) {
      apply(JSON.parse(e.data));
    });
    source.addEventListener("status", function (e) {
      var s = JSON.parse(e.data);
      if (s !== "live") say(s);
    });
    source.addEventListener("end", function (e) {
      source.close();
      say("Not live: " + JSON.parse(e.data) + " (reload to try again)");
      document.body.setAttribute("data-live-state", "ended");
    });
    source.onerror = function () {
      say("Live updates interrupted; reconnecting…");
    };
  }

  var log = document.getElementById("log");
  var follow = log && log.getAttribute("data-follow");
  if (follow) {
    var state = document.getElementById("log-state");
    var max = parseInt(log.getAttribute("data-max-lines") || "5000", 10);
    var stick = true;
    log.addEventListener("scroll", function () {
      stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    });
    var show = function (t) {
      if (state) state.textContent = t;
    };
    var logs = new EventSource(follow);
    logs.addEventListener("open", function () {
      show("Following (the newest lines at the bottom).");
    });
    logs.addEventListener("lines", function (e) {
      var lines = JSON.parse(e.data).split("\n");
      var frag = document.createDocumentFragment();
      for (var i = 0; i < lines.length; i++) {
        var div = document.createElement("div");
        div.className = "line";
        div.textContent = lines[i];
        frag.appendChild(div);
      }
      log.appendChild(frag);
      while (log.childNodes.length > max) log.removeChild(log.firstChild);
      if (stick) log.scrollTop = log.scrollHeight;
    });
    logs.addEventListener("error", function (e) {
      // A named "error" event from the server carries the API server's refusal; the
      // EventSource's own error (no data) is a dropped connection.
      if (e.data) {
        var div = document.createElement("div");
        div.className = "error";
        div.id = "log-error";
        div.textContent = JSON.parse(e.data);
        log.parentNode.insertBefore(div, log);
      } else {
        // Reconnecting would repeat the tail: stop, and let the user follow again.
        logs.close();
        show("The log stream was interrupted: press Follow to go on.");
      }
    });
    logs.addEventListener("end", function (e) {
      logs.close();
      show("Not following: " + JSON.parse(e.data) + ".");
    });
  }
})();
