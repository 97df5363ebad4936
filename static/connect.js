// The connect page and the salon page's connection panel: WebSocket first (/marketplace/ws), polling
// /status and /qr when the socket fails. On the salon page (data-autostart="false") a login attempt starts
// only when the owner asks to relink; every frame is re-dispatched on the root as a "live" DOM event.
(function () {
  "use strict";
  var root = document.getElementById("connect");
  if (!root) return;
  var token = root.dataset.token;
  var companyId = Number(root.dataset.company);
  var qrLimit = Number(root.dataset.qrLimit) || 6;
  var autostart = root.dataset.autostart !== "false";
  var base = "/marketplace";

  var REASONS = {
    qr_timeout: "Время ожидания истекло: QR-код больше не действует.",
    logged_out: "Устройство отключено в WhatsApp. Подключите его заново.",
    forbidden: "WhatsApp запретил доступ для этого номера.",
    banned: "Номер заблокирован в WhatsApp.",
    temporary_ban: "Номер временно заблокирован в WhatsApp. Попробуйте позже.",
    replaced: "WhatsApp открыт на другом устройстве вместо этого.",
    reconnect_failed: "Не удалось восстановить соединение с WhatsApp.",
    gateway_unavailable: "Сервис WhatsApp временно недоступен.",
    stopped: "Сессия WhatsApp остановлена.",
    failed: "Не удалось подключить WhatsApp."
  };

  var $ = function (id) { return document.getElementById(id); };
  var ws = null;
  var socketReady = false;
  var pollTimer = null;
  var qrTimer = null;
  var pairingTimer = null;
  var connected = false;
  var qrCount = 0;

  function setState(name, text) {
    var el = $("state");
    el.dataset.state = name;
    el.textContent = text;
  }

  function showError(message) {
    var el = $("error");
    el.textContent = message || "";
    el.hidden = !message;
  }

  function show(section) {
    ["idle", "link", "expired", "success"].forEach(function (id) { if ($(id)) $(id).hidden = id !== section; });
  }

  function countdown(timerName, seconds, render, done) {
    var left = Math.max(0, Math.round(seconds));
    clearInterval(timerName === "qr" ? qrTimer : pairingTimer);
    var tick = function () {
      render(left);
      if (left <= 0) { clearInterval(handle); if (done) done(); return; }
      left -= 1;
    };
    var handle = setInterval(tick, 1000);
    if (timerName === "qr") qrTimer = handle; else pairingTimer = handle;
    tick();
  }

  function onQr(data) {
    if (connected || !data.qr) return;
    show("link");
    showError("");
    var img = $("qr-image");
    img.src = data.qr;
    img.hidden = false;
    img.classList.remove("stale");
    $("qr-placeholder").hidden = true;
    setState("waiting", "Ожидаем сканирования QR-кода");
    $("qr-progress").textContent = qrCount ? "· код " + Math.min(qrCount, qrLimit) + " из " + qrLimit : "";
    countdown("qr", data.expires_in, function (left) {
      $("qr-countdown").textContent = left > 0 ? "Код действует ещё " + left + " с" : "Обновляем код…";
    }, function () {
      img.classList.add("stale");
      if (!socketReady) fetchQr();
    });
  }

  function onPairing(data) {
    $("pairing-result").hidden = false;
    $("pairing-code").textContent = data.code;
    setState("waiting", "Введите код в WhatsApp на телефоне");
    countdown("pairing", data.expires_in, function (left) {
      $("pairing-countdown").textContent = left > 0 ? "Код действует ещё " + left + " с" : "Код истёк";
    });
  }

  function onConnected(phone) {
    connected = true;
    clearInterval(qrTimer);
    clearInterval(pairingTimer);
    stopPolling();
    $("connected-phone").textContent = phone || "";
    setState("connected", "WhatsApp подключен");
    showError("");
    show("success");
  }

  function onEnded(reason) {
    if (connected) return;
    clearInterval(qrTimer);
    var expired = reason === "qr_timeout";
    if (!autostart && !expired) {  // the salon page: unlinked, by the owner or by WhatsApp; offer to relink
      setState("idle", reason === "logged_out" ? "WhatsApp не подключен" : REASONS[reason] || REASONS.failed);
      show("idle");
      return;
    }
    setState(expired ? "expired" : "failed", expired ? "Время ожидания истекло" : "Подключение не удалось");
    $("expired-text").textContent = REASONS[reason] || REASONS.failed;
    show("expired");
  }

  function onStatus(data, initial) {
    qrCount = data.qr_count || qrCount;
    if (data.qr_limit) qrLimit = data.qr_limit;
    if (data.whatsapp_connected) { onConnected(data.whatsapp_phone); return; }
    if (initial && autostart) { requestQr(); return; }
    if (initial) {
      if (data.session_status === "WORKING") setState("connecting", "Отключаем WhatsApp…");
      else { setState("idle", "WhatsApp не подключен"); show("idle"); }
      return;
    }
    if (data.session_status === "FAILED" || (data.session_status === "STOPPED" && data.reason)) {
      onEnded(data.reason || "failed");
    } else if (data.session_status === "STARTING") {
      setState("connecting", "Подключаемся к WhatsApp…");
    }
  }

  function onDisconnected(data) {
    if (data.reason === "connection_lost") {
      setState("connecting", "Связь с WhatsApp потеряна, переподключаемся…");
      return;
    }
    connected = false;
    onEnded(data.reason);
  }

  function requestQr() {
    setState("connecting", "Подключаемся к WhatsApp…");
    show("link");
    if (socketReady) send("getQR", { companyId: companyId }); else fetchQr();
  }

  function send(event, data) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ event: event, data: data }));
  }

  function api(method, path, body) {
    var options = { method: method, headers: { "Accept": "application/json" } };
    if (body) { options.headers["Content-Type"] = "application/json"; options.body = JSON.stringify(body); }
    return fetch(base + path, options).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (json) {
        json.httpStatus = response.status;
        return json;
      });
    });
  }

  function fetchQr() {
    return api("GET", "/qr/" + encodeURIComponent(token)).then(function (body) {
      if (body.connected) onConnected(body.whatsapp_phone);
      else if (body.success && body.qr) onQr(body);
      else if (!body.success) showError(body.error);
    }).catch(function () { showError("Нет связи с сервером. Повторяем…"); });
  }

  function poll() {
    api("GET", "/status/" + companyId + "?token=" + encodeURIComponent(token)).then(function (body) {
      if (body.success && body.whatsapp_connected) onConnected(body.whatsapp_phone);
    }).catch(function () { /* the next poll retries */ });
  }

  function startPolling() {
    if (pollTimer || connected) return;
    fetchQr();
    pollTimer = setInterval(poll, 2000);
  }

  function stopPolling() {
    clearInterval(pollTimer);
    pollTimer = null;
  }

  function openSocket() {
    var scheme = location.protocol === "https:" ? "wss:" : "ws:";
    try {
      ws = new WebSocket(scheme + "//" + location.host + base + "/ws");
    } catch (e) {
      startPolling();
      return;
    }
    ws.onopen = function () { send("authenticate", { token: token, companyId: companyId }); };
    ws.onmessage = function (message) {
      var frame;
      try { frame = JSON.parse(message.data); } catch (e) { return; }
      var data = frame.data || {};
      switch (frame.event) {
        case "authenticated": socketReady = true; stopPolling(); break;
        case "status": onStatus(data, !root.dataset.started); root.dataset.started = "1"; break;
        case "qr": onQr(data); break;
        case "pairingCode": onPairing(data); break;
        case "whatsapp.connected": onConnected(data.phone); break;
        case "whatsapp.disconnected": onDisconnected(data); break;
        case "error": showError(data.message); break;
      }
      root.dispatchEvent(new CustomEvent("live", { detail: frame }));
    };
    ws.onclose = function () {
      socketReady = false;
      if (!connected && autostart) startPolling();
    };
  }

  $("tab-qr").addEventListener("click", function () { selectTab("qr"); });
  $("tab-phone").addEventListener("click", function () { selectTab("phone"); });
  function selectTab(name) {
    $("panel-qr").hidden = name !== "qr";
    $("panel-phone").hidden = name !== "phone";
    $("tab-qr").classList.toggle("active", name === "qr");
    $("tab-phone").classList.toggle("active", name === "phone");
    $("tab-qr").setAttribute("aria-selected", String(name === "qr"));
    $("tab-phone").setAttribute("aria-selected", String(name === "phone"));
  }

  $("pairing-request").addEventListener("click", function () {
    var button = this;
    button.disabled = true;
    showError("");
    api("POST", "/pairing-code/" + encodeURIComponent(token), { phone: $("phone").value }).then(function (body) {
      if (body.success) onPairing(body);
      else if (body.httpStatus === 409) poll();
      else showError(body.error);
    }).catch(function () { showError("Нет связи с сервером."); }).then(function () { button.disabled = false; });
  });

  function restart() {
    connected = false;
    $("qr-image").hidden = true;
    $("qr-placeholder").hidden = false;
    $("pairing-result").hidden = true;
    qrCount = 0;
    requestQr();
  }
  $("restart").addEventListener("click", restart);
  if ($("relink")) $("relink").addEventListener("click", restart);

  var simulate = $("simulate-scan");
  if (simulate) {
    simulate.addEventListener("click", function () {
      api("POST", "/simulator/scan/" + encodeURIComponent(token), { phone: $("phone").value || null })
        .then(function (body) {
          if (!body.success) showError(body.error);
          else if (!socketReady) poll();
        });
    });
  }

  if ("WebSocket" in window) openSocket(); else if (autostart) startPolling();
})();
