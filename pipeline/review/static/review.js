// qcode review: keyboard shortcuts and the code filter. Every action also has a button or a
// link on the page; the keys only press them, so the page works without this script too.
(function () {
  "use strict";

  const page = document.body.dataset.page;
  const form = document.getElementById("unit-form");
  const help = document.getElementById("help");

  function isTyping(element) {
    if (!element) return false;
    if (element.isContentEditable || element.tagName === "TEXTAREA") return true;
    if (element.tagName === "SELECT") return true;
    const buttons = ["radio", "checkbox", "submit", "button", "reset"];
    return element.tagName === "INPUT" && !buttons.includes(element.type);
  }

  function follow(id) {
    const link = document.getElementById(id);
    if (link) window.location.assign(link.href);
  }

  function toggleHelp() {
    help.hidden = !help.hidden;
  }

  function save() {
    if (form) form.requestSubmit();
  }

  function done() {
    const button = document.getElementById("done");
    if (form && button) form.requestSubmit(button);
  }

  // -- the unit page -------------------------------------------------------------------------

  function rows() {
    return Array.from(document.querySelectorAll("#codings tr[data-row]"));
  }

  function choose(row, value) {
    const input = row.querySelector(`input[type=radio][value="${value}"]`);
    if (input) input.checked = true;
  }

  function toggleAccept(n) {
    const row = rows()[n - 1];
    if (!row) return;
    const accept = row.querySelector("input[value=accept]");
    choose(row, accept.checked ? "" : "accept");
  }

  function focusedRow() {
    const here = document.activeElement && document.activeElement.closest("tr[data-row]");
    return here || rows()[0];
  }

  const filter = document.getElementById("code-filter");
  const codeItems = Array.from(document.querySelectorAll("#code-list li"));
  const adding = document.getElementById("adding");

  function applyFilter() {
    const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    for (const item of codeItems) {
      const text = item.dataset.search;
      item.hidden = !words.every((word) => text.includes(word));
    }
  }

  function showAdding() {
    const picked = codeItems
      .map((item) => item.querySelector("input"))
      .filter((box) => box.checked)
      .map((box) => box.value);
    adding.textContent = picked.length ? `Adding: ${picked.join(", ")}` : "";
  }

  if (filter) {
    filter.addEventListener("input", applyFilter);
    filter.addEventListener("keydown", (event) => {
      if (event.key !== "Enter") return;
      // Enter picks the first match and hands the keys back to the shortcuts; it never submits
      // the form, and an empty box picks nothing (a second Enter must not add a random code).
      event.preventDefault();
      const first = codeItems.find((item) => !item.hidden);
      if (first && filter.value.trim()) first.querySelector("input").checked = true;
      filter.value = "";
      applyFilter();
      showAdding();
      filter.blur();
    });
    document.getElementById("code-list").addEventListener("change", showAdding);
  }

  const memo = document.getElementById("memo");
  if (memo) {
    memo.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        save();
      }
    });
  }

  const unitKeys = {
    a: () => rows().forEach((row) => choose(row, "accept")),
    r: () => rows().forEach((row) => choose(row, "reject")),
    x: () => {
      const row = focusedRow();
      if (row) choose(row, "reject");
    },
    c: () => filter && filter.focus(),
    m: () => memo && memo.focus(),
    s: save,
    Enter: save,
    d: done,
    j: () => follow("next"),
    n: () => follow("next"),
    k: () => follow("prev"),
    p: () => follow("prev"),
    q: () => follow("queue-link"),
  };

  const queueKeys = {
    s: () => follow("start"),
    Enter: () => follow("start"),
    j: () => follow("next-page"),
    n: () => follow("next-page"),
    k: () => follow("prev-page"),
    p: () => follow("prev-page"),
  };

  const keys = page === "unit" ? unitKeys : page === "queue" ? queueKeys : {};

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (isTyping(target)) {
      if (event.key === "Escape") target.blur();
      return;
    }
    if (event.key === "Escape" && help && !help.hidden) {
      toggleHelp();
      return;
    }
    if (event.key === "?") {
      event.preventDefault();
      toggleHelp();
      return;
    }
    // Enter on a link or button keeps its usual meaning.
    if (event.key === "Enter" && target.closest && target.closest("a, button")) return;
    if (page === "unit" && /^[1-9]$/.test(event.key)) {
      event.preventDefault();
      toggleAccept(Number(event.key));
      return;
    }
    const action = keys[event.key];
    if (action) {
      event.preventDefault();
      action();
    }
  });

  for (const button of document.querySelectorAll("[data-help]")) {
    button.addEventListener("click", toggleHelp);
  }

  // Filters on the queue apply as soon as one is changed.
  for (const select of document.querySelectorAll("select[data-autosubmit]")) {
    select.addEventListener("change", () => select.form.requestSubmit());
  }
})();
