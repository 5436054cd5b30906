// The dashboard's only script (served from the package; the pages' CSP allows no inline script).
// - [data-live]: the page's live part, refreshed in place every data-interval seconds, when the tab
//   becomes visible again, and on a [data-refresh-now] click, from the same URL with ?fragment=1.
// - a[data-range] inside it: switch the chart's range without a full reload.
// - [data-copy]: copy the text of the element with that id.
// - form[data-confirm]: ask before submitting.
(function () {
  "use strict";

  function fragmentUrl(url) {
    return url + (url.indexOf("?") === -1 ? "?" : "&") + "fragment=1";
  }

  function refresh(live) {
    var url = live.getAttribute("data-live");
    live.setAttribute("aria-busy", "true");
    return fetch(fragmentUrl(url), { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (!response.ok || response.headers.get("X-Fragment") !== "1") {
          // Signed out, or the page is gone: let the browser show why.
          window.location.reload();
          return null;
        }
        return response.text();
      })
      .then(function (html) {
        if (html === null) { return; }
        // Keep what the reader opened or closed (details with a data-key) across the refresh.
        var opened = {};
        live.querySelectorAll("details[data-key]").forEach(function (d) { opened[d.getAttribute("data-key")] = d.open; });
        // Server-rendered and autoescaped, like the page itself.
        live.innerHTML = html;
        live.querySelectorAll("details[data-key]").forEach(function (d) {
          var key = d.getAttribute("data-key");
          if (Object.prototype.hasOwnProperty.call(opened, key)) { d.open = opened[key]; }
        });
        live.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () {
        live.setAttribute("data-refresh-failed", String(Date.now()));
      })
      .finally(function () { live.removeAttribute("aria-busy"); });
  }

  function copy(button) {
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source) { return; }
    var text = source.textContent;
    function done(ok) {
      button.textContent = ok ? "Copied" : "Select and copy";
      setTimeout(function () { button.textContent = "Copy"; }, 2000);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { done(true); }, function () { done(false); });
      return;
    }
    var range = document.createRange();
    range.selectNodeContents(source);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    done(ok);
  }

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (!(target instanceof Element)) { return; }
    var copyButton = target.closest("[data-copy]");
    if (copyButton) { copy(copyButton); return; }
    var live = document.getElementById("live");
    if (target.closest("[data-refresh-now]") && live) { refresh(live); return; }
    var rangeLink = target.closest("a[data-range]");
    if (rangeLink && live && !event.ctrlKey && !event.metaKey && !event.shiftKey) {
      event.preventDefault();
      var href = rangeLink.getAttribute("href");
      live.setAttribute("data-live", href);
      history.replaceState(null, "", href);
      refresh(live);
    }
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form instanceof HTMLFormElement && form.hasAttribute("data-confirm")) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    var live = document.getElementById("live");
    if (!live) { return; }
    var seconds = parseInt(live.getAttribute("data-interval") || "30", 10);
    if (seconds > 0) {
      setInterval(function () { if (!document.hidden) { refresh(live); } }, seconds * 1000);
    }
    document.addEventListener("visibilitychange", function () { if (!document.hidden) { refresh(live); } });
  });
})();
