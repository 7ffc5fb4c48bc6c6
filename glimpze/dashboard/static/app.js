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

  // Quiet hours: an empty time zone field starts as the browser's own.
  for (const input of $$("input[data-default-timezone]")) {
    if (!input.value) input.value = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
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
    // Pages with [data-live-region] parts (the approvals) redraw them from a fresh copy of the page.
    let refreshing = null;
    let again = false;
    const refresh = () => {
      if (refreshing) {
        again = true;  // one more once this one is done: it may have been drawn before the change
        return refreshing;
      }
      refreshing = fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html", "X-Glimpze-Redraw": "1" } })
        .then(async (response) => {
          if (!response.ok || new URL(response.url).pathname !== window.location.pathname) return;
          const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
          for (const region of $$("[data-live-region][id]")) {
            const next = fresh.getElementById(region.id);
            if (!next) continue;
            region.replaceChildren(...Array.from(next.childNodes, (node) => document.importNode(node, true)));
            localTimes(region);
          }
          document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
        })
        .catch(() => undefined)
        .finally(() => {
          refreshing = null;
          if (again) {
            again = false;
            refresh();
          }
        });
      return refreshing;
    };
    source.addEventListener("approval", () => {
      if (!document.querySelector("[data-live-region]")) return;
      refresh().then(() => announce("Approvals updated"));
    });
  }
})();
