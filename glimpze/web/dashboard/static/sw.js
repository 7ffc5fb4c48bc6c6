/* Glimpze service worker: caches the app shell, shows push notifications, and opens the page a
   notification points at (an approval) when it is tapped. Pages themselves are never cached:
   they hold live data and secrets. __VERSION__ is replaced by the server with the assets' version. */
"use strict";

const VERSION = "__VERSION__";
const SHELL = "glimpze-shell-" + VERSION;
const SHELL_FILES = [
  "/static/app.css?v=" + VERSION,
  "/static/app.js?v=" + VERSION,
  "/static/app.css",
  "/static/offline.html",
  "/static/icons/icon-192.png",
  "/static/icons/badge-96.png",
];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(SHELL).then((cache) => cache.addAll(SHELL_FILES)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith("glimpze-") && k !== SHELL).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (url.pathname.startsWith("/static/")) {
    // Static files carry their version in the URL: the cached copy is always right.
    event.respondWith(
      caches.match(request).then((hit) => hit || fetch(request).then((response) => {
        if (response.ok) {
          const copy = response.clone();
          caches.open(SHELL).then((cache) => cache.put(request, copy));
        }
        return response;
      })),
    );
  } else if (request.mode === "navigate") {
    event.respondWith(fetch(request).catch(() => caches.match("/static/offline.html")));
  }
});

// Push: the server sends JSON {title, body, url, actions: [{action, title, url}]}.
function notificationFor(data) {
  const actions = Array.isArray(data.actions) ? data.actions.filter((a) => a && (a.action || a.id)) : [];
  const links = {};
  for (const a of actions) links[a.action || a.id] = a.url || data.url || "/";
  return {
    title: data.title || "Glimpze",
    options: {
      body: data.body || "",
      icon: "/static/icons/icon-192.png",
      badge: "/static/icons/badge-96.png",
      tag: data.tag || undefined,
      renotify: Boolean(data.tag),
      requireInteraction: actions.length > 0,
      data: { url: data.url || "/", links },
      actions: actions.slice(0, 2).map((a) => ({ action: a.action || a.id, title: a.title || a.label || a.action || a.id })),
    },
  };
}

function showPush(data) {
  const { title, options } = notificationFor(data || {});
  return self.registration.showNotification(title, options);
}

self.addEventListener("push", (event) => {
  let data = {};
  if (event.data) {
    try {
      data = event.data.json();
    } catch (error) {
      data = { body: event.data.text() };
    }
  }
  event.waitUntil(showPush(data));
});

// Only pages of this site open from a notification. The server writes its links with public_url,
// which may name it differently than this browser does (localhost, a LAN address): the same path here.
function sameSite(url) {
  try {
    const target = new URL(url, self.location.origin);
    if (target.origin === self.location.origin) return target.href;
    const here = new URL("/", self.location.origin);  // never parsed from the link: "//host" stays a path
    here.pathname = target.pathname;
    here.search = target.search;
    here.hash = target.hash;
    return here.href;
  } catch (error) {
    return new URL("/", self.location.origin).href;
  }
}

// Open `url`: in a window of the app that is already open when there is one, else a new one.
async function openPage(url) {
  const target = sameSite(url);
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  for (const client of windows) {
    if (new URL(client.url).origin !== self.location.origin || typeof client.navigate !== "function") continue;
    try {
      const navigated = await client.navigate(target);
      if (navigated) {
        await navigated.focus().catch(() => undefined);
        return navigated;
      }
    } catch (error) {
      // not controlled by this worker (yet): open a window instead
    }
  }
  return self.clients.openWindow(target);
}

// A tap on the notification opens its page (an approval's); a tap on an action button, its link.
function notificationClicked(event) {
  const data = event.notification.data || {};
  event.notification.close();
  const url = (event.action && data.links && data.links[event.action]) || data.url || "/";
  event.waitUntil(openPage(url));
}

self.addEventListener("notificationclick", notificationClicked);
