// js_on_load of the Vote tab's battle component (`element` is its root).
// 1. Decision time: when a new battle (new data-seq) has both images decoded, note the time;
//    vote buttons send performance.now() - that time as decision_ms.
// 2. Keyboard shortcuts: ← left, → right, ↑ tie, ↓ both bad, S skip (also 1-4 and 0).
(() => {
  let seenSeq = null;
  window.arenaShownAt = null;
  window.arenaDecisionMs = () =>
    window.arenaShownAt === null ? null : Math.round(performance.now() - window.arenaShownAt);
  const noteBattle = () => {
    const battle = element.querySelector(".arena-battle.arena-open");
    if (!battle || battle.dataset.seq === seenSeq) return;
    seenSeq = battle.dataset.seq;
    window.arenaShownAt = null;
    const imgs = [...battle.querySelectorAll(".arena-frame img")];
    Promise.all(imgs.map((img) => img.decode().catch(() => null))).then(() => {
      if (battle.dataset.seq === seenSeq) window.arenaShownAt = performance.now();
    });
  };
  new MutationObserver(noteBattle).observe(element, { childList: true, subtree: true });
  noteBattle();
  if (window.arenaKeysInstalled) return;
  window.arenaKeysInstalled = true;
  const keys = {
    ArrowLeft: "vote-left", "1": "vote-left",
    ArrowRight: "vote-right", "2": "vote-right",
    ArrowUp: "vote-tie", "3": "vote-tie",
    ArrowDown: "vote-both_bad", "4": "vote-both_bad",
    s: "vote-skip", S: "vote-skip", "0": "vote-skip",
  };
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    const target = event.target;
    if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName)))
      return;
    const id = keys[event.key];
    if (!id) return;
    const open = document.querySelector("#arena-battle .arena-battle.arena-open");
    const button = document.getElementById(id);
    if (!open || !button || button.disabled || button.offsetParent === null) return;
    event.preventDefault();
    button.click();
  });
})();
