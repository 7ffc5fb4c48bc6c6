/* The kiosk page: follows the screen's live channel and swaps in the new picture when it changes.
   The server says when (a `screen` event with the picture's new filename); nothing polls or reloads. */
(() => {
  "use strict";
  const img = document.querySelector("[data-screen]");
  const note = document.querySelector("[data-note]");
  if (!img || !("EventSource" in window)) return;
  let shown = img.dataset.etag;
  const say = (text) => {
    note.textContent = text;
    note.hidden = !text;
  };
  const show = (etag) => {
    if (etag === shown) return;
    const next = new Image();
    next.onload = () => {
      img.src = next.src;  // swapped once loaded: no blank frame
      img.dataset.etag = etag;
      document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
    };
    next.src = `${img.dataset.src}&v=${encodeURIComponent(etag)}`;
    shown = etag;
  };
  const source = new EventSource(img.dataset.live);
  source.addEventListener("open", () => say(""));
  source.addEventListener("screen", (message) => {
    try {
      show(JSON.parse(message.data).etag);
    } catch (error) {
      // a malformed message: wait for the next
    }
  });
  source.addEventListener("gone", () => {
    source.close();
    say("This screen was deleted or its link changed. Open the new link from Glimpze's Screens page.");
  });
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) say("Not live: reload the page.");
    else say("Reconnecting…");
  });
})();
