// Progressive enhancement only: the pages read without it. Counts down the time a plan awaiting
// approval has left.
(function () {
  function text(seconds) {
    if (seconds <= 0) return "expired";
    if (seconds < 60) return seconds + " s left";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min left";
    if (seconds < 86400) return Math.floor(seconds / 3600) + " h " + Math.floor((seconds % 3600) / 60) + " min left";
    return Math.floor(seconds / 86400) + " d " + Math.floor((seconds % 86400) / 3600) + " h left";
  }
  function tick() {
    document.querySelectorAll("[data-expires]").forEach(function (element) {
      var left = Math.round((Date.parse(element.getAttribute("data-expires")) - Date.now()) / 1000);
      element.textContent = text(left);
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    tick();
    setInterval(tick, 1000);
  });
})();
