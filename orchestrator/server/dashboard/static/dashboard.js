// orchestrator dashboard: actions (fetch to /api/v1 with the CSRF header), the confirm
// dialog, live counts and the live event feed. Plain JavaScript, no dependency.
(function () {
  "use strict";
  var body = document.body;
  var base = body.getAttribute("data-base") || "";
  var csrf = body.getAttribute("data-csrf") || "";
  var POLL_MS = 2000;
  var FEED_MAX = 60;

  function api(method, path, payload) {
    var headers = { "Accept": "application/json" };
    if (csrf) headers["X-CSRF-Token"] = csrf;
    var init = { method: method, headers: headers, credentials: "same-origin" };
    if (payload !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(payload);
    }
    return fetch(base + "/api/v1" + path, init).then(function (response) {
      return response.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (!response.ok) {
          var message = data && data.error && data.error.message ? data.error.message : "HTTP " + response.status;
          var error = new Error(message);
          error.status = response.status;
          throw error;
        }
        return data;
      });
    });
  }

  var flashTimer = null;
  function flash(message, bad) {
    var box = document.querySelector("[data-testid=flash]");
    if (!box) return;
    box.textContent = message;
    box.className = bad ? "flash bad" : "flash";
    box.hidden = false;
    clearTimeout(flashTimer);
    flashTimer = setTimeout(function () { box.hidden = true; }, bad ? 8000 : 3000);
  }

  function confirmFirst(message) {
    var dialog = document.querySelector("[data-testid=confirm]");
    if (!dialog || typeof dialog.showModal !== "function") return Promise.resolve(window.confirm(message));
    dialog.querySelector("[data-testid=confirm-message]").textContent = message;
    return new Promise(function (resolve) {
      dialog.addEventListener("close", function done() {
        dialog.removeEventListener("close", done);
        resolve(dialog.returnValue === "yes");
      });
      dialog.returnValue = "";
      dialog.showModal();
    });
  }

  function enc(value) { return encodeURIComponent(value); }

  // Each action: (button) -> Promise of the message to show, or null when the user said no.
  var actions = {
    "retry": function (b) { return taskCall(b, "POST", "/retry", "Retried"); },
    "run-now": function (b) { return taskCall(b, "POST", "/run-now", "Made pending"); },
    "cancel": function (b) {
      return confirmFirst("Cancel task " + b.dataset.task + "?").then(function (yes) {
        return yes ? taskCall(b, "POST", "/cancel", "Cancelled") : null;
      });
    },
    "delete": function (b) {
      return confirmFirst("Delete task " + b.dataset.task + " and its record?").then(function (yes) {
        return yes ? taskCall(b, "DELETE", "", "Deleted") : null;
      });
    },
    "pause": function (b) {
      return api("POST", "/queues/" + enc(b.dataset.queue) + "/pause").then(function () { return "Paused " + b.dataset.queue; });
    },
    "resume": function (b) {
      return api("POST", "/queues/" + enc(b.dataset.queue) + "/resume").then(function () { return "Resumed " + b.dataset.queue; });
    },
    "schedule-pause": function (b) { return scheduleCall(b, "/pause", "Paused schedule"); },
    "schedule-resume": function (b) { return scheduleCall(b, "/resume", "Resumed schedule"); },
    "schedule-run-now": function (b) {
      return api("POST", "/schedules/" + enc(b.dataset.schedule) + "/run-now").then(function (done) {
        return "Enqueued task " + done.id + " of schedule " + b.dataset.schedule;
      });
    },
    "retry-failed": function (b) {
      var path = "/queues/" + enc(b.dataset.queue) + "/retry-failed";
      return api("POST", path, { dry_run: true }).then(function (counted) {
        if (!counted.count) return "No failed task to retry";
        return confirmFirst("Retry " + counted.count + " failed task" + (counted.count === 1 ? "" : "s") +
          " of queue " + b.dataset.queue + "?").then(function (yes) {
          if (!yes) return null;
          return api("POST", path, {}).then(function (done) { return "Retried " + done.count + " failed tasks"; });
        });
      });
    },
    "purge": function (b) {
      var path = "/queues/" + enc(b.dataset.queue) + "/purge";
      var state = b.dataset.state;
      return api("POST", path, { state: state, dry_run: true }).then(function (counted) {
        if (!counted.count) return "No " + state + " task to purge";
        return confirmFirst("Delete " + counted.count + " " + state + " task" + (counted.count === 1 ? "" : "s") +
          " of queue " + b.dataset.queue + " for good?").then(function (yes) {
          if (!yes) return null;
          return api("POST", path, { state: state }).then(function (done) { return "Purged " + done.count + " tasks"; });
        });
      });
    }
  };

  function scheduleCall(b, suffix, said) {
    return api("POST", "/schedules/" + enc(b.dataset.schedule) + suffix).then(function () { return said + " " + b.dataset.schedule; });
  }

  function taskCall(b, method, suffix, said) {
    var path = "/queues/" + enc(b.dataset.queue) + "/tasks/" + enc(b.dataset.task) + suffix;
    return api(method, path).then(function () { return said + " " + b.dataset.task; });
  }

  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target : null;
    var button = target && target.closest("button[data-action]");
    if (button) {
      var act = actions[button.dataset.action];
      if (!act) return;
      button.disabled = true;
      act(button).then(function (message) {
        button.disabled = false;
        if (message === null) return;
        flash(message, false);
        var after = button.dataset.after;
        setTimeout(function () { if (after) window.location.assign(after); else window.location.reload(); }, 400);
      }, function (error) {
        button.disabled = false;
        flash(error.message, true);
      });
      return;
    }
    var logout = target && target.closest("button[data-logout]");
    if (logout) {
      fetch(base + "/api/v1/session", { method: "DELETE", credentials: "same-origin" }).then(function () {
        window.location.assign(base + "/login");
      });
    }
  });

  // Log in: the token goes to the session route as JSON, which sets the HttpOnly cookie.
  var login = document.querySelector("form[data-login]");
  if (login) {
    login.addEventListener("submit", function (event) {
      event.preventDefault();
      var error = login.querySelector("[data-testid=login-error]");
      var token = login.querySelector("input[name=token]").value;
      fetch(base + "/api/v1/session", {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "Accept": "application/json" },
        body: JSON.stringify({ token: token })
      }).then(function (response) {
        if (response.ok) { window.location.assign(base + (login.dataset.next || "/")); return null; }
        return response.json().then(function (data) {
          error.textContent = data && data.error ? data.error.message : "log in refused (HTTP " + response.status + ")";
          error.hidden = false;
        });
      }).catch(function (e) { error.textContent = String(e.message || e); error.hidden = false; });
    });
  }

  // Live counts: every queue's counts and paused state, read from the API now and then.
  var polling = false;
  function refreshCounts() {
    if (polling || document.hidden) return;
    polling = true;
    api("GET", "/queues").then(function (list) {
      polling = false;
      (list.queues || []).forEach(function (q) {
        Object.keys(q.counts || {}).forEach(function (state) {
          var cell = document.querySelector('[data-testid="count-' + q.queue + "-" + state + '"]');
          if (cell && cell.textContent !== String(q.counts[state])) cell.textContent = String(q.counts[state]);
        });
        var badge = document.querySelector('[data-testid="paused-' + q.queue + '"]');
        if (badge) badge.hidden = !q.paused;
        var workers = document.querySelector('[data-testid="workers-' + q.queue + '"]');
        if (workers) workers.textContent = String(q.workers);
      });
    }, function (error) {
      polling = false;
      if (error.status === 401) window.location.assign(base + "/login?next=" + enc((window.location.pathname.slice(base.length) || "/") + window.location.search));
    });
  }
  if (body.dataset.poll) setInterval(refreshCounts, POLL_MS);

  // Live feed: server-sent events of every queue, newest on top.
  var feed = document.querySelector("[data-testid=feed]");
  if (feed && window.EventSource) {
    var status = document.querySelector("[data-testid=feed-status]");
    var source = new EventSource(base + "/api/v1/events?count=" + enc(feed.dataset.count || "30"));
    var soon = null;
    source.onopen = function () { if (status) status.textContent = "live"; };
    source.onerror = function () { if (status) status.textContent = "reconnecting…"; };
    source.onmessage = function (message) {
      var event;
      try { event = JSON.parse(message.data); } catch (e) { return; }
      var item = document.createElement("li");
      item.className = "ev-" + String(event.event || "").replace(/[^a-z_]/g, "");
      var time = document.createElement("time");
      time.textContent = String(event.time || "").slice(11, 19) + " ";
      item.appendChild(time);
      item.appendChild(document.createTextNode(event.queue + " · " + event.event + " "));
      if (event.task_id) {
        var link = document.createElement("a");
        link.href = base + "/queues/" + enc(event.queue) + "/tasks/" + enc(event.task_id);
        link.textContent = event.task_id;
        item.appendChild(link);
      }
      feed.insertBefore(item, feed.firstChild);
      while (feed.children.length > FEED_MAX) feed.removeChild(feed.lastChild);
      if (body.dataset.poll && !soon) soon = setTimeout(function () { soon = null; refreshCounts(); }, 300);
    };
    window.addEventListener("pagehide", function () { source.close(); });
  }
})();
