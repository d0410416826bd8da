// ragd console: plain JavaScript over the JSON API. Untrusted text (documents, answers, names)
// only ever goes through textContent / setAttribute, never innerHTML.
"use strict";
(function () {
  var CRED = "ragd.credential";
  var SVGNS = "http://www.w3.org/2000/svg";

  // --- small DOM helpers ------------------------------------------------------------------
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }
  function svg(tag, attrs, children) {
    var node = document.createElementNS(SVGNS, tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }
  function setAttrs(node, attrs) {
    Object.keys(attrs || {}).forEach(function (k) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false) return;
      if (k === "text") node.textContent = String(v);
      else if (k.indexOf("on") === 0) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    });
  }
  function append(node, children) {
    (Array.isArray(children) ? children : [children]).forEach(function (c) {
      if (c === null || c === undefined || c === false) return;
      node.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    });
  }
  function $(id) { return document.getElementById(id); }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function fmt(v, digits) {
    if (v === null || v === undefined) return "–";
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(digits || 3);
    return String(v);
  }
  function when(ts) { return ts ? new Date(ts).toLocaleString() : "–"; }
  function notice(message, ok) {
    var n = $("notice");
    n.textContent = message;
    n.className = ok ? "notice ok" : "notice";
    n.hidden = !message;
  }

  // --- credential and API -----------------------------------------------------------------
  function credential() {
    try { return JSON.parse(sessionStorage.getItem(CRED) || "null"); } catch (e) { return null; }
  }
  function signOut(reason) {
    sessionStorage.removeItem(CRED);
    location.assign("/ui/" + (reason ? "#" + reason : ""));
  }
  function ApiError(status, message) { this.status = status; this.message = message; }
  function errorMessage(status, body) {
    if (body && body.error && body.error.message) return body.error.message;
    if (body && body.detail) return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    return "request failed (HTTP " + status + ")";
  }
  function request(method, path, body, raw) {
    var cred = credential();
    var headers = {};
    if (cred) headers.Authorization = "Bearer " + cred.value;
    var init = { method: method, headers: headers, cache: "no-store" };
    if (body instanceof FormData) init.body = body;
    else if (body !== undefined) { headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
    return fetch(path, init).then(function (res) {
      if (res.status === 401 && cred) { signOut("expired"); throw new ApiError(401, "signed out"); }
      if (raw && res.ok) return res;
      if (res.status === 204) return null;
      return res.json().catch(function () { return null; }).then(function (data) {
        if (!res.ok) throw new ApiError(res.status, errorMessage(res.status, data));
        return data;
      });
    });
  }
  function fail(err) { notice(err && err.message ? err.message : String(err)); }

  // --- charts (inline SVG built with DOM calls: no style attributes, CSP-safe) ---------------
  var PALETTE = ["#0b57d0", "#b3261e", "#0d652d", "#8a4f00", "#6a1b9a", "#00838f"];
  function barChart(target, title, bars) {
    // bars: [{label, value, low, high}] ; values may be negative (deltas).
    clear(target);
    if (!bars.length) return;
    var w = 640, rowH = 26, left = 190, top = 24, h = top + rowH * bars.length + 24, pad = 70;
    var vals = [];
    bars.forEach(function (b) { [b.value, b.low, b.high].forEach(function (v) { if (typeof v === "number") vals.push(v); }); });
    var lo = Math.min(0, Math.min.apply(null, vals)), hi = Math.max(0, Math.max.apply(null, vals));
    if (hi === lo) hi = lo + 1;
    var x = function (v) { return left + (w - left - pad) * (v - lo) / (hi - lo); };
    var root = svg("svg", { viewBox: "0 0 " + w + " " + h, role: "img", "aria-label": title });
    root.appendChild(svg("title", { text: title }));
    root.appendChild(svg("line", { x1: x(0), x2: x(0), y1: top - 4, y2: h - 20, stroke: "#5f6368" }));
    bars.forEach(function (b, i) {
      var y = top + i * rowH;
      var v = typeof b.value === "number" ? b.value : 0;
      root.appendChild(svg("text", { x: left - 6, y: y + 16, "text-anchor": "end", text: b.label.slice(0, 28) }));
      root.appendChild(svg("rect", { x: Math.min(x(0), x(v)), y: y + 4, width: Math.max(1, Math.abs(x(v) - x(0))), height: rowH - 8, fill: b.color || PALETTE[0] }));
      if (typeof b.low === "number" && typeof b.high === "number") {
        root.appendChild(svg("line", { x1: x(b.low), x2: x(b.high), y1: y + rowH / 2, y2: y + rowH / 2, stroke: "#202124", "stroke-width": 2 }));
      }
      root.appendChild(svg("text", { x: Math.max(x(0), x(v)) + 4, y: y + 16, text: fmt(b.value) }));
    });
    root.appendChild(svg("text", { x: left, y: h - 4, text: fmt(lo, 2) }));
    root.appendChild(svg("text", { x: w - pad, y: h - 4, "text-anchor": "end", text: fmt(hi, 2) }));
    target.appendChild(root);
    target.appendChild(el("figcaption", { class: "muted", text: title }));
  }
  function lineChart(target, title, series, threshold) {
    // series: {name: [{t: Date, v: number, alarm: bool}]}; y in [0, 1] (p-values).
    clear(target);
    var names = Object.keys(series);
    if (!names.length) { target.appendChild(el("p", { class: "muted", text: "No drift checks yet." })); return; }
    var w = 640, h = 260, left = 44, right = 150, top = 12, bottom = 28;
    var ts = [];
    names.forEach(function (n) { series[n].forEach(function (p) { ts.push(p.t.getTime()); }); });
    var t0 = Math.min.apply(null, ts), t1 = Math.max.apply(null, ts);
    if (t1 === t0) t1 = t0 + 1;
    var x = function (t) { return left + (w - left - right) * (t - t0) / (t1 - t0); };
    var y = function (v) { return top + (h - top - bottom) * (1 - Math.max(0, Math.min(1, v))); };
    var root = svg("svg", { viewBox: "0 0 " + w + " " + h, role: "img", "aria-label": title });
    root.appendChild(svg("title", { text: title }));
    [0, 0.5, 1].forEach(function (v) {
      root.appendChild(svg("line", { x1: left, x2: w - right, y1: y(v), y2: y(v), stroke: "#dadce0" }));
      root.appendChild(svg("text", { x: left - 4, y: y(v) + 4, "text-anchor": "end", text: String(v) }));
    });
    if (typeof threshold === "number") {
      root.appendChild(svg("line", { x1: left, x2: w - right, y1: y(threshold), y2: y(threshold), stroke: "#b3261e", "stroke-dasharray": "4 3" }));
      root.appendChild(svg("text", { x: w - right + 4, y: y(threshold) + 4, text: "alpha " + threshold }));
    }
    names.forEach(function (n, i) {
      var color = PALETTE[i % PALETTE.length];
      var pts = series[n].map(function (p) { return x(p.t.getTime()).toFixed(1) + "," + y(p.v).toFixed(1); });
      root.appendChild(svg("polyline", { points: pts.join(" "), fill: "none", stroke: color, "stroke-width": 2 }));
      series[n].forEach(function (p) {
        if (p.alarm) root.appendChild(svg("circle", { cx: x(p.t.getTime()), cy: y(p.v), r: 4, fill: "#b3261e" }));
      });
      root.appendChild(svg("rect", { x: w - right + 4, y: top + 20 + i * 18, width: 12, height: 4, fill: color }));
      root.appendChild(svg("text", { x: w - right + 20, y: top + 26 + i * 18, text: n.slice(0, 20) }));
    });
    root.appendChild(svg("text", { x: left, y: h - 6, text: new Date(t0).toLocaleString() }));
    root.appendChild(svg("text", { x: w - right, y: h - 6, "text-anchor": "end", text: new Date(t1).toLocaleString() }));
    target.appendChild(root);
    target.appendChild(el("figcaption", { class: "muted", text: title }));
  }

  // --- pages ----------------------------------------------------------------------------------
  var pages = {};

  pages.signin = function () {
    if (location.hash === "#expired") notice("Your session ended or the credential was rejected; please sign in again.");
    function finish(cred) {
      sessionStorage.setItem(CRED, JSON.stringify(cred));
      return request("GET", "/v1/auth/whoami").then(function () { location.assign("/ui/collections"); });
    }
    function guard(promise, form) {
      var button = form.querySelector("button");
      button.disabled = true;
      promise.catch(function (err) {
        sessionStorage.removeItem(CRED);
        notice(err.status === 401 || err.status === 422 ? "Sign-in failed: wrong or expired credentials." : err.message);
      }).then(function () { button.disabled = false; });
    }
    $("key-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var key = $("api-key").value.trim();
      $("api-key").value = "";
      guard(fetch("/v1/auth/whoami", { headers: { Authorization: "Bearer " + key }, cache: "no-store" }).then(function (res) {
        if (!res.ok) throw new ApiError(res.status, "rejected");
        return finish({ kind: "key", value: key });
      }), ev.target);
    });
    $("password-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      sessionStorage.removeItem(CRED);
      var body = { tenant: $("tenant").value.trim(), username: $("username").value.trim(), password: $("password").value };
      $("password").value = "";
      guard(request("POST", "/v1/auth/token", body).then(function (tok) {
        return finish({ kind: "jwt", value: tok.access_token, expires: Date.now() + tok.expires_in * 1000 });
      }), ev.target);
    });
  };

  function collectionsInto(select, writableOnly) {
    return request("GET", "/v1/collections").then(function (cols) {
      clear(select);
      cols.filter(function (c) { return !writableOnly || c.permission !== "read"; }).forEach(function (c) {
        select.appendChild(el("option", { value: c.name, text: c.name }));
      });
      return cols;
    });
  }

  pages.collections = function () {
    var current = null;
    function load() {
      request("GET", "/v1/collections").then(function (cols) {
        var body = $("collections").tBodies[0];
        clear(body);
        if (!cols.length) body.appendChild(el("tr", {}, el("td", { colspan: 5, class: "muted", text: "No collections yet." })));
        cols.forEach(function (c) {
          var action = c.permission === "admin"
            ? el("button", { type: "button", class: "secondary", text: "Grants", "aria-label": "Grants of " + c.name, onclick: function () { showGrants(c.name); } })
            : null;
          body.appendChild(el("tr", {}, [el("td", { text: c.name }), el("td", { text: c.description }),
            el("td", { text: c.permission }), el("td", { text: when(c.created_at) }), el("td", {}, action)]));
        });
      }).catch(fail);
    }
    function showGrants(name) {
      current = name;
      $("grants").hidden = false;
      $("grants-name").textContent = name;
      request("GET", "/v1/collections/" + encodeURIComponent(name) + "/grants").then(function (grants) {
        var body = $("grants-table").tBodies[0];
        clear(body);
        grants.forEach(function (g) {
          body.appendChild(el("tr", {}, [el("td", { text: g.subject_type }), el("td", { text: g.subject }), el("td", { text: g.permission }),
            el("td", {}, el("button", { type: "button", class: "danger", text: "Remove", "aria-label": "Remove grant for " + g.subject, onclick: function () {
              request("DELETE", "/v1/collections/" + encodeURIComponent(name) + "/grants/" + encodeURIComponent(g.id)).then(function () { showGrants(name); }).catch(fail);
            } }))]));
        });
      }).catch(fail);
    }
    $("create-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      request("POST", "/v1/collections", { name: $("c-name").value.trim(), description: $("c-desc").value })
        .then(function (c) { notice("Created " + c.name + ".", true); ev.target.reset(); load(); }).catch(fail);
    });
    $("grant-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      request("PUT", "/v1/collections/" + encodeURIComponent(current) + "/grants",
        { subject_type: $("g-type").value, subject: $("g-subject").value.trim(), permission: $("g-perm").value })
        .then(function () { $("g-subject").value = ""; showGrants(current); }).catch(fail);
    });
    load();
  };

  pages.upload = function () {
    var jobs = {}; // job id -> row state
    var timer = null;
    var select = $("u-collection");
    function coll() { return select.value; }
    function docsLoad() {
      if (!coll()) return;
      request("GET", "/v1/collections/" + encodeURIComponent(coll()) + "/documents?limit=200").then(function (page) {
        var body = $("documents").tBodies[0];
        clear(body);
        page.items.forEach(function (d) {
          body.appendChild(el("tr", {}, [el("td", { text: d.name }), el("td", { class: "status-" + d.status, text: d.status }),
            el("td", { class: "num", text: d.current_version }), el("td", { class: "num", text: d.chunk_count }),
            el("td", { class: "error", text: d.error || "" }),
            el("td", {}, el("button", { type: "button", class: "danger", text: "Delete", "aria-label": "Delete " + d.name, onclick: function () { removeDoc(d.id, d.name); } }))]));
        });
      }).catch(fail);
    }
    function removeDoc(id, name) {
      if (!confirm("Delete " + name + "?")) return;
      request("DELETE", "/v1/documents/" + encodeURIComponent(id)).then(function () { notice("Deleted " + name + ".", true); docsLoad(); }).catch(fail);
    }
    function renderJob(state) {
      var j = state.job || {};
      var row = state.row;
      clear(row);
      var status = j.status || state.status;
      var progress = j.progress_total ? el("progress", { max: j.progress_total, value: j.progress_done, "aria-label": "Progress of " + state.filename }) : null;
      var actions = [];
      if (status === "failed" && state.id) actions.push(el("button", { type: "button", class: "secondary", text: "Retry", "aria-label": "Retry " + state.filename, onclick: function () {
        request("POST", "/v1/jobs/" + encodeURIComponent(state.id) + "/retry").then(function (job) { state.job = job; renderJob(state); poll(); }).catch(fail);
      } }));
      if (j.document_id || state.documentId) actions.push(el("button", { type: "button", class: "danger", text: "Delete", "aria-label": "Delete " + state.filename, onclick: function () {
        removeDoc(j.document_id || state.documentId, state.filename);
      } }));
      append(row, [el("td", { text: state.filename }), el("td", { class: "status-" + status, text: status }),
        el("td", { text: j.step || "" }), el("td", {}, [progress, j.progress_total ? " " + j.progress_done + "/" + j.progress_total : ""]),
        el("td", { class: "error", text: j.error || state.error || "" }), el("td", {}, actions)]);
    }
    function poll() {
      if (timer) return;
      timer = setInterval(function () {
        var active = Object.keys(jobs).filter(function (id) {
          var s = jobs[id].job && jobs[id].job.status;
          return !s || s === "queued" || s === "running";
        });
        if (!active.length) { clearInterval(timer); timer = null; docsLoad(); return; }
        active.forEach(function (id) {
          request("GET", "/v1/jobs/" + encodeURIComponent(id)).then(function (job) { jobs[id].job = job; renderJob(jobs[id]); }).catch(fail);
        });
      }, 1000);
    }
    function upload(files) {
      if (!files.length) return;
      if (!coll()) { notice("Create a collection you can write to first."); return; }
      var form = new FormData();
      Array.prototype.forEach.call(files, function (f) { form.append("files", f, f.name); });
      notice("Uploading " + files.length + " file(s)…", true);
      request("POST", "/v1/collections/" + encodeURIComponent(coll()) + "/documents", form).then(function (res) {
        notice("");
        res.files.forEach(function (f) { addRow(f); });
        poll();
      }).catch(function (err) {
        fail(err);
        Array.prototype.forEach.call(files, function (f) { addRow({ filename: f.name, status: "rejected", error: { message: err.message } }); });
      });
    }
    function addRow(f) {
      var state = { id: f.job_id, filename: f.filename, status: f.status, documentId: f.document_id,
        error: f.error ? (f.error.message || JSON.stringify(f.error)) : "", row: el("tr") };
      $("jobs").tBodies[0].insertBefore(state.row, $("jobs").tBodies[0].firstChild);
      if (f.job_id) jobs[f.job_id] = state;
      renderJob(state);
    }
    var drop = $("drop"), input = $("u-files");
    drop.addEventListener("click", function () { input.click(); });
    drop.addEventListener("keydown", function (ev) { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); input.click(); } });
    drop.addEventListener("dragover", function (ev) { ev.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", function () { drop.classList.remove("over"); });
    drop.addEventListener("drop", function (ev) { ev.preventDefault(); drop.classList.remove("over"); upload(ev.dataTransfer.files); });
    input.addEventListener("change", function () { upload(input.files); input.value = ""; });
    select.addEventListener("change", docsLoad);
    collectionsInto(select, true).then(docsLoad).catch(fail);
  };

  pages.chat = function () {
    var sessionId = null;
    collectionsInto($("c-collections"), false).catch(fail);
    function openPassage(c) {
      $("passage-title").textContent = "[" + c.number + "] " + (c.title || c.document_id);
      var meta = ["document " + c.document_id.slice(0, 12) + " v" + c.version];
      if (c.page !== null && c.page !== undefined) meta.push("page " + c.page);
      if (c.section) meta.push("section " + c.section);
      meta.push("passage " + c.chunk_index);
      $("passage-meta").textContent = meta.join(" · ");
      $("passage-text").textContent = c.text || c.quote;
      $("passage").showModal();
    }
    function renderAnswer(node, text, citations) {
      clear(node);
      var byNumber = {};
      (citations || []).forEach(function (c) { byNumber[c.number] = c; });
      text.split(/(\[\d+\])/).forEach(function (part) {
        var m = /^\[(\d+)\]$/.exec(part);
        if (m && byNumber[m[1]]) {
          var c = byNumber[m[1]];
          node.appendChild(el("button", { type: "button", class: "cite", text: m[1], "aria-label": "Citation " + m[1] + ": " + (c.title || ""), onclick: function () { openPassage(c); } }));
        } else node.appendChild(document.createTextNode(part));
      });
    }
    function renderFinal(turn, answerNode, final) {
      renderAnswer(answerNode, final.answer, final.citations);
      if (final.citations && final.citations.length) {
        var list = el("ol", { class: "footnotes", "aria-label": "Sources" });
        final.citations.forEach(function (c) {
          var where = [c.title || c.document_id];
          if (c.page !== null && c.page !== undefined) where.push("p. " + c.page);
          if (c.section) where.push(c.section);
          list.appendChild(el("li", { value: c.number }, el("button", { type: "button", text: where.join(", "), onclick: function () { openPassage(c); } })));
        });
        turn.appendChild(list);
      }
      var acted = (final.guard_decisions || []).filter(function (d) { return d.action && d.action !== "allow"; });
      if (acted.length || final.blocked) {
        var box = el("div", { class: "guard", role: "note" }, el("strong", { text: "Guardrails acted: " }));
        acted.forEach(function (d, i) { append(box, (i ? "; " : "") + d.guard + " " + d.action + (d.reason ? " (" + d.reason + ")" : "")); });
        if (!acted.length) append(box, "the request was blocked");
        turn.appendChild(box);
      }
      if (final.abstained) turn.appendChild(el("p", { class: "muted", text: "The assistant abstained: the sources did not answer this." }));
      if (final.answer_kind === "extractive") turn.appendChild(el("p", { class: "muted", text: "Quoted from the sources: the model's own answer was not supported by them." }));
      else if (final.answer_kind === "extractive_fallback") turn.appendChild(el("p", { class: "muted", text: "Quoted from the sources: no language model was available." }));
      if (final.message_id) turn.appendChild(feedback(final.message_id));
    }
    function feedback(messageId) {
      var status = el("span", { class: "muted", role: "status" });
      var buttons = [];
      function rate(rating) {
        request("POST", "/v1/feedback", { message_id: messageId, rating: rating }).then(function () {
          buttons.forEach(function (b) { b.setAttribute("aria-pressed", String(b.dataset.rating === rating)); });
          status.textContent = "Thanks for the feedback.";
        }).catch(fail);
      }
      buttons.push(el("button", { type: "button", class: "secondary", "data-rating": "up", "aria-pressed": "false", "aria-label": "Good answer", text: "▲ Yes", onclick: function () { rate("up"); } }));
      buttons.push(el("button", { type: "button", class: "secondary", "data-rating": "down", "aria-pressed": "false", "aria-label": "Bad answer", text: "▼ No", onclick: function () { rate("down"); } }));
      return el("div", { class: "feedback" }, [el("span", { text: "Was this helpful?" })].concat(buttons, [status]));
    }
    function ask(message) {
      var conv = $("conversation");
      conv.appendChild(el("div", { class: "turn user" }, el("p", { text: message })));
      var answerNode = el("div", { class: "answer", "aria-busy": "true" });
      var turn = el("div", { class: "turn" }, answerNode);
      conv.appendChild(turn);
      var chosen = Array.prototype.filter.call($("c-collections").options, function (o) { return o.selected; }).map(function (o) { return o.value; });
      var body = { message: message, stream: true };
      if (sessionId) body.session_id = sessionId;
      if (chosen.length) body.collections = chosen;
      var cred = credential();
      $("send").disabled = true;
      var text = "", gotFinal = false;
      return fetch("/v1/chat", { method: "POST", cache: "no-store", headers: { "Content-Type": "application/json", Accept: "text/event-stream", Authorization: "Bearer " + (cred ? cred.value : "") }, body: JSON.stringify(body) })
        .then(function (res) {
          if (res.status === 401) { signOut("expired"); return; }
          if (!res.ok) return res.json().catch(function () { return null; }).then(function (d) { throw new ApiError(res.status, errorMessage(res.status, d)); });
          var reader = res.body.getReader(), decoder = new TextDecoder(), buffer = "";
          function handle(block) {
            var event = "message", data = "";
            block.split("\n").forEach(function (line) {
              if (line.indexOf("event:") === 0) event = line.slice(6).trim();
              else if (line.indexOf("data:") === 0) data += line.slice(5).trim();
            });
            if (!data) return;
            var payload = JSON.parse(data);
            if (event === "token") { text += payload.text; answerNode.textContent = text; }
            else if (event === "reset") { text = ""; answerNode.textContent = ""; }
            else if (event === "final") { gotFinal = true; sessionId = payload.session_id; renderFinal(turn, answerNode, payload); }
            else if (event === "error") throw new ApiError(0, errorMessage(0, payload));
          }
          function pump() {
            return reader.read().then(function (chunk) {
              if (chunk.done) return;
              buffer += decoder.decode(chunk.value, { stream: true });
              var parts = buffer.split("\n\n");
              buffer = parts.pop();
              parts.forEach(handle);
              return pump();
            });
          }
          return pump().then(function () {
            if (!gotFinal) throw new ApiError(0, "The answer stream ended early (was the server restarted?). Please ask again.");
          });
        })
        .catch(function (err) {
          turn.appendChild(el("p", { class: "alarm", role: "alert", text: err && err.message ? err.message : "The answer stream broke off." }));
        })
        .then(function () { answerNode.removeAttribute("aria-busy"); $("send").disabled = false; });
    }
    $("chat-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var message = $("message").value.trim();
      if (!message) return;
      $("message").value = "";
      ask(message);
    });
    $("message").addEventListener("keydown", function (ev) {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); $("chat-form").requestSubmit(); }
    });
    $("new-session").addEventListener("click", function () { sessionId = null; clear($("conversation")); $("message").focus(); });
  };

  pages.evals = function () {
    var runs = [];
    function numeric(metrics) {
      return Object.keys(metrics).filter(function (k) { return typeof metrics[k] === "number"; });
    }
    function showRun(id) {
      request("GET", "/v1/evals/" + encodeURIComponent(id) + "?items=false").then(function (run) {
        $("run").hidden = false;
        $("run-id").textContent = run.id;
        var body = $("run-metrics").tBodies[0];
        clear(body);
        var names = numeric(run.metrics);
        Object.keys(run.metrics).forEach(function (k) {
          body.appendChild(el("tr", {}, [el("td", { text: k }), el("td", { class: "num", text: fmt(run.metrics[k], 4) })]));
        });
        barChart($("run-chart"), "Metrics of run " + run.id.slice(0, 8) + " (" + run.kind + ")",
          names.filter(function (k) { return !/latency|_ms$|_s$|^n$|^n_/.test(k); }).map(function (k) { return { label: k, value: run.metrics[k] }; }));
        $("run-config").textContent = JSON.stringify(run.config, null, 2);
        $("download-report").onclick = function () { download([run.id]); };
        $("run").scrollIntoView();
      }).catch(fail);
    }
    function download(ids) {
      request("GET", "/ui/api/evals/report?runs=" + ids.map(encodeURIComponent).join(","), undefined, true)
        .then(function (res) { return res.blob(); })
        .then(function (blob) {
          var url = URL.createObjectURL(blob);
          var a = el("a", { href: url, download: "ragd-eval-" + ids.join("-").slice(0, 40) + ".html" });
          document.body.appendChild(a);
          a.click();
          a.remove();
          setTimeout(function () { URL.revokeObjectURL(url); }, 10000);
          notice("The report was downloaded; open it from your downloads.", true);
        }).catch(fail);
    }
    request("GET", "/v1/evals?limit=200").then(function (list) {
      runs = list;
      var body = $("runs").tBodies[0];
      clear(body);
      if (!list.length) body.appendChild(el("tr", {}, el("td", { colspan: 5, class: "muted", text: "No eval runs stored yet (ragd eval ... records them)." })));
      list.forEach(function (r) {
        var summary = numeric(r.metrics).slice(0, 3).map(function (k) { return k + " " + fmt(r.metrics[k]); }).join(", ");
        body.appendChild(el("tr", {}, [el("td", {}, el("button", { type: "button", class: "secondary", text: r.id.slice(0, 12), "aria-label": "Report of run " + r.id.slice(0, 12), onclick: function () { showRun(r.id); } })),
          el("td", { text: r.kind }), el("td", { text: when(r.created_at) }), el("td", { class: "num", text: r.n_items }), el("td", { text: summary })]));
        ["cmp-a", "cmp-b"].forEach(function (s) { $(s).appendChild(el("option", { value: r.id, text: r.id.slice(0, 12) + " " + r.kind + " " + when(r.created_at) })); });
      });
      if (list.length > 1) $("cmp-b").selectedIndex = 1;
    }).catch(fail);
    $("compare-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var a = $("cmp-a").value, b = $("cmp-b").value;
      request("GET", "/v1/evals/" + encodeURIComponent(a) + "/compare/" + encodeURIComponent(b)).then(function (cmp) {
        var table = $("cmp-table"), body = table.tBodies[0];
        table.hidden = false;
        clear(body);
        cmp.deltas.forEach(function (d) {
          var ci = d.ci_low === null ? "–" : "[" + fmt(d.ci_low, 4) + ", " + fmt(d.ci_high, 4) + "]";
          body.appendChild(el("tr", {}, [el("td", { text: d.metric + (d.lower_is_better ? " (lower is better)" : "") }), el("td", { class: "num", text: fmt(d.a, 4) }),
            el("td", { class: "num", text: fmt(d.b, 4) }), el("td", { class: "num", text: fmt(d.delta, 4) }), el("td", { class: "num", text: ci }),
            el("td", { class: "num", text: fmt(d.p_value, 3) }), el("td", { class: "verdict-" + d.verdict, text: d.verdict })]));
        });
        barChart($("cmp-chart"), "B − A per metric with " + Math.round(cmp.confidence * 100) + "% intervals",
          cmp.deltas.filter(function (d) { return typeof d.delta === "number"; }).map(function (d) {
            return { label: d.metric, value: d.delta, low: d.ci_low, high: d.ci_high, color: d.verdict === "worse" ? PALETTE[1] : d.verdict === "better" ? PALETTE[2] : PALETTE[0] };
          }));
      }).catch(fail);
    });
  };

  pages.monitoring = function () {
    function drift(refresh) {
      request("GET", "/v1/monitoring/drift" + (refresh ? "?refresh=true" : "")).then(function (st) {
        $("drift-summary").textContent = st.turns + " turns recorded; reference window of " + st.reference_size + " turns against the latest " + st.window_size + "; alpha " + st.alpha + ".";
        var alerts = $("alerts");
        clear(alerts);
        var alarming = st.detectors.filter(function (d) { return d.alarm; });
        alerts.appendChild(alarming.length
          ? el("p", { class: "alarm", text: "Drift alarm: " + alarming.map(function (d) { return d.detector; }).join(", ") })
          : el("p", { class: "muted", text: "No drift alarm." }));
        var body = $("detectors").tBodies[0];
        clear(body);
        if (!st.detectors.length) body.appendChild(el("tr", {}, el("td", { colspan: 6, class: "muted", text: "No detector has run yet (it needs enough recorded turns)." })));
        st.detectors.forEach(function (d) {
          body.appendChild(el("tr", {}, [el("td", { text: d.detector }), el("td", { text: when(d.ts) }), el("td", { class: "num", text: fmt(d.statistic, 4) }),
            el("td", { class: "num", text: fmt(d.p_value, 4) }), el("td", { class: "num", text: d.window_n + " / " + d.reference_n }),
            el("td", { class: d.alarm ? "alarm" : "", text: d.alarm ? "alarm" : "ok" })]));
        });
        return request("GET", "/ui/api/drift/history?limit=500").then(function (points) {
          var series = {};
          points.filter(function (p) { return typeof p.p_value === "number"; }).forEach(function (p) {
            (series[p.detector] = series[p.detector] || []).push({ t: new Date(p.ts), v: p.p_value, alarm: p.alarm });
          });
          lineChart($("drift-chart"), "p-value per detector over time (red dots: alarms)", series, st.alpha);
        });
      }).catch(fail);
    }
    $("drift-refresh").addEventListener("click", function () { drift(true); });
    drift(false);
    request("GET", "/v1/experiments").then(function (list) {
      var body = $("experiments").tBodies[0];
      clear(body);
      if (!list.length) body.appendChild(el("tr", {}, el("td", { colspan: 5, class: "muted", text: "No experiments." })));
      list.forEach(function (x) {
        body.appendChild(el("tr", {}, [el("td", { text: x.name }), el("td", { text: x.metric }), el("td", { text: x.status }), el("td", { text: x.winner || "–" }),
          el("td", {}, el("button", { type: "button", class: "secondary", text: "Results", "aria-label": "Results of " + x.name, onclick: function () { results(x.id); } }))]));
      });
    }).catch(fail);
    function results(id) {
      request("GET", "/v1/experiments/" + encodeURIComponent(id)).then(function (x) {
        var table = $("variants"), body = table.tBodies[0];
        table.hidden = false;
        $("variants-caption").textContent = x.name + ": " + x.metric + " by variant (control " + x.control + ", alpha " + x.alpha + ")";
        clear(body);
        (x.results || x.variants || []).forEach(function (v) {
          var ci = v.ci_low === null || v.ci_low === undefined ? "–" : "[" + fmt(v.ci_low) + ", " + fmt(v.ci_high) + "]";
          body.appendChild(el("tr", {}, [el("td", { text: v.name }), el("td", { class: "num", text: fmt(v.users) }), el("td", { class: "num", text: fmt(v.turns) }),
            el("td", { class: "num", text: fmt(v.rated) }), el("td", { class: "num", text: fmt(v.feedback_positive) }), el("td", { class: "num", text: fmt(v.lift) }),
            el("td", { class: "num", text: ci }), el("td", { class: "num", text: fmt(v.p_value) }), el("td", { text: v.significant ? "yes" : "no" })]));
        });
      }).catch(fail);
    }
  };

  // --- boot ----------------------------------------------------------------------------------
  document.addEventListener("DOMContentLoaded", function () {
    var page = document.body.getAttribute("data-page");
    if (page !== "signin") {
      var cred = credential();
      if (!cred || (cred.expires && cred.expires < Date.now())) { signOut(cred ? "expired" : ""); return; }
      $("signout").addEventListener("click", function () { signOut(""); });
      request("GET", "/v1/auth/whoami").then(function (me) { $("who").textContent = me.id + " · " + me.tenant + " · " + me.role; }).catch(fail);
    }
    if (pages[page]) pages[page]();
  });
})();
