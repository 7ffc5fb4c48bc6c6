/* Glimpze dashboard: the only script on the pages (no inline scripts: the CSP forbids them).
   Everything works without it; it adds the service worker, dialogs, copy buttons, local times
   and live widgets. */
"use strict";

(() => {
  const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

  // The service worker: installable app, cached shell, push notifications.
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch((error) => {
      console.warn("service worker not registered:", error);
    });
  }

  const announce = (text) => {
    const region = document.getElementById("announcer");
    if (region) {
      region.textContent = "";
      window.setTimeout(() => { region.textContent = text; }, 50);
    }
  };

  // Dialogs: [data-open-dialog=id] opens one; a dialog rendered open by the server becomes modal.
  document.addEventListener("click", (event) => {
    const opener = event.target.closest("[data-open-dialog]");
    if (opener) {
      const dialog = document.getElementById(opener.dataset.openDialog);
      if (dialog && typeof dialog.showModal === "function") {
        event.preventDefault();
        dialog.showModal();
        const first = dialog.querySelector("input:not([type=hidden]), select, textarea, button");
        if (first) first.focus();
      }
      return;
    }
    const closer = event.target.closest("[data-close-dialog]");
    if (closer) {
      const dialog = closer.closest("dialog");
      if (dialog && dialog.open) {
        event.preventDefault();
        dialog.close();
        if (closer.dataset.closeDialog) window.location.assign(closer.dataset.closeDialog);
      }
    }
  });
  for (const dialog of $$("dialog[data-modal][open]")) {
    if (typeof dialog.showModal === "function") {
      dialog.close();
      dialog.showModal();
    }
  }

  // Copy buttons: [data-copy=id] copies that element's text.
  const copyText = async (text) => {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return;
    }
    // Plain http on a LAN address is not a secure context: fall back to a selection.
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "visually-hidden";
    document.body.appendChild(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  };
  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    const source = document.getElementById(button.dataset.copy);
    if (!source) return;
    const label = button.textContent;
    try {
      await copyText(source.textContent.trim());
      button.textContent = "Copied";
      announce("Copied to the clipboard");
    } catch (error) {
      button.textContent = "Select and copy";
    }
    window.setTimeout(() => { button.textContent = label; }, 1600);
  });

  // Times: shown in the browser's own time zone.
  const formatter = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  const localTimes = (root = document) => {
    for (const time of $$("time[datetime]", root)) {
      const date = new Date(time.getAttribute("datetime"));
      if (!Number.isNaN(date.getTime())) {
        time.title = time.getAttribute("datetime");
        time.textContent = formatter.format(date);
      }
    }
  };
  localTimes();

  // Live widgets: the server sends `widget` events (Server-Sent Events) when a feed's widget changes.
  const live = document.querySelector("[data-live]");
  if (live && "EventSource" in window) {
    const status = document.querySelector(".live-status");
    const setStatus = (state, text) => {
      if (status) {
        status.dataset.state = state;
        status.textContent = text;
      }
    };
    const source = new EventSource(live.dataset.live);
    source.addEventListener("open", () => setStatus("open", "Live"));
    source.addEventListener("error", () => {
      // The browser reconnects by itself, unless the server refused the stream (signed out).
      if (source.readyState === EventSource.CLOSED) setStatus("closed", "Not live: reload the page");
      else setStatus("closed", "Reconnecting…");
    });
    source.addEventListener("widget", (message) => {
      let data;
      try { data = JSON.parse(message.data); } catch (error) { return; }
      const card = document.getElementById("widget-" + data.feed_id);
      if (!card) return;
      const bump = (url) => {
        const next = new URL(url, window.location.href);
        next.searchParams.set("v", data.event_id);
        return next.pathname + next.search;
      };
      for (const img of $$("img[data-widget-image]", card)) {
        img.src = bump(img.getAttribute("src"));
        if (data.label) {
          img.alt = `${card.dataset.name ? card.dataset.name + " widget: " : ""}${data.label} (${img.dataset.size || ""})`;
        }
      }
      for (const source of $$("source[srcset]", card)) source.srcset = bump(source.getAttribute("srcset"));
      const url = typeof data.widget_url === "string" && /^https?:\/\//i.test(data.widget_url) ? data.widget_url : null;
      for (const tile of $$("[data-tile]", card)) {
        if (!url) continue;
        if (tile.tagName === "A") {
          tile.href = url;
          continue;
        }
        const link = document.createElement("a");  // the widget became tappable
        link.className = tile.className;
        link.dataset.tile = "";
        link.href = url;
        link.target = "_blank";
        link.rel = "noopener noreferrer";
        while (tile.firstChild) link.appendChild(tile.firstChild);
        tile.replaceWith(link);
      }
      const updated = card.querySelector("[data-updated]");
      if (updated && data.received_at) {
        updated.innerHTML = "";
        const time = document.createElement("time");
        time.setAttribute("datetime", data.received_at);
        updated.appendChild(time);
        localTimes(updated);
      }
      card.dataset.eventId = data.event_id;
      announce((card.dataset.name || "A widget") + " updated");
    });
  }
})();
