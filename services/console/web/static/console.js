// sdevents console: the live view's tail (server-sent events) and chart
// refresh. Plain JavaScript, no build step. Event data is put in the page as
// text (textContent), never as HTML; the chart is HTML rendered and escaped
// by the server.
(function () {
  "use strict";
  var MAX_TAIL = 200;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function tail(list) {
    var src = new EventSource(list.getAttribute("data-src"));
    // Every (re)connection starts with the latest events again.
    src.addEventListener("open", function () { list.textContent = ""; });
    src.addEventListener("msg", function (m) {
      var ev;
      try { ev = JSON.parse(m.data); } catch (e) { return; }
      var li = el("li", "event");
      var d = el("details");
      var s = el("summary");
      s.appendChild(el("span", "time", ev.time.replace("T", " ").replace(/\.\d+Z$/, "Z")));
      s.appendChild(document.createTextNode(" "));
      s.appendChild(el("span", "mono", ev.subject));
      s.appendChild(el("span", "small", " " + ev.size + " bytes"));
      d.appendChild(s);
      var t = el("table", "headers");
      (ev.headers || []).forEach(function (h) {
        var tr = el("tr");
        tr.appendChild(el("th", "", h.k));
        tr.appendChild(el("td", "mono", h.v));
        t.appendChild(tr);
      });
      d.appendChild(t);
      if (ev.body) d.appendChild(el("pre", "", ev.body));
      li.appendChild(d);
      list.insertBefore(li, list.firstChild);
      while (list.children.length > MAX_TAIL) list.removeChild(list.lastChild);
    });
  }

  function chart(box) {
    setInterval(function () {
      fetch(box.getAttribute("data-src"), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) { if (html !== null) box.innerHTML = html; })
        .catch(function () {});
    }, 5000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var list = document.getElementById("tail");
    if (list) tail(list);
    var box = document.getElementById("chart");
    if (box) chart(box);
  });
})();
