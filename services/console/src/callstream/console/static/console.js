// Live progress of a run: the scheduler's Server-Sent Events through the console. Without
// EventSource (or when the stream fails) the page reloads itself every 5 s instead.
(function () {
  var live = document.querySelector(".live[data-events]");
  if (!live) return;
  var started = Date.parse(live.getAttribute("data-started") || "");
  function set(name, value) {
    var el = live.querySelector('[data-field="' + name + '"]');
    if (el) el.textContent = value;
    return el;
  }
  function elapsed() {
    if (!isNaN(started)) set("elapsed", Math.max(0, Math.round((Date.now() - started) / 1000)) + " s");
  }
  elapsed();
  var tick = setInterval(elapsed, 1000);
  var words = { queued: ["queued", "busy"], running: ["running", "busy"], success: ["finished", "ok"],
    error: ["failed", "bad"], reauth_required: ["needs reconnect", "bad"], cancelled: ["cancelled", "off"] };
  function fallback() { setTimeout(function () { location.reload(); }, 5000); }
  if (!window.EventSource) { fallback(); return; }
  var source = new EventSource(live.getAttribute("data-events"));
  function show(event) {
    var d = JSON.parse(event.data);
    set("pages", d.pages);
    set("calls_published", d.calls_published);
    if (d.calls_stored !== undefined) {
      set("calls_stored", d.calls_stored);
      set("calls_new", d.calls_created + " · " + d.calls_updated);
    }
    var word = words[d.status] || [d.status, "off"];
    var badge = set("status", word[0]);
    if (badge) badge.className = "badge " + word[1];
    set("waiting", d.waiting_for ? "waiting for " + d.waiting_for : "");
    if (d.started_at) started = Date.parse(d.started_at);
    if (d.finished_at && d.started_at) {
      started = NaN;
      set("elapsed", Math.max(0, (Date.parse(d.finished_at) - Date.parse(d.started_at)) / 1000).toFixed(1) + " s");
    } else {
      elapsed();
    }
    if (d.error) { var e = set("error", d.error); if (e) e.hidden = false; }
    return d;
  }
  source.addEventListener("progress", show);
  source.addEventListener("finished", function (event) {
    show(event);
    source.close();
    clearInterval(tick);
    live.setAttribute("data-finished", "true");
    setTimeout(function () { location.reload(); }, 1200);  // the history and the buttons
  });
  source.onerror = function () {
    if (live.getAttribute("data-finished")) return;
    source.close();
    fallback();
  };
})();
