// Live rows and live build summaries, fed by the event stream (GET /api/v1/events).
// Each table with data-live-rows listens for `build` events and swaps in the changed row,
// rendered by the server (/builds/{id}/row), so rows look the same live and on load.
(function () {
  "use strict";

  function newest(table) {
    var ids = Array.prototype.map.call(table.tBodies[0].rows, function (row) {
      return Number(row.dataset.buildId);
    });
    return ids.length ? Math.max.apply(null, ids) : 0;
  }

  function swapRow(table, buildId, status) {
    var existing = document.getElementById("build-row-" + buildId);
    // Only a newer build joins the top of a list; older ones belong to later pages.
    var joins = table.dataset.firstPage === "yes" && buildId > newest(table);
    var only = table.dataset.insertStatuses;
    if (joins && only && only.split(" ").indexOf(status) === -1) joins = false;
    if (!existing && !joins) return;
    var filters = table.dataset.filters || "";
    var url = "/builds/" + buildId + "/row" + (filters ? "?" + filters : "");
    fetch(url, { credentials: "same-origin" }).then(function (response) {
      existing = document.getElementById("build-row-" + buildId);
      if (response.status === 204) {
        if (existing) existing.remove();
        return null;
      }
      if (!response.ok) return null;
      return response.text().then(function (html) {
        var holder = document.createElement("tbody");
        holder.innerHTML = html.trim();
        var row = holder.querySelector("tr");
        if (!row) return;
        existing = document.getElementById("build-row-" + buildId);
        if (existing) {
          existing.replaceWith(row);
        } else if (joins) {
          var body = table.tBodies[0];
          body.insertBefore(row, body.firstChild);
        }
      });
    });
  }

  var sources = [];

  function watchTables() {
    sources.forEach(function (source) { source.close(); });
    sources = [];
    var tables = document.querySelectorAll("table[data-live-rows]");
    var byUrl = {};
    tables.forEach(function (table) {
      var url = table.dataset.liveRows;
      if (!url) return;
      (byUrl[url] = byUrl[url] || []).push(table);
    });
    Object.keys(byUrl).forEach(function (url) {
      var source = new EventSource(url);
      sources.push(source);
      source.addEventListener("build", function (message) {
        var data = JSON.parse(message.data);
        byUrl[url].forEach(function (table) { swapRow(table, data.build_id, data.status); });
      });
    });
  }

  function watchBuild() {
    var summary = document.getElementById("build-summary");
    var log = document.getElementById("log");
    if (!summary || !log) return;
    var buildId = Number(log.dataset.buildId);
    var source = new EventSource(log.dataset.eventsUrl);
    source.addEventListener("build", function (message) {
      if (JSON.parse(message.data).build_id === buildId) {
        document.body.dispatchEvent(new CustomEvent("cartridge:build-changed"));
      }
    });
  }

  function copyButtons() {
    document.addEventListener("click", function (event) {
      var button = event.target.closest("button[data-copy]");
      if (!button || !navigator.clipboard) return;
      navigator.clipboard.writeText(button.dataset.copy).then(function () {
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = "Copy"; }, 1500);
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    watchTables();
    watchBuild();
    copyButtons();
    // The filters form replaces the list (htmx): watch the new table, with its filters.
    document.body.addEventListener("htmx:afterSettle", function (event) {
      if (event.target && event.target.querySelector && event.target.querySelector("table[data-live-rows]")) {
        watchTables();
      }
    });
  });
})();
