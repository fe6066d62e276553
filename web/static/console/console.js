// Merchant console behaviour: the store switcher and live feed-import progress.
// No framework and no inline scripts; pages work without JS except for live updates.
(function () {
  "use strict";

  function storeSwitch() {
    document.querySelectorAll("[data-store-switch] select").forEach(function (select) {
      select.addEventListener("change", function () {
        window.location.href = select.options[select.selectedIndex].getAttribute("data-url");
      });
    });
  }

  function render(box, s) {
    var bar = box.querySelector(".progress");
    bar.querySelector("span").style.width = s.percent + "%";
    bar.classList.toggle("done", s.status === "done");
    bar.classList.toggle("failed", s.status === "failed");
    bar.setAttribute("aria-valuenow", String(s.percent));
    var badge = box.querySelector("[data-field=status]");
    badge.textContent = s.status;
    badge.className = "badge " + s.status;
    var rows = s.total ? s.processed.toLocaleString() + " of " + s.total.toLocaleString() + " rows"
                       : s.processed.toLocaleString() + " rows";
    box.querySelector("[data-field=rows]").textContent = rows;
    box.querySelector("[data-field=percent]").textContent = s.percent + "%";
    var error = box.querySelector("[data-field=error]");
    error.textContent = s.error;
    error.hidden = !s.error;
  }

  function poll(box) {
    var url = box.getAttribute("data-status-url");
    var delay = 700;
    function tick() {
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
        .then(function (s) {
          render(box, s);
          // finished: reload once for the server-rendered counts and validation report
          if (s.finished) { window.location.reload(); } else { window.setTimeout(tick, delay); }
        })
        .catch(function () { delay = Math.min(delay * 2, 10000); window.setTimeout(tick, delay); });
    }
    tick();
  }

  document.addEventListener("DOMContentLoaded", function () {
    storeSwitch();
    document.querySelectorAll("[data-status-url]").forEach(function (box) {
      if (box.getAttribute("data-finished") !== "true") { poll(box); }
    });
  });
})();
