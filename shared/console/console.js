"use strict";
// The paygate console: every element built with the DOM, every string from
// the API put in as text (the page's policy refuses HTML from strings).
// The API key lives in this tab's sessionStorage only.
(function () {
  var DECIMALS = { PHP: 2, MYR: 2, MNT: 2, KZT: 2, USD: 2, PHPT: 2, USDT: 6 };
  var STATUSES = ["pending", "completed", "failed", "expired", "cancelled", "refunded",
    "partially_refunded", "needs_review"];
  var PROVIDERS = ["directpay", "paygram", "toyyibpay", "qpay", "epayment", "payment_engine"];
  var QUEUE_KINDS = ["payment_review", "refund_pending", "topup_unknown", "topup_given_up",
    "reconcile_difference", "payment_stale", "delivery_failed"];
  var SLOT = "paygate.console.key";
  var key = sessionStorage.getItem(SLOT);
  var role = null;
  var main = document.getElementById("main");
  var signinForm = document.getElementById("signin");

  // ---- building blocks ----

  function el(tag, props) {
    var node = document.createElement(tag);
    if (props) {
      Object.keys(props).forEach(function (name) {
        var value = props[name];
        if (value === undefined || value === null || value === false) return;
        if (name.slice(0, 2) === "on") node.addEventListener(name.slice(2), value);
        else if (name === "class") node.className = value;
        else if (name === "text") node.textContent = String(value);
        else if (name === "value") node.value = value;
        else if (value === true) node.setAttribute(name, "");
        else node.setAttribute(name, String(value));
      });
    }
    for (var i = 2; i < arguments.length; i++) add(node, arguments[i]);
    return node;
  }

  function add(node, child) {
    if (child === undefined || child === null || child === false) return;
    if (Array.isArray(child)) { child.forEach(function (c) { add(node, c); }); return; }
    node.append(child instanceof Node ? child : String(child));
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function show(node) { clear(main); main.append(node); }

  var noticeBox = document.getElementById("notice");
  function notice(message, ok) {
    noticeBox.textContent = message || "";
    noticeBox.className = ok ? "notice ok" : "notice";
    noticeBox.hidden = !message;
  }

  // Amounts, exactly from minor units: grouped digits and the currency.
  function digits(minor, currency) {
    var d = DECIMALS[currency] === undefined ? 2 : DECIMALS[currency];
    var s = String(minor);
    var negative = s.charAt(0) === "-";
    if (negative) s = s.slice(1);
    while (s.length < d + 1) s = "0" + s;
    return { negative: negative, whole: s.slice(0, s.length - d), fraction: d ? s.slice(s.length - d) : "" };
  }
  function money(minor, currency) {
    if (minor === undefined || minor === null) return "";
    var p = digits(minor, currency);
    var grouped = p.whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return (p.negative ? "-" : "") + grouped + (p.fraction ? "." + p.fraction : "") + " " + currency;
  }
  function majorUnits(minor, currency) {
    var p = digits(minor, currency);
    return (p.negative ? "-" : "") + p.whole + (p.fraction ? "." + p.fraction : "");
  }
  // "12.5" in USD is 1250 minor units; null where the text is not an amount.
  function toMinor(text, currency) {
    var d = DECIMALS[currency] === undefined ? 2 : DECIMALS[currency];
    var m = /^\s*(\d+)(?:\.(\d*))?\s*$/.exec(text);
    if (!m || (m[2] || "").length > d) return null;
    var fraction = (m[2] || "");
    while (fraction.length < d) fraction += "0";
    var all = (m[1] + fraction).replace(/^0+(?=\d)/, "");
    var n = Number(all);
    return Number.isSafeInteger(n) && n > 0 ? n : null;
  }

  function utc(iso) {
    var t = new Date(iso);
    if (isNaN(t)) return String(iso);
    return t.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z").replace("Z", " UTC");
  }
  // A time in the viewer's zone, UTC on hover.
  function when(iso) {
    if (!iso) return "";
    var t = new Date(iso);
    return el("time", { datetime: iso, title: utc(iso) }, isNaN(t) ? String(iso) : t.toLocaleString());
  }

  function badge(status) {
    return el("span", { class: "badge s-" + String(status).replace(/[^a-z_]/g, ""), "data-status": status }, status);
  }

  function idempotencyKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  // ---- the API ----

  function api(method, path, body) {
    var headers = { Authorization: "Bearer " + key };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    // Every write its own fresh key: a repeat is a new request on purpose.
    if (method !== "GET") headers["Idempotency-Key"] = idempotencyKey();
    return fetch(path, {
      method: method, headers: headers, cache: "no-store", credentials: "omit",
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (r) {
      return r.text().then(function (t) {
        var data = null;
        try { data = t ? JSON.parse(t) : null; } catch (e) { data = t; }
        return { status: r.status, body: data };
      });
    }, function (e) {
      return { status: 0, body: { error: { code: "network_error", message: String(e) } } };
    });
  }

  // The API's error as it came: status, code, message, request id.
  function errorText(res) {
    var e = res.body && res.body.error;
    if (e) return res.status + " " + e.code + ": " + e.message + (e.request_id ? " (request " + e.request_id + ")" : "");
    if (res.body && res.body.message) return res.status + ": " + res.body.message;
    return "HTTP " + res.status;
  }

  function ok(res) { return res.status >= 200 && res.status < 300; }

  // ---- signing in ----

  function signedOut(message) {
    key = null;
    role = null;
    sessionStorage.removeItem(SLOT);
    sessionStorage.removeItem(SLOT + ".role");
    clear(document.getElementById("nav"));
    document.getElementById("who").textContent = "";
    document.getElementById("signout").hidden = true;
    show(signinForm);
    document.getElementById("key").value = "";
    notice(message || "");
  }

  // The key is checked by the first read its role makes (a wrong role or
  // key is refused there); nothing is asked that the key may not read.
  function check(asRole) {
    var probe = asRole === "operator" ? "/v1/ops/queue?limit=1" : "/v1/payments?limit=1";
    return api("GET", probe).then(function (res) { return ok(res) ? asRole : null; });
  }

  var keyInput = document.getElementById("key");
  var roleInput = document.getElementById("role");
  // paygate's operator keys start ok_ by convention; the choice stays the viewer's.
  keyInput.addEventListener("input", function () {
    if (/^ok_/.test(keyInput.value)) roleInput.value = "operator";
    else if (/^pk_/.test(keyInput.value)) roleInput.value = "merchant";
  });
  signinForm.addEventListener("submit", function (e) {
    e.preventDefault();
    key = keyInput.value.trim();
    sessionStorage.setItem(SLOT + ".role", roleInput.value);
    start();
  });
  document.getElementById("signout").addEventListener("click", function () { signedOut("Signed out."); });

  function start() {
    if (!key) { signedOut(); return; }
    var asRole = sessionStorage.getItem(SLOT + ".role") === "operator" ? "operator" : "merchant";
    check(asRole).then(function (r) {
      if (!r) { signedOut("That key is not accepted as " + (asRole === "operator" ? "an operator's." : "a merchant's.")); return; }
      role = r;
      sessionStorage.setItem(SLOT, key);
      notice("");
      document.getElementById("who").textContent = role === "operator" ? "Operator" : "Merchant";
      document.getElementById("signout").hidden = false;
      var nav = document.getElementById("nav");
      clear(nav);
      var links = role === "operator"
        ? [["#/queue", "Queue"], ["#/health", "Provider health"], ["#/balances", "Balances"]]
        : [["#/payments", "Payments"], ["#/wallet", "Wallets"], ["#/webhooks", "Webhooks"]];
      links.forEach(function (l) { nav.append(el("a", { href: l[0], "data-nav": l[0].slice(2) }, l[1])); });
      var home = role === "operator" ? "#/queue" : "#/payments";
      if (!routeOk(location.hash)) location.hash = home;
      else route();
    });
  }

  function routeOk(hash) {
    var section = hash.replace(/^#\//, "").split(/[/?]/)[0];
    var mine = role === "operator" ? ["queue", "health", "balances"] : ["payments", "payment", "wallet", "webhooks"];
    return mine.indexOf(section) >= 0;
  }

  window.addEventListener("hashchange", function () { if (role) { notice(""); route(); } });

  function route() {
    if (!routeOk(location.hash)) { location.hash = role === "operator" ? "#/queue" : "#/payments"; return; }
    var hash = location.hash.replace(/^#\//, "");
    var q = hash.indexOf("?");
    var path = q >= 0 ? hash.slice(0, q) : hash;
    var params = new URLSearchParams(q >= 0 ? hash.slice(q + 1) : "");
    var parts = path.split("/");
    Array.prototype.forEach.call(document.querySelectorAll("#nav a"), function (a) {
      a.className = a.getAttribute("data-nav") === (parts[0] === "payment" ? "payments" : parts[0]) ? "on" : "";
    });
    if (parts[0] === "payments") return payments(params);
    if (parts[0] === "payment") return payment(decodeURIComponent(parts[1] || ""));
    if (parts[0] === "wallet") return wallet(params.get("user") || "");
    if (parts[0] === "webhooks") return webhooks();
    if (parts[0] === "queue") return queue(params.get("kind") || "");
    if (parts[0] === "health") return health();
    if (parts[0] === "balances") return balances();
  }

  // ---- payments ----

  function option(value, label, selected) {
    return el("option", { value: value, selected: value === selected }, label);
  }

  function select(id, label, values, selected) {
    return el("label", null, label, el("select", { id: id },
      option("", "any", selected), values.map(function (v) { return option(v, v, selected); })));
  }

  // A day of the viewer's calendar as the instant it starts.
  function dayStart(day, plus) {
    var m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(day || "");
    if (!m) return null;
    return new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]) + (plus || 0)).toISOString();
  }

  // The listing's query for a filter (without cursor).
  function listingQuery(f, limit) {
    if (f.reference) return "/v1/payments?reference=" + encodeURIComponent(f.reference);
    var q = new URLSearchParams();
    if (f.status) q.set("status", f.status);
    if (f.provider) q.set("provider", f.provider);
    var from = dayStart(f.from, 0);
    var to = dayStart(f.to, 1);
    if (from) q.set("created_from", from);
    if (to) q.set("created_to", to);
    q.set("limit", String(limit));
    return "/v1/payments?" + q.toString();
  }

  function filterOf(params) {
    return {
      status: params.get("status") || "", provider: params.get("provider") || "",
      from: params.get("from") || "", to: params.get("to") || "",
      reference: params.get("reference") || "", limit: params.get("limit") || "20"
    };
  }

  function payments(params) {
    var f = filterOf(params);
    var pages = [null];
    var form = el("form", { id: "filters", class: "card" },
      el("h1", null, "Payments"),
      el("div", { class: "filters" },
        select("f-status", "Status", STATUSES, f.status),
        select("f-provider", "Provider", PROVIDERS, f.provider),
        el("label", null, "From (day)", el("input", { id: "f-from", type: "date", value: f.from })),
        el("label", null, "To (day, included)", el("input", { id: "f-to", type: "date", value: f.to })),
        el("label", null, "Reference", el("input", { id: "f-reference", type: "search", value: f.reference, placeholder: "ORD-…" })),
        el("label", null, "Per page", el("select", { id: "f-limit" },
          ["20", "50", "100"].map(function (v) { return option(v, v, f.limit); })))),
      el("div", { class: "row" },
        el("button", { id: "search", type: "submit" }, "Search"),
        el("button", { id: "export", type: "button", class: "quiet", onclick: function () { exportCsv(f); } }, "Export CSV"),
        el("span", { id: "export-status", class: "muted" })));
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var q = new URLSearchParams();
      [["status", "f-status"], ["provider", "f-provider"], ["from", "f-from"], ["to", "f-to"],
        ["reference", "f-reference"], ["limit", "f-limit"]].forEach(function (p) {
        var v = document.getElementById(p[1]).value.trim();
        if (v) q.set(p[0], v);
      });
      var next = "#/payments?" + q.toString();
      if (location.hash === next) route(); else location.hash = next;
    });
    var body = el("tbody", { id: "payment-rows" });
    var table = el("table", { class: "cards", id: "payments" },
      el("thead", null, el("tr", null, el("th", null, "Created"), el("th", null, "Reference"),
        el("th", { class: "num" }, "Amount"), el("th", null, "Status"), el("th", null, "Provider"), el("th", null, "Id"))),
      body);
    var info = el("span", { id: "page-info", class: "muted" });
    var newer = el("button", { id: "newer", type: "button", class: "quiet", disabled: true }, "‹ Newer");
    var older = el("button", { id: "older", type: "button", class: "quiet", disabled: true }, "Older ›");
    show(el("div", null, form, el("section", { class: "card" }, table, el("div", { class: "pager" }, newer, older, info))));

    function load(index) {
      info.textContent = "Loading…";
      api("GET", listingQuery(f, f.limit) + (pages[index] ? "&cursor=" + encodeURIComponent(pages[index]) : "")).then(function (res) {
        clear(body);
        if (!ok(res)) { info.textContent = ""; notice(errorText(res)); return; }
        var data = res.body.data || [];
        data.forEach(function (p) {
          var href = "#/payment/" + encodeURIComponent(p.id);
          body.append(el("tr", { class: "go", "data-id": p.id, onclick: function (e) { if (e.target.tagName !== "A") location.hash = href; } },
            el("td", { "data-label": "Created" }, when(p.created_at)),
            el("td", { "data-label": "Reference", class: "ref" }, el("a", { href: href }, p.reference)),
            el("td", { "data-label": "Amount", class: "num amount" }, money(p.amount, p.currency)),
            el("td", { "data-label": "Status" }, badge(p.status)),
            el("td", { "data-label": "Provider" }, p.provider),
            el("td", { "data-label": "Id" }, el("code", null, p.id))));
        });
        if (!data.length) body.append(el("tr", null, el("td", { colspan: "6", class: "muted" }, "No payments match.")));
        pages.length = index + 1;
        if (res.body.next_cursor) pages.push(res.body.next_cursor);
        newer.disabled = index === 0;
        older.disabled = !res.body.next_cursor;
        info.textContent = "Page " + (index + 1) + " · " + data.length + " shown";
        newer.onclick = function () { load(index - 1); };
        older.onclick = function () { load(index + 1); };
      });
    }
    load(0);
  }

  function csvCell(value) {
    var s = value === undefined || value === null ? "" : String(value);
    // A spreadsheet would run a cell that starts like a formula.
    if (/^[=+\-@\t\r]/.test(s)) s = "'" + s;
    if (/[",\r\n]/.test(s)) s = '"' + s.replace(/"/g, '""') + '"';
    return s;
  }

  // Every page of the current filter, as CSV: amounts in major units with
  // their currency, times as RFC 3339.
  function exportCsv(f) {
    var status = document.getElementById("export-status");
    var rows = [["id", "created_at", "updated_at", "reference", "status", "provider", "amount", "currency",
      "refunded_amount", "provider_reference"]];
    var base = listingQuery(f, 100);
    status.textContent = "Exporting…";
    function page(cursor, count) {
      return api("GET", base + (cursor ? "&cursor=" + encodeURIComponent(cursor) : "")).then(function (res) {
        if (!ok(res)) { status.textContent = ""; notice(errorText(res)); return null; }
        (res.body.data || []).forEach(function (p) {
          rows.push([p.id, p.created_at, p.updated_at, p.reference, p.status, p.provider,
            majorUnits(p.amount, p.currency), p.currency, majorUnits(p.refunded_amount, p.currency),
            p.provider_reference || ""]);
        });
        if (res.body.next_cursor && count < 500) return page(res.body.next_cursor, count + 1);
        return rows;
      });
    }
    page(null, 0).then(function (all) {
      if (!all) return;
      var text = all.map(function (r) { return r.map(csvCell).join(","); }).join("\r\n") + "\r\n";
      var url = URL.createObjectURL(new Blob([text], { type: "text/csv;charset=utf-8" }));
      var a = el("a", { href: url, download: "paygate-payments-" + new Date().toISOString().replace(/[:.]/g, "-") + ".csv" });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(function () { URL.revokeObjectURL(url); }, 10000);
      status.textContent = "Exported " + (all.length - 1) + " payments.";
    });
  }

  function facts(pairs) {
    return el("dl", { class: "facts" }, pairs.filter(function (p) { return p[1] !== undefined && p[1] !== null && p[1] !== ""; })
      .map(function (p) { return [el("dt", null, p[0]), el("dd", { id: p[2] }, p[1])]; }));
  }

  function payment(id) {
    show(el("p", { class: "muted" }, "Loading…"));
    Promise.all([api("GET", "/v1/payments/" + encodeURIComponent(id)),
      api("GET", "/v1/events?payment_id=" + encodeURIComponent(id) + "&limit=100")]).then(function (both) {
      var res = both[0];
      if (!ok(res)) { show(el("p", { class: "card" }, errorText(res))); return; }
      var p = res.body;
      var c = p.currency;
      var head = el("section", { class: "card" },
        el("p", { class: "muted" }, el("a", { href: "#/payments" }, "‹ Payments")),
        el("div", { class: "big", id: "d-amount" }, money(p.amount, c)), " ", badge(p.status),
        facts([
          ["Reference", p.reference, "d-reference"],
          ["Description", p.description, "d-description"],
          ["Id", el("code", null, p.id), "d-id"],
          ["Provider", p.provider],
          ["Provider reference", p.provider_reference],
          ["Provider status", p.provider_status],
          ["Refunded", money(p.refunded_amount, c), "d-refunded"],
          ["Refund pending", p.refund_pending ? money(p.refund_pending, c) : null],
          ["Confirmed amount", p.confirmed_amount !== undefined ? money(p.confirmed_amount, c) : null],
          ["Wallet", p.wallet_user_id ? el("a", { href: "#/wallet?user=" + encodeURIComponent(p.wallet_user_id) }, p.wallet_user_id) : null],
          ["Casino player", p.casino && p.casino.username],
          ["Created", when(p.created_at)],
          ["Updated", when(p.updated_at)],
          ["Expires", when(p.expires_at)]
        ]));
      var timeline = el("ol", { class: "timeline", id: "d-history" }, (p.history || []).map(function (h) {
        return el("li", null, badge(h.status), " ", when(h.at), " ", el("span", { class: "muted" }, "by " + h.source),
          h.action ? el("div", { class: "muted" }, "action: " + h.action) : null,
          h.reason ? el("div", { class: "muted" }, "reason: " + h.reason) : null);
      }));
      var refunds = el("table", { class: "cards", id: "d-refunds" },
        el("thead", null, el("tr", null, el("th", null, "Refund"), el("th", { class: "num" }, "Amount"), el("th", null, "Status"), el("th", null, "Created"))),
        el("tbody", null, (p.refunds || []).map(function (r) {
          return el("tr", null, el("td", { "data-label": "Refund" }, el("code", null, r.id)),
            el("td", { "data-label": "Amount", class: "num" }, money(r.amount, c)),
            el("td", { "data-label": "Status" }, badge(r.status)),
            el("td", { "data-label": "Created" }, when(r.created_at)));
        })));
      var actions = el("section", { class: "card", id: "d-actions" }, el("h2", null, "Actions"));
      var rest = p.amount - (p.refunded_amount || 0) - (p.refund_pending || 0);
      if (p.status === "completed" || p.status === "partially_refunded") {
        var amount = el("input", { id: "refund-amount", inputmode: "decimal", placeholder: "all of " + majorUnits(rest, c) });
        var reason = el("input", { id: "refund-reason", placeholder: "why (optional)" });
        var form = el("form", { class: "row", id: "refund-form" },
          el("label", null, "Refund amount (" + c + ")", amount), el("label", null, "Reason", reason),
          el("button", { id: "refund", type: "submit" }, "Refund"));
        form.addEventListener("submit", function (e) {
          e.preventDefault();
          var body = {};
          if (amount.value.trim()) {
            var minor = toMinor(amount.value, c);
            if (minor === null) { notice("The amount is not an amount in " + c + "."); return; }
            body.amount = minor;
          }
          if (reason.value.trim()) body.reason = reason.value.trim();
          act("POST", "/v1/payments/" + encodeURIComponent(p.id) + "/refund", body, "Refund requested.");
        });
        actions.append(form);
      }
      if (p.status === "pending") {
        actions.append(el("button", { id: "cancel", type: "button", class: "danger", onclick: function () {
          act("POST", "/v1/payments/" + encodeURIComponent(p.id) + "/cancel", {}, "Payment cancelled.");
        } }, "Cancel payment"));
      }
      if (actions.childNodes.length === 1) actions.append(el("p", { class: "muted" }, "Nothing to do in this state."));
      function act(method, path, body, done) {
        Array.prototype.forEach.call(actions.querySelectorAll("button"), function (b) { b.disabled = true; });
        api(method, path, body).then(function (r) {
          if (ok(r)) notice(done + (r.status === 202 ? " The provider's answer is not known yet." : ""), true);
          else notice(errorText(r));
          payment(p.id);
        });
      }
      var topup = p.topup ? el("section", { class: "card", id: "d-topup" }, el("h2", null, "Casino top-up"),
        facts([["Status", badge(p.topup.status)], ["Casino transaction", p.topup.casino_transaction_id],
          ["Attempts", String(p.topup.attempts)], ["Last error", p.topup.last_error]])) : null;
      var events = el("section", { class: "card", id: "d-events" }, el("h2", null, "Events"));
      var ev = both[1];
      if (!ok(ev)) events.append(el("p", { class: "muted" }, errorText(ev)));
      else if (!(ev.body.data || []).length) events.append(el("p", { class: "muted" }, "No events."));
      else events.append(el("ul", { class: "plain" }, ev.body.data.map(function (e) {
        return el("li", { class: "q-item" }, el("strong", null, e.type), " ", when(e.created_at), " ", el("code", null, e.id),
          el("ul", { class: "plain" }, (e.deliveries || []).map(function (d) {
            return el("li", { class: "muted" }, "to ", el("code", null, d.endpoint_id), ": ", badge(d.status),
              " · " + d.attempts + " attempts", d.last_status_code ? " · last answer " + d.last_status_code : "",
              d.last_attempt_at ? [" · ", when(d.last_attempt_at)] : null, " ",
              el("button", { type: "button", class: "quiet", onclick: function () {
                api("POST", "/v1/events/" + encodeURIComponent(e.id) + "/resend", { endpoint_id: d.endpoint_id }).then(function (r) {
                  if (ok(r)) notice("Sent again.", true); else notice(errorText(r));
                });
              } }, "Send again"));
          })));
      })));
      show(el("div", null, head, el("div", { class: "grid2" },
        el("section", { class: "card" }, el("h2", null, "History"), timeline),
        el("section", { class: "card" }, el("h2", null, "Refunds"), (p.refunds || []).length ? refunds : el("p", { class: "muted" }, "No refunds."))),
        actions, topup, events));
    });
  }

  // ---- wallets ----

  function wallet(user) {
    var input = el("input", { id: "w-user", value: user, placeholder: "u_123", required: true });
    var form = el("form", { class: "card row" }, el("label", null, "Wallet user id", input), el("button", { type: "submit" }, "Look up"));
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      location.hash = "#/wallet?user=" + encodeURIComponent(input.value.trim());
    });
    var out = el("div", { id: "wallet" });
    show(el("div", null, form, out));
    if (!user) return;
    var entries = el("tbody");
    function load(cursor) {
      api("GET", "/v1/wallets/" + encodeURIComponent(user) + (cursor ? "?cursor=" + encodeURIComponent(cursor) : "")).then(function (res) {
        if (!ok(res)) { notice(errorText(res)); return; }
        var w = res.body;
        if (!cursor) {
          clear(out);
          out.append(el("section", { class: "card" }, el("h2", null, "Balances"),
            (w.balances || []).length ? el("ul", { class: "plain", id: "w-balances" }, w.balances.map(function (b) {
              return el("li", { class: "big" }, money(b.amount, b.currency));
            })) : el("p", { class: "muted" }, "An empty wallet.")),
          el("section", { class: "card" }, el("h2", null, "Entries"), el("table", { class: "cards" },
            el("thead", null, el("tr", null, el("th", null, "At"), el("th", null, "Kind"), el("th", { class: "num" }, "Amount"), el("th", null, "Payment"), el("th", null, "Memo"))),
            entries)));
        }
        (w.entries || []).forEach(function (x) {
          entries.append(el("tr", null, el("td", { "data-label": "At" }, when(x.at)), el("td", { "data-label": "Kind" }, x.kind),
            el("td", { "data-label": "Amount", class: "num" }, (x.kind === "debit" ? "−" : "") + money(x.amount, x.currency)),
            el("td", { "data-label": "Payment" }, x.payment_id ? el("a", { href: "#/payment/" + encodeURIComponent(x.payment_id) }, x.payment_id) : ""),
            el("td", { "data-label": "Memo" }, x.memo)));
        });
        var more = out.querySelector("#w-more");
        if (more) more.remove();
        if (w.next_cursor) out.append(el("button", { id: "w-more", type: "button", class: "quiet", onclick: function () { load(w.next_cursor); } }, "More"));
      });
    }
    load(null);
  }

  // ---- webhook endpoints ----

  function webhooks() {
    var url = el("input", { id: "wh-url", type: "url", required: true, placeholder: "where events go (https)" });
    var types = el("input", { id: "wh-events", placeholder: "payment.*, refund.* (empty: all)" });
    var description = el("input", { id: "wh-description", placeholder: "orders" });
    var secretBox = el("div", { id: "wh-secret" });
    var form = el("form", { class: "card" }, el("h1", null, "Webhook endpoints"),
      el("div", { class: "filters" }, el("label", null, "URL", url), el("label", null, "Events", types), el("label", null, "Description", description)),
      el("div", { class: "row" }, el("button", { type: "submit", id: "wh-add" }, "Add endpoint")));
    var list = el("tbody", { id: "wh-rows" });
    show(el("div", null, form, secretBox, el("section", { class: "card" }, el("table", { class: "cards" },
      el("thead", null, el("tr", null, el("th", null, "URL"), el("th", null, "Events"), el("th", null, "Description"), el("th", null, "Status"), el("th", null, ""))),
      list))));
    function secretShown(title, secret) {
      clear(secretBox);
      secretBox.append(el("section", { class: "card" }, el("h2", null, title),
        el("p", null, "Copy it now: it is not shown again."), el("div", { class: "secret" }, secret)));
    }
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var body = { url: url.value.trim() };
      var t = types.value.split(",").map(function (s) { return s.trim(); }).filter(Boolean);
      if (t.length) body.events = t;
      if (description.value.trim()) body.description = description.value.trim();
      api("POST", "/v1/webhook-endpoints", body).then(function (r) {
        if (!ok(r)) { notice(errorText(r)); return; }
        notice("Endpoint added.", true);
        secretShown("The new endpoint's secret", r.body.secret);
        load();
      });
    });
    function load() {
      api("GET", "/v1/webhook-endpoints").then(function (r) {
        clear(list);
        if (!ok(r)) { notice(errorText(r)); return; }
        (r.body.data || []).forEach(function (w) {
          var enabled = w.status === "enabled";
          list.append(el("tr", null, el("td", { "data-label": "URL" }, w.url),
            el("td", { "data-label": "Events" }, (w.events || []).length ? w.events.join(", ") : "all"),
            el("td", { "data-label": "Description" }, w.description),
            el("td", { "data-label": "Status" }, badge(w.status)),
            el("td", null,
              el("button", { type: "button", class: "quiet", onclick: function () {
                api("POST", "/v1/webhook-endpoints/" + encodeURIComponent(w.id) + "/rotate-secret", {}).then(function (x) {
                  if (!ok(x)) { notice(errorText(x)); return; }
                  notice("Secret rotated; the old one still signs for 24 hours.", true);
                  secretShown("The endpoint's new secret", x.body.secret);
                });
              } }, "Rotate secret"), " ",
              el("button", { type: "button", class: enabled ? "danger" : "quiet", onclick: function () {
                api("PATCH", "/v1/webhook-endpoints/" + encodeURIComponent(w.id), { status: enabled ? "disabled" : "enabled" }).then(function (x) {
                  if (!ok(x)) notice(errorText(x)); else notice(enabled ? "Endpoint disabled." : "Endpoint enabled.", true);
                  load();
                });
              } }, enabled ? "Disable" : "Enable"))));
        });
        if (!(r.body.data || []).length) list.append(el("tr", null, el("td", { colspan: "5", class: "muted" }, "No endpoints.")));
      });
    }
    load();
  }

  // ---- operators ----

  function seg(v) { return encodeURIComponent(v === undefined || v === null ? "" : String(v)); }
  var ACTIONS = {
    accept: ["Accept", function (i) { return "/v1/ops/payments/" + seg(i.payment_id) + "/accept"; }],
    reject: ["Reject", function (i) { return "/v1/ops/payments/" + seg(i.payment_id) + "/reject"; }],
    check: ["Ask the provider", function (i) { return "/v1/ops/refunds/" + seg(i.payment_id) + "/" + seg(i.refund_id) + "/check"; }],
    mark_refunded: ["Mark refunded", function (i) { return "/v1/ops/refunds/" + seg(i.payment_id) + "/" + seg(i.refund_id) + "/mark-refunded"; }],
    mark_not_refunded: ["Mark not refunded", function (i) { return "/v1/ops/refunds/" + seg(i.payment_id) + "/" + seg(i.refund_id) + "/mark-not-refunded"; }],
    mark_sent: ["Mark sent", function (i) { return "/v1/ops/topups/" + seg(i.payment_id) + "/mark-sent"; }],
    mark_not_sent: ["Mark not sent", function (i) { return "/v1/ops/topups/" + seg(i.payment_id) + "/mark-not-sent"; }],
    acknowledge: ["Acknowledge", function (i) { return "/v1/ops/differences/" + seg(i.payment_id) + "/" + seg(i.difference && i.difference.id) + "/acknowledge"; }],
    resend: ["Send again", function (i) { return "/v1/ops/payments/" + seg(i.payment_id) + "/events/" + seg(i.event_id) + "/resend"; }]
  };

  function queue(kind) {
    var kinds = el("select", { id: "q-kind", onchange: function () { location.hash = "#/queue" + (kinds.value ? "?kind=" + kinds.value : ""); } },
      option("", "everything", kind), QUEUE_KINDS.map(function (k) { return option(k, k.replace(/_/g, " "), kind); }));
    var list = el("ul", { class: "plain", id: "queue" });
    var more = el("div", { class: "pager" });
    show(el("div", null, el("section", { class: "card" }, el("h1", null, "What waits for a person"),
      el("label", null, "Kind", kinds)), el("section", { class: "card" }, list, more)));
    function load(cursor) {
      var q = new URLSearchParams({ limit: "50" });
      if (kind) q.set("kind", kind);
      if (cursor) q.set("cursor", cursor);
      api("GET", "/v1/ops/queue?" + q.toString()).then(function (r) {
        if (!ok(r)) { notice(errorText(r)); return; }
        if (!cursor) clear(list);
        clear(more);
        (r.body.data || []).forEach(function (i) { list.append(queueItem(i)); });
        if (!list.childNodes.length) list.append(el("li", { class: "muted", id: "queue-empty" }, "Nothing waits."));
        if (r.body.next_cursor) more.append(el("button", { type: "button", class: "quiet", onclick: function () { load(r.body.next_cursor); } }, "More"));
      });
    }
    load(null);
  }

  function queueItem(i) {
    var c = i.currency;
    var reason = el("input", { class: "q-reason", placeholder: "why (required)", maxlength: "500" });
    var amount = el("input", { class: "q-amount", inputmode: "decimal", placeholder: "as the provider shows" });
    var txn = el("input", { class: "q-txn", placeholder: "from the casino's history" });
    var needsAmount = i.actions.indexOf("accept") >= 0 && (i.confirmed_amount === undefined || i.confirmed_amount === null);
    var item = el("li", { class: "q-item", "data-payment": i.payment_id, "data-kind": i.kind },
      el("strong", null, i.kind.replace(/_/g, " ")), " ", badge(i.status), " ", el("span", { class: "muted" }, "since "), when(i.since),
      facts([
        ["Payment", el("code", null, i.payment_id)],
        ["Merchant", i.merchant_id],
        ["Provider", i.provider],
        ["Amount", money(i.amount, c)],
        ["Provider confirmed", i.confirmed_amount !== undefined && i.confirmed_amount !== null ? money(i.confirmed_amount, c) : null],
        ["Provider status", i.provider_status],
        ["Refund", i.refund_id],
        ["Event", i.event_id],
        ["Endpoint", i.endpoint_id],
        ["Difference", i.difference ? i.difference.kind + ": ours " + i.difference.ours + ", theirs " + i.difference.theirs : null],
        ["Last error", i.last_error]
      ]),
      el("div", { class: "row" }, el("label", null, "Reason", reason),
        needsAmount ? el("label", null, "Amount paid (" + c + ")", amount) : null,
        i.actions.indexOf("mark_sent") >= 0 ? el("label", null, "Casino transaction id", txn) : null,
        i.actions.map(function (a) {
          var spec = ACTIONS[a];
          if (!spec) return null;
          return el("button", { type: "button", "data-action": a, class: a === "reject" ? "danger" : "", onclick: function () {
            if (!reason.value.trim()) { notice("A reason is required."); reason.focus(); return; }
            var body = { reason: reason.value.trim() };
            if (a === "accept" && needsAmount && amount.value.trim()) {
              var minor = toMinor(amount.value, c);
              if (minor === null) { notice("The amount is not an amount in " + c + "."); return; }
              body.amount = minor;
            }
            if (a === "mark_sent") body.casino_transaction_id = txn.value.trim();
            if (a === "resend" && i.endpoint_id) body.endpoint_id = i.endpoint_id;
            Array.prototype.forEach.call(item.querySelectorAll("button"), function (b) { b.disabled = true; });
            api("POST", spec[1](i), body).then(function (r) {
              if (ok(r)) notice(spec[0] + ": done for " + i.payment_id + ".", true);
              else notice(errorText(r));
              route();
            });
          } }, spec[0]);
        })));
    return item;
  }

  function health() {
    api("GET", "/v1/health").then(function (r) {
      if (!ok(r) && r.status !== 503) { notice(errorText(r)); return; }
      var providers = (r.body && r.body.providers) || {};
      show(el("section", { class: "card" }, el("h1", null, "Provider health"),
        el("p", null, "Overall: ", badge(r.body.status), " at ", when(r.body.time)),
        el("table", { class: "cards", id: "health" },
          el("thead", null, el("tr", null, el("th", null, "Provider"), el("th", null, "Healthy"), el("th", null, "Last success"), el("th", { class: "num" }, "Failures in a row"))),
          el("tbody", null, Object.keys(providers).sort().map(function (name) {
            var h = providers[name];
            return el("tr", null, el("td", { "data-label": "Provider" }, name),
              el("td", { "data-label": "Healthy" }, h.healthy ? el("span", { class: "badge s-completed" }, "healthy") : el("span", { class: "badge s-failed" }, "unhealthy")),
              el("td", { "data-label": "Last success" }, h.last_success ? when(h.last_success) : "never"),
              el("td", { "data-label": "Failures in a row", class: "num" }, String(h.consecutive_failures)));
          })))));
    });
  }

  function balances() {
    show(el("p", { class: "muted" }, "Asking the providers…"));
    api("GET", "/v1/ops/balances").then(function (r) {
      if (!ok(r)) { notice(errorText(r)); return; }
      show(el("section", { class: "card" }, el("h1", null, "Balances"),
        el("table", { class: "cards", id: "balances" },
          el("thead", null, el("tr", null, el("th", null, "Source"), el("th", null, "Account"), el("th", { class: "num" }, "Balance"), el("th", null, "Read"))),
          el("tbody", null, (r.body.data || []).map(function (b) {
            return el("tr", null, el("td", { "data-label": "Source" }, b.source), el("td", { "data-label": "Account" }, b.account),
              el("td", { "data-label": "Balance", class: "num" }, b.error ? el("span", { class: "badge s-failed" }, b.error) : money(b.amount, b.currency)),
              el("td", { "data-label": "Read" }, when(b.read_at)));
          }))),
        (r.body.not_reported || []).length ? el("p", { class: "muted" }, "No balance call: " + r.body.not_reported.join(", ")) : null));
    });
  }

  if (key) start(); else signedOut();
})();
