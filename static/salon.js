// The salon page's enhancements (it reads without them): the messages section follows live events, and
// each template editor previews the text as it is typed, with the problem shown inline.
(function () {
  "use strict";
  var root = document.getElementById("connect");
  if (!root || !window.fetch) return;
  var csrf = root.dataset.csrf;
  var MESSAGE_EVENTS = ["message.planned", "message.sent", "message.status", "message.reply"];

  function later(fn, ms) {
    var timer = null;
    return function () {
      var args = arguments;
      clearTimeout(timer);
      timer = setTimeout(function () { fn.apply(null, args); }, ms);
    };
  }

  var refresh = later(function () {
    fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (!html) return;
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("messages-live");
        var current = document.getElementById("messages-live");
        if (fresh && current) current.innerHTML = fresh.innerHTML;
      })
      .catch(function () { /* the next event tries again */ });
  }, 300);

  root.addEventListener("live", function (event) {
    if (MESSAGE_EVENTS.indexOf(event.detail.event) >= 0) refresh();
  });

  function preview(form) {
    var kind = form.dataset.kind;
    var text = form.querySelector("textarea");
    var error = document.getElementById("template-error-" + kind);
    var shown = document.getElementById("preview-" + kind);
    fetch("/marketplace/salon/preview", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ kind: kind, template: text.value })
    }).then(function (response) {
      return response.json().then(function (body) { return { ok: response.ok, body: body }; });
    }).then(function (answer) {
      if (answer.ok) {
        shown.textContent = answer.body.text;
        error.hidden = true;
        error.textContent = "";
        text.removeAttribute("aria-invalid");
      } else {
        error.textContent = (answer.body.errors && answer.body.errors.template) || answer.body.error || "Ошибка";
        error.hidden = false;
        text.setAttribute("aria-invalid", "true");
      }
    }).catch(function () { /* offline: the saved form still validates on the server */ });
  }

  Array.prototype.forEach.call(document.querySelectorAll(".template-form"), function (form) {
    var typed = later(preview, 300);
    form.querySelector("textarea").addEventListener("input", function () { typed(form); });
  });
})();
