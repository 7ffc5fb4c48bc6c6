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
  // A form sent back with errors: focus its first bad field (not the dialog's Close button).
  const invalid = document.querySelector("[aria-invalid=true]");
  if (invalid) invalid.focus();

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
    const shown = button.querySelector("[data-copy-text]") || button;
    const label = shown.textContent;
    try {
      await copyText(source.textContent.trim());
      shown.textContent = "Copied";
      announce("Copied to the clipboard");
    } catch (error) {
      shown.textContent = "Select and copy";
    }
    window.setTimeout(() => { shown.textContent = label; }, 1600);
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

  // Time zone pickers with nothing chosen yet start at the browser's own zone.
  for (const select of $$("select[data-default-timezone]")) {
    if (select.dataset.chosen) continue;
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
    if (Array.from(select.options).some((o) => o.value === zone)) select.value = zone;
  }
  // A local date and time picker sends the browser's offset beside it, so the server knows the moment.
  for (const offset of $$("input[data-utc-offset]")) {
    offset.value = String(-new Date().getTimezoneOffset());
  }

  // This browser's Web Push subscription: subscribe through the service worker with the server's
  // VAPID key, and save the subscription on the server (or forget it). The id of the target it
  // became is kept here, to mark its row and to know whether the server still has it.
  const pushBox = document.querySelector("[data-push]");
  if (pushBox) setUpPush(pushBox).catch((error) => console.warn("push settings:", error));

  async function setUpPush(box) {
    const status = box.querySelector("[data-push-status]");
    const button = box.querySelector("[data-push-toggle]");
    const say = (text) => { status.textContent = text; };
    const TARGET = "glimpze-push-target";
    if (!("serviceWorker" in navigator) || !("PushManager" in window) || !("Notification" in window)) {
      say("This browser cannot receive push notifications.");
      return;
    }
    if (!window.isSecureContext) {
      say("Push notifications need HTTPS (or localhost): open the dashboard at its https:// address.");
      return;
    }
    if (!box.dataset.vapidKey) {
      say("The server's push keys are not ready yet: reload the page in a moment.");
      return;
    }
    const registration = await navigator.serviceWorker.ready;
    const post = (url, body) => fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": box.dataset.csrf },
      body: JSON.stringify(body),
    });
    const problem = async (response) => {
      try {
        const p = await response.json();
        return (p.errors && p.errors[0] && `${p.errors[0].path}: ${p.errors[0].message}`) || p.detail || p.title;
      } catch (error) {
        return `the server answered ${response.status}`;
      }
    };
    const serverKey = () => {
      const text = box.dataset.vapidKey.replace(/-/g, "+").replace(/_/g, "/");
      return Uint8Array.from(atob(text + "=".repeat((4 - (text.length % 4)) % 4)), (c) => c.charCodeAt(0));
    };
    const draw = async () => {
      const subscription = await registration.pushManager.getSubscription();
      const id = localStorage.getItem(TARGET);
      const row = subscription && id ? document.querySelector(`[data-target="${CSS.escape(id)}"]`) : null;
      for (const mark of $$("[data-this-browser]")) mark.hidden = !row || !row.contains(mark);
      if (Notification.permission === "denied") {
        say("Notifications are blocked for this site: allow them in the browser's site settings.");
        button.hidden = true;
        return;
      }
      button.dataset.state = row ? "on" : "off";
      button.textContent = row ? "Turn off notifications" : "Turn on notifications";
      button.hidden = false;
      button.disabled = false;
      say(row ? "This browser gets push notifications." : "This browser does not get push notifications.");
    };
    const subscribe = async () => {
      const options = { userVisibleOnly: true, applicationServerKey: serverKey() };
      try {
        return await registration.pushManager.subscribe(options);
      } catch (error) {
        // Subscribed earlier with other server keys (a restored data dir): start again.
        const old = await registration.pushManager.getSubscription();
        if (!old) throw error;
        await old.unsubscribe();
        return registration.pushManager.subscribe(options);
      }
    };
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        if (button.dataset.state === "on") {
          const subscription = await registration.pushManager.getSubscription();
          if (subscription) {
            const response = await post(box.dataset.unsubscribe, { endpoint: subscription.endpoint });
            if (!response.ok && response.status !== 422) throw new Error(await problem(response));
            await subscription.unsubscribe();
          }
          localStorage.removeItem(TARGET);
        } else {
          if ((await Notification.requestPermission()) !== "granted") {
            await draw();
            return;
          }
          const subscription = await subscribe();
          const response = await post(box.dataset.subscribe, subscription.toJSON());
          if (!response.ok) throw new Error(await problem(response));
          localStorage.setItem(TARGET, (await response.json()).id);
        }
        window.location.reload();  // the list of targets changed
      } catch (error) {
        say(`That did not work: ${error.message || error}`);
        button.disabled = false;
      }
    });
    await draw();
  }

  // Relative times ("3 min ago") and late tiles, redrawn once a minute: local clock work, no request.
  const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto", style: "short" });
  const ago = (date) => {
    const seconds = Math.round((date.getTime() - Date.now()) / 1000);
    // A second either way is the same moment (the server's clock and this one may differ a little).
    if (seconds > 2 && seconds < 45) return "in a moment";
    if (seconds <= 2 && seconds > -45) return "just now";
    const steps = [[60, "second"], [3600, "minute"], [86400, "hour"], [604800, "day"], [2629800, "week"], [31557600, "month"]];
    let unit = "year";
    let size = 31557600;
    for (let i = 1; i < steps.length; i += 1) {
      if (Math.abs(seconds) < steps[i][0]) {
        [size, unit] = steps[i - 1];
        break;
      }
    }
    return relative.format(Math.round(seconds / size), unit);
  };
  const STALE_FACTOR = 1.5;  // tiles.STALE_FACTOR
  const tick = (root = document, checkLate = root === document) => {
    for (const time of $$("time[data-relative]", root)) {
      const date = new Date(time.getAttribute("datetime"));
      if (Number.isNaN(date.getTime())) continue;
      time.title = formatter.format(date);
      time.textContent = ago(date);
    }
    if (!checkLate) return;
    for (const tile of $$("[data-tile][data-expected][data-received-at]", root)) {
      const age = (Date.now() - new Date(tile.dataset.receivedAt).getTime()) / 1000;
      const late = age > Number(tile.dataset.expected) * STALE_FACTOR;
      if (late !== tile.classList.contains("tile-late")) refreshTile(tile.dataset.feed);
    }
  };
  window.setInterval(() => { if (!document.hidden) tick(); }, 60000);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) tick(); });

  // Live pages: one Server-Sent Events stream (`/live`) of change notices {kind, id, of}. A page
  // re-reads what a notice names: a tile, the navigation's counts, or its [data-live-region]s, which
  // say which notices concern them in data-live-on ("kind", or "kind:id-or-owner", space-separated).
  const tiles = document.querySelector("[data-tiles]");
  const replaceTile = async (feedId, { highlight = true } = {}) => {
    const response = await fetch(`/feeds/${encodeURIComponent(feedId)}/tile`, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (!response.ok) return null;
    const template = document.createElement("template");
    template.innerHTML = (await response.text()).trim();
    const fresh = template.content.querySelector("[data-tile]");
    if (!fresh) return null;
    let changed = false;
    for (const old of $$(`[data-tile][data-feed="${CSS.escape(feedId)}"]`)) {
      if (old.closest(".is-arranging")) continue;  // the arranged grid keeps its move buttons
      changed = old.dataset.eventId !== fresh.dataset.eventId;
      const copy = fresh.cloneNode(true);
      tick(copy);
      if (changed && highlight) {
        copy.classList.add("tile-fresh");
        window.setTimeout(() => copy.classList.remove("tile-fresh"), 2600);
      }
      old.replaceWith(copy);
    }
    for (const slot of $$(`[data-tile-slot="${CSS.escape(feedId)}"]`)) {
      const copy = fresh.cloneNode(true);
      tick(copy);
      copy.classList.add("tile-fresh");
      slot.replaceChildren(copy);
      slot.dispatchEvent(new CustomEvent("tile", { bubbles: true, detail: { eventId: fresh.dataset.eventId } }));
    }
    if (changed) announce(`${fresh.querySelector(".tile-name")?.textContent || "A feed"} updated`);
    return fresh;
  };
  const refreshing = new Map();  // feed id -> a read in flight; one more after it when asked again
  function refreshTile(feedId) {
    const running = refreshing.get(feedId);
    if (running) {
      running.again = true;
      return;
    }
    const state = { again: false };
    refreshing.set(feedId, state);
    replaceTile(feedId).catch(() => undefined).finally(() => {
      refreshing.delete(feedId);
      if (state.again) refreshTile(feedId);
    });
  }
  const updateCounts = async () => {
    try {
      const response = await fetch("/counts", { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) return;
      const counts = await response.json();
      for (const badge of $$("[data-count]")) {
        const n = counts[badge.dataset.count] || 0;
        badge.textContent = String(n);
        badge.hidden = n === 0;
      }
    } catch (error) {
      // the next notice tries again
    }
  };
  // Regions: read the page again (X-Glimpze-Redraw leaves its notices alone) and swap each region.
  let regionsRunning = null;
  let regionsAgain = false;
  const refreshRegions = () => {
    if (regionsRunning) {
      regionsAgain = true;
      return regionsRunning;
    }
    regionsRunning = fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html", "X-Glimpze-Redraw": "1" } })
      .then(async (response) => {
        if (!response.ok || new URL(response.url).pathname !== window.location.pathname) return;
        const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
        for (const region of $$("[data-live-region][id]")) {
          const next = fresh.getElementById(region.id);
          if (!next) continue;
          // Keep what the person is typing: a region holding the focused field is left for now.
          if (region.contains(document.activeElement) && document.activeElement.matches("input, textarea, select")) {
            regionsAgain = true;
            continue;
          }
          region.replaceChildren(...Array.from(next.childNodes, (node) => document.importNode(node, true)));
          localTimes(region);
          tick(region);
          region.dispatchEvent(new CustomEvent("redrawn", { bubbles: true }));
        }
        document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
      })
      .catch(() => undefined)
      .finally(() => {
        regionsRunning = null;
        if (regionsAgain) {
          regionsAgain = false;
          window.setTimeout(refreshRegions, 250);
        }
      });
    return regionsRunning;
  };
  const concerns = (region, change) => {
    const wanted = (region.dataset.liveOn || "").split(/\s+/).filter(Boolean);
    return wanted.some((w) => {
      const [kind, which] = w.split(":");
      return kind === change.kind && (!which || which === change.id || which === change.of);
    });
  };
  const refreshEverything = () => {
    for (const tile of $$("[data-tile]")) refreshTile(tile.dataset.feed);
    for (const slot of $$("[data-tile-slot]")) refreshTile(slot.dataset.tileSlot);
    updateCounts();
    if (document.querySelector("[data-live-region]")) refreshRegions();
  };
  const heard = (change) => {
    if (change.kind === "resync") {
      refreshEverything();
      return;
    }
    if (change.kind === "tile" || change.kind === "approval") {
      const feedId = change.kind === "tile" ? change.id : change.of;
      if (feedId && ($$(`[data-tile][data-feed="${CSS.escape(feedId)}"]`).length || document.querySelector(`[data-tile-slot="${CSS.escape(feedId)}"]`))) {
        refreshTile(feedId);
      }
    }
    if (["approval", "session", "message"].includes(change.kind)) updateCounts();
    if ($$("[data-live-region]").some((region) => concerns(region, change))) {
      refreshRegions().then(() => {
        if (change.kind === "approval") announce("Approvals updated");
        if (change.kind === "message") announce("New message");
      });
    }
  };

  const liveUrl = document.body.dataset.live;
  if (liveUrl && "EventSource" in window) {
    const status = document.querySelector("[data-live-status]");
    const setStatus = (state, text) => {
      if (status) {
        status.dataset.state = state;
        status.textContent = text;
      }
      document.body.dataset.liveState = state;
    };
    let dropped = false;
    const source = new EventSource(liveUrl);
    source.addEventListener("ready", () => {  // subscribed: every change from now on is told
      setStatus("open", "Live");
      if (dropped) refreshEverything();  // notices may have been missed while away
      dropped = false;
    });
    source.addEventListener("error", () => {
      dropped = true;
      // The browser reconnects by itself, unless the server refused the stream (signed out).
      if (source.readyState === EventSource.CLOSED) setStatus("closed", "Not live: reload the page");
      else setStatus("closed", "Reconnecting…");
    });
    source.addEventListener("change", (message) => {
      let change;
      try { change = JSON.parse(message.data); } catch (error) { return; }
      heard(change);
    });
  }

  // Arranging the home grid: drag a tile by its grip, press its arrow buttons, or use the arrow keys
  // on a focused tile. The order is saved with POST /tiles/order (the buttons also work without us).
  if (tiles && tiles.classList.contains("is-arranging")) {
    const order = () => $$("[data-tile]", tiles).map((tile) => tile.dataset.feed);
    const save = async () => {
      const response = await fetch("/tiles/order", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": tiles.dataset.csrf },
        body: JSON.stringify({ feeds: order() }),
      });
      if (!response.ok) announce("The order was not saved: reload the page and try again");
    };
    const moveBy = (tile, step) => {
      const all = $$("[data-tile]", tiles);
      const at = all.indexOf(tile);
      const to = at + step;
      if (to < 0 || to >= all.length) return false;
      if (step < 0) all[to].before(tile);
      else all[to].after(tile);
      announce(`${tile.querySelector(".tile-name").textContent}: position ${to + 1} of ${all.length}`);
      return true;
    };
    tiles.addEventListener("click", (event) => {
      const button = event.target.closest("button[name=direction]");
      if (!button) return;
      event.preventDefault();
      const tile = button.closest("[data-tile]");
      if (moveBy(tile, button.value === "earlier" ? -1 : 1)) {
        save();
        button.focus();
      }
    });
    tiles.addEventListener("keydown", (event) => {
      const tile = event.target.closest("[data-tile]");
      if (!tile || !event.target.matches(".tile-link, button")) return;
      const step = { ArrowLeft: -1, ArrowUp: -1, ArrowRight: 1, ArrowDown: 1 }[event.key];
      if (!step) return;
      event.preventDefault();
      if (moveBy(tile, step)) {
        save();
        event.target.focus();
      }
    });
    // Links do not navigate while arranging: a tap is for picking the tile up.
    for (const link of $$(".tile-link", tiles)) link.addEventListener("click", (event) => event.preventDefault());
    let dragged = null;
    tiles.addEventListener("pointerdown", (event) => {
      const grip = event.target.closest("[data-grip], .tile-link");
      if (!grip || event.button !== 0) return;
      dragged = grip.closest("[data-tile]");
      dragged.classList.add("is-dragging");
      tiles.setPointerCapture(event.pointerId);
    });
    tiles.addEventListener("pointermove", (event) => {
      if (!dragged) return;
      const over = document.elementFromPoint(event.clientX, event.clientY)?.closest("[data-tile]");
      if (!over || over === dragged || over.parentElement !== tiles) return;
      const box = over.getBoundingClientRect();
      const after = event.clientX > box.left + box.width / 2 || event.clientY > box.bottom - 4;
      if (after) over.after(dragged);
      else over.before(dragged);
    });
    const drop = () => {
      if (!dragged) return;
      dragged.classList.remove("is-dragging");
      dragged = null;
      save();
    };
    tiles.addEventListener("pointerup", drop);
    tiles.addEventListener("pointercancel", drop);
  }

  // The feed-created dialog waits for the first event; its tile arrives through the live channel.
  document.addEventListener("tile", (event) => {
    const box = event.target.closest("[data-first-event]");
    if (!box) return;
    const status = box.querySelector("[data-first-event-status]");
    if (status) status.textContent = "Your first event arrived. This is your widget:";
    box.dataset.arrived = "1";
  });

  tick();
})();
