// Trading reports: the little JavaScript of the pages (inlined in <head>; no download, no library).
// 1. colour mode of the Airflow UI around the frame (next-themes puts class "light"/"dark" on the
//    parent's <html>), else prefers-color-scheme; followed live.
// 2. links to Airflow pages: Airflow's plugin iframe is sandboxed without allow-top-navigation, so
//    a plain link cannot leave the frame. The frame is same-origin: push the route into the parent's
//    history and fire popstate so Airflow's React Router renders it (no reload); anything else
//    (e.g. the login page) through an anchor of the parent document. Opened directly: plain links.
// 3. sortable tables; 4. the partition matrix (colour mode, filters, selection, clear).
(function () {
  "use strict";
  var framed = window.top !== window.self;

  function parentMode() {
    try {
      var c = window.top.document.documentElement.classList;
      if (c.contains("dark")) return "dark";
      if (c.contains("light")) return "light";
    } catch (e) { /* not same-origin */ }
    return null;
  }
  function applyTheme() {
    var mode = (framed && parentMode()) ||
      (window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
    document.documentElement.setAttribute("data-theme", mode);
  }
  applyTheme();
  if (framed) {
    try {
      new MutationObserver(applyTheme).observe(window.top.document.documentElement,
        { attributes: true, attributeFilter: ["class", "style"] });
    } catch (e) { /* not same-origin */ }
  }
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", applyTheme);

  function airflowRoot() { return document.body.getAttribute("data-airflow-root") || ""; }

  // Navigate the Airflow UI (the top window) to url; false when it cannot (then: plain navigation).
  function openInAirflow(url) {
    var target = new URL(url, window.location.href);
    if (target.origin !== window.location.origin) return false;
    var top = window.top;
    var path = target.pathname.slice(airflowRoot().length);
    var uiRoute = !/^\/(auth|api|execution|trading-reports)(\/|$)/.test(path);
    try {
      if (uiRoute && top.document.getElementById("root")) {
        var current = top.history.state || {};
        var state = { usr: null, key: Math.random().toString(36).slice(2, 10),
          idx: (typeof current.idx === "number" ? current.idx : 0) + 1 };
        top.history.pushState(state, "", target.pathname + target.search + target.hash);
        top.dispatchEvent(new top.PopStateEvent("popstate", { state: state }));
        return true;
      }
      var a = top.document.createElement("a");
      a.href = target.href;
      a.style.display = "none";
      top.document.body.appendChild(a);
      a.click();
      a.remove();
      return true;
    } catch (e) {
      return false;
    }
  }
  window.tradingReportsOpen = openInAirflow;

  document.addEventListener("click", function (ev) {
    if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
    var a = ev.target.closest && ev.target.closest("a[data-airflow]");
    if (!a || !framed) return;
    if (openInAirflow(a.href)) ev.preventDefault();
  });

  // -- sortable tables -----------------------------------------------------------------------
  function sortValue(td) {
    var v = td.getAttribute("data-v");
    if (v !== null && v !== "" && !isNaN(Number(v))) return Number(v);
    return td.textContent.trim().toLowerCase();
  }
  function makeSortable(table) {
    var heads = table.tHead ? table.tHead.rows[0].cells : [];
    Array.prototype.forEach.call(heads, function (th, col) {
      th.setAttribute("tabindex", "0");
      th.title = "Sort by " + th.textContent.trim();
      var sort = function () {
        var asc = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (r1, r2) {
          var a = sortValue(r1.cells[col]), b = sortValue(r2.cells[col]);
          var an = typeof a === "number", bn = typeof b === "number";
          var d = an && bn ? a - b : an ? -1 : bn ? 1 : String(a).localeCompare(String(b));
          return asc ? d : -d;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      };
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sort(); } });
    });
  }

  // -- partition matrix ----------------------------------------------------------------------
  function setupGrid(grid) {
    var cells = Array.prototype.slice.call(grid.querySelectorAll(".c"));
    var byId = function (id) { return document.getElementById(id); };
    var colour = byId("colour"), stateFilter = byId("state-filter"), contractFilter = byId("contract-filter");
    var selectMode = byId("select-mode"), count = byId("selected-count"), clearBtn = byId("clear-selected");
    var status = byId("clear-status");
    var canClear = grid.getAttribute("data-can-clear") === "true";

    function showLegend() {
      document.querySelectorAll(".legend[data-for]").forEach(function (l) {
        l.classList.toggle("shown", l.getAttribute("data-for") === grid.getAttribute("data-mode"));
      });
    }
    function setMode(mode) {
      colour.value = mode;
      grid.setAttribute("data-mode", mode);
      showLegend();
      try { window.localStorage.setItem("trading-reports.grid-colour", mode); } catch (e) { /* none */ }
    }
    colour.addEventListener("change", function () { setMode(colour.value); });
    var saved = null;
    try { saved = window.localStorage.getItem("trading-reports.grid-colour"); } catch (e) { /* none */ }
    setMode(saved === "state" ? "state" : "signal");

    function matches(cell) {
      var want = stateFilter.value, state = cell.getAttribute("data-state") || "none";
      if (want === "all") return true;
      if (want === "not-success") return state !== "success";
      return state === want;
    }
    function filter() {
      cells.forEach(function (c) { c.classList.toggle("off", !matches(c)); });
      grid.querySelectorAll("tbody tr").forEach(function (tr) {
        var contract = tr.getAttribute("data-contract");
        tr.classList.toggle("hidden", contractFilter.value !== "all" && contractFilter.value !== contract);
      });
    }
    stateFilter.addEventListener("change", filter);
    contractFilter.addEventListener("change", filter);

    function selectable(c) {
      return c.hasAttribute("data-map-index") && !c.classList.contains("off") &&
        !c.closest("tr").classList.contains("hidden");
    }
    function selected() { return cells.filter(function (c) { return c.classList.contains("sel"); }); }
    function refresh() {
      var n = selected().length;
      count.textContent = n + " selected";
      clearBtn.disabled = n === 0 || !canClear;
    }
    function toggle(list) {
      list = list.filter(selectable);
      var on = list.some(function (c) { return !c.classList.contains("sel"); });
      list.forEach(function (c) { c.classList.toggle("sel", on); });
      refresh();
    }
    selectMode.addEventListener("change", function () { grid.classList.toggle("selecting", selectMode.checked); });
    grid.addEventListener("click", function (ev) {
      if (!selectMode.checked) return;
      var cell = ev.target.closest(".c"), head = ev.target.closest("th");
      if (cell) { ev.preventDefault(); ev.stopPropagation(); toggle([cell]); return; }
      if (head && head.classList.contains("row")) {
        toggle(Array.prototype.slice.call(head.parentNode.querySelectorAll(".c")));
      } else if (head && head.hasAttribute("data-col")) {
        var col = head.getAttribute("data-col");
        toggle(cells.filter(function (c) { return c.getAttribute("data-col") === col; }));
      }
    }, true);
    byId("select-failed").addEventListener("click", function () {
      cells.forEach(function (c) { c.classList.remove("sel"); });
      selectMode.checked = true; grid.classList.add("selecting");
      toggle(cells.filter(function (c) {
        var s = c.getAttribute("data-state");
        return s === "failed" || s === "upstream_failed";
      }));
    });
    byId("select-none").addEventListener("click", function () {
      cells.forEach(function (c) { c.classList.remove("sel"); });
      refresh();
    });

    // Confirmation in the page: Airflow's iframe sandbox has no allow-modals (confirm() is blocked).
    var confirmBox = byId("clear-confirm"), confirmText = byId("clear-confirm-text");
    var pending = null;
    function plan() {
      var byRun = {};
      selected().forEach(function (c) {
        var run = c.getAttribute("data-run"), index = Number(c.getAttribute("data-map-index"));
        byRun[run] = byRun[run] || {};
        byRun[run][index] = true;
      });
      return byRun;
    }
    clearBtn.addEventListener("click", function () {
      pending = plan();
      var runs = Object.keys(pending);
      var total = runs.reduce(function (n, r) { return n + Object.keys(pending[r]).length; }, 0);
      confirmText.textContent = "Clear " + total + " task instance(s) of " + grid.getAttribute("data-task") +
        " in " + runs.length + " run(s)? Airflow runs them again.";
      confirmBox.hidden = false;
      byId("clear-confirm-yes").focus();
    });
    byId("clear-confirm-no").addEventListener("click", function () { confirmBox.hidden = true; pending = null; });
    byId("clear-confirm-yes").addEventListener("click", function () {
      confirmBox.hidden = true;
      var byRun = pending || plan();
      pending = null;
      var runs = Object.keys(byRun);
      var total = runs.reduce(function (n, r) { return n + Object.keys(byRun[r]).length; }, 0);
      clearBtn.disabled = true;
      status.textContent = "Clearing " + total + " task instance(s)...";
      var url = airflowRoot() + "/api/v2/dags/" + grid.getAttribute("data-dag") + "/clearTaskInstances";
      Promise.all(runs.map(function (run) {
        var ids = Object.keys(byRun[run]).map(function (i) { return [grid.getAttribute("data-task"), Number(i)]; });
        return fetch(url, {
          method: "POST", credentials: "same-origin",
          headers: { "Content-Type": "application/json", "Accept": "application/json" },
          body: JSON.stringify({ dry_run: false, only_failed: false, dag_run_id: run, task_ids: ids,
            include_downstream: false, include_upstream: false, reset_dag_runs: true })
        }).then(function (r) {
          return r.json().catch(function () { return {}; }).then(function (body) {
            if (!r.ok) throw new Error(run + ": HTTP " + r.status + " " + (body.detail ? JSON.stringify(body.detail) : ""));
            return (body.task_instances || []).length;
          });
        });
      })).then(function (counts) {
        var n = counts.reduce(function (a, b) { return a + b; }, 0);
        status.textContent = "Cleared " + n + " task instance(s) in " + runs.length +
          " run(s): Airflow runs them again. Reloading in 5 s.";
        selected().forEach(function (c) { c.classList.remove("sel"); c.setAttribute("data-state", "cleared"); });
        setTimeout(function () { window.location.reload(); }, 5000);
      }).catch(function (e) {
        status.textContent = "Clear failed: " + e.message;
        refresh();
      });
    });
    refresh();
    filter();
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("table.sortable").forEach(makeSortable);
    var grid = document.querySelector("table.grid");
    if (grid) setupGrid(grid);
  });
})();
