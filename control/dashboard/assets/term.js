// pea-dashboard's terminal (served from the binary; no library): opens the pod's exec
// WebSocket (<div id=term data-exec=PATH data-csrf=TOKEN>), sends keys as stdin (channel 0)
// and the size as a resize (channel 4), and draws stdout (channels 1, 2) on a character grid
// that understands the VT100 subset a shell's line editor uses (cursor moves, erase, insert
// and delete characters, scrolling; colours and modes are ignored). The exit status
// (channel 3) and the dashboard's own messages (text frames) are shown under it.
// Everything drawn is text (textContent), never HTML.
(function () {
  "use strict";
  var el = document.getElementById("term");
  if (!el) return;
  var stateEl = document.getElementById("term-state");
  var rows = parseInt(el.getAttribute("data-rows") || "24", 10);
  var cols = parseInt(el.getAttribute("data-cols") || "100", 10);
  var grid = [];
  var cr = 0, cc = 0, saved = [0, 0];
  var top = 0, bottom = rows - 1; // scrolling region
  var decoder = new TextDecoder("utf-8");
  var encoder = new TextEncoder();
  var ws = null;
  function blank() {
    var r = [];
    for (var i = 0; i < cols; i++) r.push(" ");
    return r;
  }
  function reset() {
    grid = [];
    for (var i = 0; i < rows; i++) grid.push(blank());
    cr = 0; cc = 0; top = 0; bottom = rows - 1;
  }
  reset();
  function state(t) {
    if (stateEl) stateEl.textContent = t;
  }
  function clamp() {
    if (cr < 0) cr = 0;
    if (cr > rows - 1) cr = rows - 1;
    if (cc < 0) cc = 0;
    if (cc > cols - 1) cc = cols - 1;
  }
  function scrollUp() {
    grid.splice(top, 1);
    grid.splice(bottom, 0, blank());
  }
  function scrollDown() {
    grid.splice(bottom, 1);
    grid.splice(top, 0, blank());
  }
  function lineFeed() {
    if (cr === bottom) scrollUp();
    else if (cr < rows - 1) cr++;
  }
  var wrapNext = false;
  function put(ch) {
    if (wrapNext) {
      cc = 0;
      lineFeed();
      wrapNext = false;
    }
    grid[cr][cc] = ch;
    if (cc === cols - 1) wrapNext = true;
    else cc++;
  }
  function eraseLine(row, from, to) {
    for (var i = from; i <= to && i < cols; i++) grid[row][i] = " ";
  }
  function csi(params, final, priv) {
    var p = params.length ? params.split(";").map(function (x) { return parseInt(x, 10) || 0; }) : [];
    var n = p[0] || 1;
    wrapNext = false;
    switch (final) {
      case "A": cr -= n; break;
      case "B": cr += n; break;
      case "C": cc += n; break;
      case "D": cc -= n; break;
      case "E": cr += n; cc = 0; break;
      case "F": cr -= n; cc = 0; break;
      case "G": cc = n - 1; break;
      case "d": cr = n - 1; break;
      case "H": case "f": cr = (p[0] || 1) - 1; cc = (p[1] || 1) - 1; break;
      case "J": {
        var mode = p[0] || 0;
        if (mode === 0) { eraseLine(cr, cc, cols - 1); for (var r = cr + 1; r < rows; r++) grid[r] = blank(); }
        else if (mode === 1) { eraseLine(cr, 0, cc); for (var r2 = 0; r2 < cr; r2++) grid[r2] = blank(); }
        else { for (var r3 = 0; r3 < rows; r3++) grid[r3] = blank(); }
        break;
      }
      case "K": {
        var m = p[0] || 0;
        if (m === 0) eraseLine(cr, cc, cols - 1);
        else if (m === 1) eraseLine(cr, 0, cc);
        else eraseLine(cr, 0, cols - 1);
        break;
      }
      case "P": grid[cr].splice(cc, n); while (grid[cr].length < cols) grid[cr].push(" "); break;
      case "@": for (var i = 0; i < n; i++) grid[cr].splice(cc, 0, " "); grid[cr].length = cols; break;
      case "X": eraseLine(cr, cc, cc + n - 1); break;
      case "L": for (var j = 0; j < n; j++) { grid.splice(bottom, 1); grid.splice(cr, 0, blank()); } break;
      case "M": for (var k = 0; k < n; k++) { grid.splice(cr, 1); grid.splice(bottom, 0, blank()); } break;
      case "S": for (var s1 = 0; s1 < n; s1++) scrollUp(); break;
      case "T": for (var s2 = 0; s2 < n; s2++) scrollDown(); break;
      case "r": top = (p[0] || 1) - 1; bottom = (p[1] || rows) - 1;
        if (top < 0 || bottom > rows - 1 || top >= bottom) { top = 0; bottom = rows - 1; }
        cr = 0; cc = 0; break;
      case "s": saved = [cr, cc]; break;
      case "u": cr = saved[0]; cc = saved[1]; break;
      case "n":
        // Device status report: where the cursor is (shells ask before drawing a prompt).
        if (p[0] === 6 && !priv) send(0, "\x1b[" + (cr + 1) + ";" + (cc + 1) + "R");
        break;
      default: break; // m (colours), h/l (modes), and the rest: ignored
    }
    clamp();
  }
  // Parser state: 0 text, 1 after ESC, 2 in CSI, 3 in OSC (until BEL or ESC \), 4 one more char
  var st = 0, params = "", priv = false;
  function write(text) {
    for (var i = 0; i < text.length; i++) {
      var ch = text[i];
      var code = ch.charCodeAt(0);
      if (st === 0) {
        if (ch === "\x1b") { st = 1; }
        else if (ch === "\r") { cc = 0; wrapNext = false; }
        else if (ch === "\n" || ch === "\x0b" || ch === "\x0c") { lineFeed(); wrapNext = false; }
        else if (ch === "\b") { if (cc > 0) cc--; wrapNext = false; }
        else if (ch === "\t") { cc = Math.min(cols - 1, (Math.floor(cc / 8) + 1) * 8); }
        else if (code < 32 || code === 127) { /* other controls (BEL): ignored */ }
        else put(ch);
      } else if (st === 1) {
        if (ch === "[") { st = 2; params = ""; priv = false; }
        else if (ch === "]") { st = 3; }
        else if (ch === "(" || ch === ")" || ch === "#") { st = 4; }
        else {
          if (ch === "7") saved = [cr, cc];
          else if (ch === "8") { cr = saved[0]; cc = saved[1]; }
          else if (ch === "M") { if (cr === top) scrollDown(); else if (cr > 0) cr--; }
          else if (ch === "D") lineFeed();
          else if (ch === "E") { cc = 0; lineFeed(); }
          else if (ch === "c") reset();
          st = 0;
        }
      } else if (st === 2) {
        if (ch === "?" || ch === ">" || ch === "=") priv = true;
        else if ((ch >= "0" && ch <= "9") || ch === ";") { if (params.length < 32) params += ch; }
        else if (code >= 0x40 && code <= 0x7e) { csi(params, ch, priv); st = 0; }
        else if (code < 32) { /* controls inside CSI are ignored */ }
      } else if (st === 3) {
        if (ch === "\x07") st = 0;
        else if (ch === "\x1b") st = 4;
      } else {
        st = 0;
      }
    }
    draw();
  }
  var screen = document.createElement("pre");
  screen.className = "screen";
  el.appendChild(screen);
  var drawing = false;
  function draw() {
    if (drawing) return;
    drawing = true;
    requestAnimationFrame(function () {
      drawing = false;
      var frag = document.createDocumentFragment();
      for (var r = 0; r < rows; r++) {
        var line = document.createElement("div");
        line.className = "row";
        var text = grid[r].join("");
        if (r === cr) {
          line.appendChild(document.createTextNode(text.slice(0, cc)));
          var cur = document.createElement("span");
          cur.className = "cursor";
          cur.textContent = text[cc] || " ";
          line.appendChild(cur);
          line.appendChild(document.createTextNode(text.slice(cc + 1).replace(/\s+$/, "")));
        } else {
          line.textContent = text.replace(/\s+$/, "");
        }
        frag.appendChild(line);
      }
      screen.replaceChildren(frag);
    });
  }
  draw();
  function send(channel, data) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    var bytes = typeof data === "string" ? encoder.encode(data) : data;
    var frame = new Uint8Array(bytes.length + 1);
    frame[0] = channel;
    frame.set(bytes, 1);
    ws.send(frame);
  }
  function resize() {
    send(4, JSON.stringify({ Width: cols, Height: rows }));
  }
  var keys = {
    Enter: "\r", Backspace: "\x7f", Tab: "\t", Escape: "\x1b",
    ArrowUp: "\x1b[A", ArrowDown: "\x1b[B", ArrowRight: "\x1b[C", ArrowLeft: "\x1b[D",
    Home: "\x1b[H", End: "\x1b[F", Delete: "\x1b[3~", PageUp: "\x1b[5~", PageDown: "\x1b[6~",
  };
  el.addEventListener("keydown", function (e) {
    var out = null;
    if (e.ctrlKey && !e.altKey && e.key.length === 1) {
      var c = e.key.toUpperCase().charCodeAt(0);
      if (c >= 64 && c <= 95) out = String.fromCharCode(c - 64);
    } else if (keys[e.key]) {
      out = keys[e.key];
    } else if (e.key.length === 1 && !e.metaKey) {
      out = (e.altKey ? "\x1b" : "") + e.key;
    }
    if (out !== null) {
      e.preventDefault();
      send(0, out);
    }
  });
  el.addEventListener("paste", function (e) {
    var t = (e.clipboardData || window.clipboardData).getData("text");
    if (t) {
      e.preventDefault();
      send(0, t.replace(/\r?\n/g, "\r"));
    }
  });
  var scheme = location.protocol === "https:" ? "wss://" : "ws://";
  ws = new WebSocket(scheme + location.host + el.getAttribute("data-exec"), [
    "pea.terminal",
    "csrf." + el.getAttribute("data-csrf"),
  ]);
  ws.binaryType = "arraybuffer";
  ws.onopen = function () {
    state("Attaching…");
  };
  ws.onmessage = function (m) {
    if (typeof m.data === "string") {
      var note = JSON.parse(m.data);
      if (note.connected) {
        state("Connected: type in the terminal (click it first).");
        el.setAttribute("data-state", "connected");
        resize();
        el.focus();
      } else if (note.error) {
        el.setAttribute("data-state", "refused");
        state(note.error);
      } else if (note.closed) {
        if (el.getAttribute("data-state") === "connected") {
          el.setAttribute("data-state", "closed");
          state("Closed: " + note.closed + ".");
        }
      }
      return;
    }
    var b = new Uint8Array(m.data);
    if (b.length === 0) return;
    if (b[0] === 1 || b[0] === 2) {
      write(decoder.decode(b.subarray(1), { stream: true }));
    } else if (b[0] === 3) {
      var status = {};
      try { status = JSON.parse(decoder.decode(b.subarray(1))); } catch (err) { status = {}; }
      var exit = "0";
      if (status.status !== "Success") {
        var causes = (status.details && status.details.causes) || [];
        exit = "?";
        for (var i = 0; i < causes.length; i++) {
          if (causes[i].reason === "ExitCode") exit = causes[i].message;
        }
        if (exit === "?") exit = status.message || "unknown";
      }
      el.setAttribute("data-state", "exited");
      el.setAttribute("data-exit", exit);
      state("The command exited with status " + exit + ".");
    }
  };
  ws.onclose = function () {
    var s = el.getAttribute("data-state");
    if (!s || s === "connected") {
      el.setAttribute("data-state", "closed");
      state("The terminal connection closed.");
    }
  };
})();
