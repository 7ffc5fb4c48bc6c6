/*
 * Glimpze visitor widget: a live conversation with a site's agents and assistant, with its
 * call-to-action cards. One file, no dependencies, no build step. Embed it with
 *
 *   <script src="https://glimpze.example/widget.js" data-token-url="/my-backend/glimpze-token" defer></script>
 *
 * data-token-url  (required) the site's own endpoint: answers a POST with {"token", "expires_at"},
 *                 a widget token it minted with POST /v1/widget-tokens (the API key stays there)
 * data-title      the panel's heading (default "Chat")
 * data-greeting   a line shown above an empty conversation
 * data-glimpze-url  Glimpze's address, when this file is served from somewhere else
 * Colours: `glimpze-widget { --glimpze-accent: #0f766e; }` in the site's CSS.
 *
 * How it works (DESIGN §7, Visitor widget):
 * - Isolation: everything lives in the shadow root of a <glimpze-widget> element. Page CSS cannot
 *   select inside it, and the :host rule's !important declarations win over the page's (the inner
 *   context wins for important rules), so `body * { display: none !important }` leaves it alone.
 *   The root is open: closing it would not stop a page's scripts (they run first and could patch
 *   attachShadow), and open lets tests, extensions and the site's developers inspect it. Styles go
 *   in through a constructed stylesheet, which a site's `style-src` CSP does not block.
 * - Text from the server is only ever inserted as text nodes (never innerHTML); links in messages
 *   and cards get an href only when they are http(s).
 * - Live updates: an EventSource on /widget/v1/sessions/{id}/stream, reconnected by this script (not
 *   the browser) with `?last_event_id=` and a fresh token, after a backoff when the server is down.
 *   After each failure one poll of GET …/messages?after= catches up and tells "server down" from
 *   "streams do not get through here" (a proxy): after three of the latter, or without EventSource,
 *   the widget polls instead (and tries the stream again after ten minutes).
 * - The token is renewed at 80 % of its life and the stream reopened with it from the last event
 *   seen, so nothing is lost or repeated; a 401 renews it at once.
 * - A card signed more than 240 s ago is signed again (GET /widget/v1/ctas/{id}/url) before it
 *   opens, so the destination's 300 s window never refuses a visitor.
 * - Only what can succeed later is retried: network errors, 5xx, and a 429 that says when
 *   (Retry-After). Any other refusal (this page's origin is not one of the project's widget
 *   origins, a token Glimpze rejects, a token endpoint that answers 4xx) is shown in the panel with
 *   the server's reason, logged to the console, and ends every request of this page.
 * - The panel's header shows the session's agent (team name, avatar, expected reply time); a
 *   `typing` event on the stream shows "typing…" until it expires or the message arrives.
 */
(() => {
  "use strict";

  if (window.__glimpzeWidget) return; // included twice
  window.__glimpzeWidget = true;

  const RENEW_AT = 0.8; // of a token's life
  const MAX_TOKEN_LIFE_MS = 3600e3;
  const RESIGN_AFTER_MS = 240e3;
  const POLL_OPEN_MS = 3000;
  const POLL_IDLE_MS = 15000;
  const POLL_HIDDEN_MS = 30000;
  const BACKOFF_MS = [1000, 2000, 4000, 8000, 15000, 30000];
  const STREAM_FAILURES_BEFORE_POLLING = 3;
  const STREAM_RETRY_FROM_POLLING_MS = 10 * 60e3;
  const PAUSE_HIDDEN_AFTER_MS = 60e3; // a hidden tab gives its connection back (browsers allow ~6 per host)
  const ANNOUNCE_WITHIN_MS = 120e3; // older unseen messages raise the badge but are not read aloud
  const MAX_CARDS = 3;
  const MAX_TEXT = 10000;
  const POLL_LIMIT = 100;
  const SEND_RETRIES_MS = [1000, 3000];
  const MAX_RETRY_AFTER_MS = 3600e3;
  const MAX_TYPING_MS = 30e3;
  const REPLY_TIMES = {
    in_a_few_minutes: "Typically replies in a few minutes",
    in_a_few_hours: "Typically replies in a few hours",
    in_a_day: "Typically replies in a day",
  };
  const LANGUAGE = /^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$/;

  const script = document.currentScript || document.querySelector("script[data-token-url]");
  const tokenUrl = script && script.dataset.tokenUrl;
  if (!tokenUrl) {
    console.error("Glimpze widget: add data-token-url to the <script> tag (your backend's token endpoint).");
    return;
  }
  const apiBase = new URL(script.dataset.glimpzeUrl || ".", script.src || location.href);
  if (!apiBase.pathname.endsWith("/")) apiBase.pathname += "/";
  const config = {
    title: script.dataset.title || "Chat",
    greeting: script.dataset.greeting || "Send us a message: we answer right here.",
  };

  // The server's clock minus ours, from Date headers: token lifetimes and card signing times are
  // server times, and a visitor's clock may be minutes off.
  let clockOffsetMs = null;
  const serverNow = () => Date.now() + (clockOffsetMs || 0);
  function noteServerDate(response, sentAt) {
    const date = Date.parse(response.headers.get("Date") || "");
    if (!Number.isNaN(date)) clockOffsetMs = date + 500 - (sentAt + Date.now()) / 2; // Date has whole seconds
  }

  class HttpError extends Error {
    constructor(status, problem, what, response) {
      super((problem && problem.detail) || `${what} answered HTTP ${status}`);
      this.status = status;
      this.code = problem && problem.code;
      this.retryAfterMs = response ? retryAfter(response) : null;
    }
  }
  class NetworkError extends Error {}

  function retryAfter(response) {
    const value = (response.headers.get("Retry-After") || "").trim();
    if (!value) return null;
    const ms = /^\d+$/.test(value) ? Number(value) * 1000 : Date.parse(value) - serverNow();
    return Number.isNaN(ms) ? null : Math.min(Math.max(ms, 0), MAX_RETRY_AFTER_MS);
  }
  // Only what can succeed later is tried again: the network, the server's own failures, a 429 that says when.
  const retryable = (error) =>
    !(error instanceof HttpError) || error.status >= 500 || (error.status === 429 && error.retryAfterMs !== null);

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const jitter = (ms) => Math.round(ms * (0.75 + Math.random() * 0.5));
  const backoff = (failures) => jitter(BACKOFF_MS[Math.min(Math.max(failures - 1, 0), BACKOFF_MS.length - 1)]);
  const retryDelay = (error, failures) =>
    error instanceof HttpError && error.retryAfterMs !== null ? error.retryAfterMs : backoff(failures);
  const randomKey = () =>
    crypto.randomUUID ? crypto.randomUUID() : Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");

  function httpUrl(value) {
    try {
      const url = new URL(value);
      return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
    } catch {
      return null;
    }
  }

  function httpsUrl(value) {
    const url = typeof value === "string" ? httpUrl(value) : null;
    return url && url.startsWith("https:") ? url : null;
  }

  // DOM helpers: attributes are set one by one, children appended as nodes or text nodes.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value === true ? "" : value);
    }
    node.append(...children.filter((child) => child !== null && child !== undefined));
    return node;
  }
  const SVG = "http://www.w3.org/2000/svg";
  function icon(name, paths) {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    svg.setAttribute("class", `icon icon-${name}`);
    for (const d of paths) {
      const path = document.createElementNS(SVG, "path");
      path.setAttribute("d", d);
      svg.append(path);
    }
    return svg;
  }
  const ICONS = {
    chat: ["M4 5.5A2.5 2.5 0 0 1 6.5 3h11A2.5 2.5 0 0 1 20 5.5v8a2.5 2.5 0 0 1-2.5 2.5H10l-4.5 4v-4h0A2.5 2.5 0 0 1 4 13.5z"],
    close: ["M6 6l12 12", "M18 6L6 18"],
    send: ["M4 12l16-8-6 16-2.5-6.5z", "M11.5 13.5L20 4"],
    open: ["M14 4h6v6", "M20 4l-9 9", "M18 14v5a1 1 0 0 1-1 1H5a1 1 0 0 1-1-1V7a1 1 0 0 1 1-1h5"],
  };

  // Messages: text as text nodes, http(s) links as links.
  const LINK = /\bhttps?:\/\/[^\s<>"']*[^\s<>"'.,;:!?)\]}]/gi;
  function appendText(node, text) {
    let last = 0;
    for (const match of text.matchAll(LINK)) {
      const href = httpUrl(match[0]);
      if (!href) continue;
      node.append(text.slice(last, match.index));
      node.append(el("a", { href, target: "_blank", rel: "noopener noreferrer nofollow" }, match[0]));
      last = match.index + match[0].length;
    }
    node.append(text.slice(last));
  }

  const storageKey = `glimpze-widget:${apiBase.href}`;
  function loadState() {
    try {
      return JSON.parse(localStorage.getItem(storageKey)) || {};
    } catch {
      return {};
    }
  }
  function saveState(state) {
    try {
      localStorage.setItem(storageKey, JSON.stringify(state));
    } catch {
      // storage blocked (private mode, policies): the session is resumed by the server instead
    }
  }

  /** Widget tokens from the site's backend, renewed at 80 % of their life. */
  class Tokens {
    constructor(url, onNew, onRefused) {
      this.url = url;
      this.onNew = onNew;
      this.onRefused = onRefused;
      this.refused = null; // set: no more requests
      this.token = null;
      this.expiresAt = 0; // our clock
      this.pending = null;
      this.timer = null;
      this.failures = 0;
    }

    get expired() {
      return Date.now() >= this.expiresAt - 2000;
    }

    async get() {
      return this.token && !this.expired ? this.token : this.fetch();
    }

    fetch() {
      if (this.refused) return Promise.reject(this.refused);
      if (!this.pending) this.pending = this.request().finally(() => (this.pending = null));
      return this.pending;
    }

    async request() {
      const sentAt = Date.now();
      let response;
      try {
        response = await fetch(this.url, {
          method: "POST",
          credentials: "same-origin",
          cache: "no-store",
          headers: { "Content-Type": "application/json", Accept: "application/json" },
          body: "{}",
        });
      } catch (error) {
        throw new NetworkError(`the token endpoint ${this.url} cannot be reached: ${error.message}`);
      }
      const body = response.ok ? await response.json().catch(() => null) : null;
      if (!body || typeof body.token !== "string" || typeof body.expires_at !== "string") {
        const what = `The token endpoint ${this.url}${response.ok ? ' must answer {"token", "expires_at"}; it' : ""}`;
        const error = new HttpError(response.status, null, what, response);
        if (!retryable(error)) this.onRefused(error); // the site's backend said no: asking again changes nothing
        throw error;
      }
      if (clockOffsetMs === null) noteServerDate(response, sentAt); // until Glimpze itself answers
      let life = Date.parse(body.expires_at) - serverNow();
      if (!(life > 0)) life = 30e3; // clocks disagree beyond repair: renew early rather than late
      life = Math.min(life, MAX_TOKEN_LIFE_MS);
      this.token = body.token;
      this.expiresAt = Date.now() + life;
      this.failures = 0;
      this.schedule(life * RENEW_AT);
      this.onNew();
      return this.token;
    }

    schedule(delay) {
      clearTimeout(this.timer);
      if (!this.refused) this.timer = setTimeout(() => this.renew(), delay);
    }

    stop(error) {
      this.refused = error;
      clearTimeout(this.timer);
    }

    async renew() {
      try {
        await this.fetch();
      } catch (error) {
        if (this.refused) return;
        console.warn("Glimpze widget: renewing the token failed; retrying.", error);
        this.failures += 1;
        // Before expiry, try again well within the time left; after it, back off.
        const left = this.expiresAt - Date.now();
        const delay = retryDelay(error, this.failures);
        this.schedule(left > 2000 ? Math.max(Math.min(delay, left / 2), 1000) : delay);
      }
    }
  }

  const CSS = `
:host {
  all: initial !important;
  display: block !important;
  position: fixed !important;
  right: 0 !important;
  bottom: 0 !important;
  width: 0 !important;
  height: 0 !important;
  overflow: visible !important;
  visibility: visible !important;
  opacity: 1 !important;
  z-index: 2147483000 !important;
}
@media print { :host { display: none !important; } }
[hidden] { display: none !important; }
.root {
  --gz-accent: var(--glimpze-accent, #2563eb);
  --gz-on-accent: #ffffff;
  --gz-bg: #ffffff;
  --gz-fg: #111827;
  --gz-muted: #4b5563;
  --gz-line: #e5e7eb;
  --gz-bubble: #f3f4f6;
  --gz-card: #ffffff;
  --gz-focus: #f59e0b;
  --gz-shadow: 0 12px 40px rgba(15, 23, 42, 0.22), 0 2px 8px rgba(15, 23, 42, 0.12);
  color-scheme: light;
  font: 400 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  color: var(--gz-fg);
  text-align: left;
  -webkit-font-smoothing: antialiased;
}
@media (prefers-color-scheme: dark) {
  .root {
    --gz-accent: var(--glimpze-accent, #3b82f6);
    --gz-bg: #111827;
    --gz-fg: #f9fafb;
    --gz-muted: #cbd5e1;
    --gz-line: #374151;
    --gz-bubble: #1f2937;
    --gz-card: #1f2937;
    --gz-shadow: 0 12px 40px rgba(0, 0, 0, 0.6), 0 2px 8px rgba(0, 0, 0, 0.4);
    color-scheme: dark;
  }
}
*, *::before, *::after { box-sizing: border-box; }
button, textarea { font: inherit; color: inherit; margin: 0; }
button { cursor: pointer; }
:focus-visible { outline: 3px solid var(--gz-focus); outline-offset: 2px; }
.input:focus-visible { outline: 2px solid var(--gz-accent); outline-offset: 0; border-color: transparent; }
.sr {
  position: absolute !important; width: 1px; height: 1px; padding: 0; margin: -1px;
  overflow: hidden; clip: rect(0 0 0 0); clip-path: inset(50%); white-space: nowrap; border: 0;
}
.icon { width: 24px; height: 24px; fill: none; stroke: currentColor; stroke-width: 2; stroke-linecap: round; stroke-linejoin: round; }
.launcher {
  position: fixed; right: 20px; bottom: 20px;
  right: max(20px, env(safe-area-inset-right)); bottom: max(20px, env(safe-area-inset-bottom));
  display: flex; align-items: center; justify-content: center;
  width: 56px; height: 56px; padding: 0; border: 0; border-radius: 50%;
  background: var(--gz-accent); color: var(--gz-on-accent); box-shadow: var(--gz-shadow);
  transition: transform 0.15s ease;
}
.launcher:hover { transform: scale(1.05); }
.launcher .icon { width: 28px; height: 28px; }
.launcher .icon-close { display: none; }
.open .launcher .icon-chat { display: none; }
.open .launcher .icon-close { display: block; }
.badge {
  position: absolute; top: -4px; right: -4px; min-width: 22px; height: 22px; padding: 0 6px;
  border-radius: 11px; background: #dc2626; color: #ffffff; font-size: 12px; font-weight: 700; line-height: 22px; text-align: center;
  border: 2px solid var(--gz-bg);
}
.panel {
  position: fixed; right: 20px; bottom: 88px;
  right: max(20px, env(safe-area-inset-right)); bottom: calc(max(20px, env(safe-area-inset-bottom)) + 68px);
  display: flex; flex-direction: column;
  width: 370px; max-width: calc(100vw - 40px);
  height: 600px; max-height: calc(100vh - 120px);
  background: var(--gz-bg); color: var(--gz-fg);
  border: 1px solid var(--gz-line); border-radius: 16px; box-shadow: var(--gz-shadow);
  overflow: hidden;
}
.head {
  display: flex; align-items: center; gap: 8px; padding: 12px 12px 12px 16px;
  background: var(--gz-accent); color: var(--gz-on-accent);
}
.head-text { flex: 1; min-width: 0; }
.title { margin: 0; font-size: 16px; font-weight: 650; line-height: 1.3; overflow-wrap: anywhere; }
.status, .reply-time { margin: 0; font-size: 12px; opacity: 0.9; min-height: 0; }
.avatar {
  flex: none; display: flex; align-items: center; justify-content: center; width: 36px; height: 36px;
  border-radius: 50%; overflow: hidden; background: rgba(255, 255, 255, 0.22); font-size: 14px; font-weight: 700;
}
.avatar img { width: 100%; height: 100%; object-fit: cover; }
.status:empty { display: none; }
.close {
  display: flex; align-items: center; justify-content: center;
  width: 36px; height: 36px; padding: 0; border: 0; border-radius: 8px; background: transparent; color: inherit;
}
.close:hover { background: rgba(255, 255, 255, 0.18); }
.body { flex: 1; overflow-y: auto; overscroll-behavior: contain; padding: 16px; }
.intro { margin: 0 0 12px; color: var(--gz-muted); font-size: 14px; }
.log { list-style: none; margin: 0; padding: 0; display: flex; flex-direction: column; gap: 10px; }
.msg { display: flex; flex-direction: column; align-items: flex-start; max-width: 100%; }
.msg-visitor { align-items: flex-end; }
.bubble {
  max-width: 85%; padding: 8px 12px; border-radius: 14px; border-bottom-left-radius: 4px;
  background: var(--gz-bubble); color: var(--gz-fg); overflow-wrap: anywhere;
}
.msg-visitor .bubble { background: var(--gz-accent); color: var(--gz-on-accent); border-radius: 14px; border-bottom-right-radius: 4px; }
.who { display: block; font-size: 12px; font-weight: 650; color: var(--gz-muted); margin-bottom: 2px; }
.text { margin: 0; white-space: pre-wrap; }
.text a { color: inherit; text-decoration: underline; }
.meta { margin-top: 2px; font-size: 11px; color: var(--gz-muted); }
.msg-pending .bubble { opacity: 0.7; }
.msg-failed .bubble { outline: 2px solid #dc2626; }
.retry {
  margin-top: 4px; padding: 2px 8px; border: 1px solid var(--gz-line); border-radius: 6px;
  background: var(--gz-bg); color: var(--gz-fg); font-size: 12px;
}
.cards { list-style: none; margin: 8px 0 0; padding: 0; display: flex; flex-direction: column; gap: 8px; width: 85%; }
.card {
  display: flex; flex-direction: column; gap: 4px; padding: 10px 12px;
  background: var(--gz-card); color: var(--gz-fg); border: 1px solid var(--gz-line); border-radius: 12px;
}
.card-desc { margin: 0; font-size: 13px; color: var(--gz-muted); overflow-wrap: anywhere; }
.card-open {
  align-self: flex-start; display: inline-flex; align-items: center; gap: 6px; max-width: 100%; margin-top: 4px;
  padding: 8px 12px; border-radius: 8px; background: var(--gz-accent); color: var(--gz-on-accent);
  font-size: 14px; font-weight: 600; text-decoration: none; overflow-wrap: anywhere;
}
.card-open .icon { flex: none; width: 16px; height: 16px; }
.card-open:hover { filter: brightness(1.08); }
.notice { margin: 0; padding: 10px 16px; font-size: 13px; border-top: 1px solid var(--gz-line); color: var(--gz-muted); }
.notice strong { display: block; color: var(--gz-fg); }
.typing { margin: 0; padding: 0 16px 6px; font-size: 13px; font-style: italic; color: var(--gz-muted); }
.typing:empty { padding: 0; }
.dots { display: inline-flex; gap: 3px; margin-right: 6px; vertical-align: middle; }
.dots i { width: 5px; height: 5px; border-radius: 50%; background: currentColor; animation: gz-blink 1.2s infinite; }
.dots i:nth-child(2) { animation-delay: 0.2s; }
.dots i:nth-child(3) { animation-delay: 0.4s; }
@keyframes gz-blink { 0%, 80%, 100% { opacity: 0.25; } 40% { opacity: 1; } }
.ended { padding: 12px 16px; border-top: 1px solid var(--gz-line); text-align: center; }
.ended p { margin: 0 0 8px; color: var(--gz-muted); font-size: 14px; }
.new {
  padding: 8px 14px; border: 0; border-radius: 8px; background: var(--gz-accent); color: var(--gz-on-accent); font-weight: 600;
}
.composer { display: flex; align-items: flex-end; gap: 8px; padding: 10px 12px; border-top: 1px solid var(--gz-line); }
.input {
  flex: 1; min-height: 40px; max-height: 140px; resize: none; padding: 9px 12px;
  border: 1px solid var(--gz-line); border-radius: 10px; background: var(--gz-bg); color: var(--gz-fg); line-height: 1.4;
}
.input::placeholder { color: var(--gz-muted); opacity: 1; }
.send {
  display: flex; align-items: center; justify-content: center; flex: none;
  width: 40px; height: 40px; padding: 0; border: 0; border-radius: 10px; background: var(--gz-accent); color: var(--gz-on-accent);
}
.send .icon { width: 20px; height: 20px; }
@media (max-width: 480px) {
  .panel {
    right: 0; bottom: 0; left: 0; top: 0; width: 100%; max-width: none; height: 100%; max-height: none;
    border: 0; border-radius: 0;
  }
  .open .launcher { display: none; }
  .input { font-size: 16px; } /* smaller text makes iOS zoom into the page */
}
@media (prefers-reduced-motion: reduce) {
  .launcher { transition: none; } .launcher:hover { transform: none; } .dots i { animation: none; opacity: 0.6; }
}
`;

  const HOST_STYLE = [
    ["display", "block"],
    ["visibility", "visible"],
    ["opacity", "1"],
    ["position", "fixed"],
    ["z-index", "2147483000"],
  ];

  /** The widget: one per page. */
  class Widget {
    constructor() {
      const stored = loadState();
      this.session = null; // {id, status}
      this.seen = stored.seen || 0; // the last stream number the visitor has seen with the panel open
      this.storedSession = stored.session || null;
      this.lastSeq = 0; // the last stream event applied (the SSE id)
      this.messages = new Map(); // message id -> <li>
      this.isOpen = false;
      this.unread = 0;
      this.mode = "EventSource" in window ? "stream" : "poll";
      this.stream = null; // {source, token, opened}
      this.failures = 0; // consecutive failed connections (backoff)
      this.suspect = 0; // stream failures while the server answered polls
      this.streamRetryAt = Infinity;
      this.retryTimer = null;
      this.pollTimer = null;
      this.statusTimer = null;
      this.hiddenTimer = null;
      this.paused = false;
      this.opening = null;
      this.refused = null; // the error that turned the chat off on this page
      this.typingTimer = null;
      this.tokens = new Tokens(
        new URL(tokenUrl, location.href).href,
        () => this.tokenRenewed(),
        (error) => this.refuse(error)
      );
      this.build();
      this.listen();
      this.resume();
    }

    // Building and wiring the interface

    build() {
      this.host = document.createElement("glimpze-widget");
      // The page's `body *` rules match this element too. The :host rule's !important declarations
      // already win (the inner context wins for important rules); inline ones guard the essentials
      // as well, in browsers that order the two differently. CSSOM writes pass a page's style-src CSP.
      for (const [name, value] of HOST_STYLE) this.host.style.setProperty(name, value, "important");
      const shadow = this.host.attachShadow({ mode: "open" });
      if ("adoptedStyleSheets" in shadow && typeof CSSStyleSheet === "function" && "replaceSync" in CSSStyleSheet.prototype) {
        const sheet = new CSSStyleSheet();
        sheet.replaceSync(CSS);
        shadow.adoptedStyleSheets = [sheet];
      } else {
        shadow.append(el("style", {}, CSS));
      }
      const ui = (this.ui = {});
      ui.badge = el("span", { class: "badge", "aria-hidden": "true", hidden: true });
      ui.launcher = el(
        "button",
        { type: "button", class: "launcher", "aria-controls": "gz-panel", "aria-expanded": "false", "aria-label": "Open chat" },
        icon("chat", ICONS.chat),
        icon("close", ICONS.close),
        ui.badge
      );
      ui.status = el("p", { class: "status", role: "status" });
      ui.title = el("h2", { id: "gz-title", class: "title" }, config.title);
      ui.avatar = el("span", { class: "avatar", "aria-hidden": "true", hidden: true });
      ui.replyTime = el("p", { class: "reply-time", hidden: true });
      ui.close = el("button", { type: "button", class: "close", "aria-label": "Close chat" }, icon("close", ICONS.close));
      ui.log = el("ol", { class: "log", "aria-label": "Conversation" });
      ui.body = el("div", { class: "body", tabindex: "-1" }, el("p", { class: "intro" }, config.greeting), ui.log);
      ui.notice = el("p", { class: "notice", role: "status", hidden: true });
      // Always rendered (empty when nobody types), so that screen readers hear it appear.
      ui.typing = el("p", { class: "typing", "aria-live": "polite" });
      ui.newButton = el("button", { type: "button", class: "new" }, "Start a new conversation");
      ui.ended = el("div", { class: "ended", hidden: true }, el("p", {}, "This conversation has ended."), ui.newButton);
      ui.input = el("textarea", {
        id: "gz-input",
        class: "input",
        rows: "1",
        maxlength: String(MAX_TEXT),
        placeholder: "Write a message…",
        autocomplete: "off",
        enterkeyhint: "send",
      });
      ui.send = el("button", { type: "submit", class: "send", "aria-label": "Send message" }, icon("send", ICONS.send));
      ui.form = el("form", { class: "composer" }, el("label", { class: "sr", for: "gz-input" }, "Message"), ui.input, ui.send);
      ui.panel = el(
        "section",
        { id: "gz-panel", class: "panel", role: "dialog", "aria-modal": "false", "aria-labelledby": "gz-title", hidden: true },
        el("div", { class: "head" }, ui.avatar, el("div", { class: "head-text" }, ui.title, ui.replyTime, ui.status), ui.close),
        ui.body,
        ui.typing,
        ui.notice,
        ui.ended,
        ui.form
      );
      ui.live = el("div", { class: "sr", "aria-live": "polite", "aria-atomic": "false" });
      ui.newTab = el("span", { id: "gz-new-tab", hidden: true }, "Opens in a new tab");
      ui.root = el("div", { class: "root" }, ui.panel, ui.launcher, ui.live, ui.newTab);
      shadow.append(ui.root);
      document.body.append(this.host);
    }

    listen() {
      const ui = this.ui;
      ui.launcher.addEventListener("click", () => (this.isOpen ? this.close() : this.open()));
      ui.close.addEventListener("click", () => this.close());
      ui.root.addEventListener("keydown", (event) => {
        if (event.key === "Escape" && this.isOpen) {
          event.stopPropagation();
          this.close();
        }
      });
      ui.form.addEventListener("submit", (event) => {
        event.preventDefault();
        this.submit();
      });
      ui.input.addEventListener("keydown", (event) => {
        if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
          event.preventDefault();
          this.submit();
        }
      });
      ui.input.addEventListener("input", () => this.fitInput());
      ui.newButton.addEventListener("click", () => this.startNew());
      document.addEventListener("visibilitychange", () => this.visibilityChanged());
      window.addEventListener("online", () => this.reconnectNow());
      window.addEventListener("pagehide", () => this.closeStream());
      window.addEventListener("pageshow", (event) => event.persisted && this.reconnectNow());
    }

    setOpen(open) {
      this.isOpen = open;
      this.ui.root.classList.toggle("open", open);
      this.ui.panel.hidden = !open;
      this.ui.launcher.setAttribute("aria-expanded", String(open));
    }

    open() {
      this.setOpen(true);
      this.markSeen();
      this.scrollToEnd(true);
      (this.refused ? this.ui.close : this.closed ? this.ui.newButton : this.ui.input).focus();
      this.ensureSession().catch(() => {}); // shown in the panel
      if (this.mode === "poll") this.schedulePoll(0);
    }

    close() {
      this.setOpen(false);
      this.updateBadge();
      this.ui.launcher.focus();
    }

    fitInput() {
      const input = this.ui.input;
      input.style.height = "auto";
      input.style.height = `${Math.min(input.scrollHeight + 2, 140)}px`;
    }

    setStatus(text, delay = 0) {
      clearTimeout(this.statusTimer);
      // Brief drops (a renewed token, a restart) reconnect within a second: only longer ones are shown.
      if (delay) this.statusTimer = setTimeout(() => (this.ui.status.textContent = text), delay);
      else this.ui.status.textContent = text;
    }

    showNotice(text, reason) {
      this.ui.notice.replaceChildren(...(reason ? [el("strong", {}, text), reason] : [text || ""]));
      this.ui.notice.hidden = !text;
    }

    announce(text) {
      const live = this.ui.live;
      live.append(el("p", {}, text));
      while (live.childNodes.length > 3) live.firstChild.remove();
    }

    updateBadge() {
      const { badge, launcher } = this.ui;
      badge.hidden = this.isOpen || this.unread === 0;
      badge.textContent = this.unread > 9 ? "9+" : String(this.unread);
      const unread = this.unread && !this.isOpen ? ` (${this.unread} unread)` : "";
      launcher.setAttribute("aria-label", (this.isOpen ? "Close chat" : "Open chat") + unread);
    }

    markSeen() {
      this.unread = 0;
      this.updateBadge();
      if (this.session && this.lastSeq > this.seen) {
        this.seen = this.lastSeq;
        saveState({ session: this.session.id, seen: this.seen });
      }
    }

    atEnd() {
      const body = this.ui.body;
      return body.scrollHeight - body.scrollTop - body.clientHeight < 80;
    }

    /** Follow the conversation when the visitor was reading its end (measured before it grew). */
    scrollToEnd(follow) {
      if (follow) this.ui.body.scrollTop = this.ui.body.scrollHeight;
    }

    // The API

    async api(method, path, { body, key, renewed = false } = {}) {
      if (this.refused) throw this.refused;
      const token = await this.tokens.get();
      const headers = { Authorization: `Bearer ${token}`, Accept: "application/json" };
      if (body !== undefined) headers["Content-Type"] = "application/json";
      if (key) headers["Idempotency-Key"] = key;
      const sentAt = Date.now();
      let response;
      try {
        response = await fetch(new URL(path, apiBase).href, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
          mode: "cors",
          credentials: "omit",
          cache: "no-store",
        });
      } catch (error) {
        throw new NetworkError(`Glimpze cannot be reached: ${error.message}`);
      }
      noteServerDate(response, sentAt);
      const data = await response.json().catch(() => null);
      if (response.status === 401 && !renewed) {
        await this.tokens.fetch(); // expired or revoked: one fresh token, one more try
        return this.api(method, path, { body, key, renewed: true });
      }
      if (!response.ok) {
        const error = new HttpError(response.status, data, `${method} ${path}`, response);
        // Not this page (its origin), or a token Glimpze will not take: nothing here can succeed.
        if (response.status === 403 || response.status === 401) this.refuse(error);
        throw error;
      }
      return data;
    }

    sessionPath(suffix = "") {
      return `widget/v1/sessions/${encodeURIComponent(this.session.id)}${suffix}`;
    }

    // Sessions

    /** At load: follow the session this browser had, so its replies raise the badge. */
    async resume() {
      if (!this.storedSession) return;
      try {
        this.useSession(await this.api("GET", `widget/v1/sessions/${encodeURIComponent(this.storedSession)}`));
      } catch (error) {
        // Another visitor now (signed out), or gone: opening the panel starts or resumes the right one.
        if (error instanceof HttpError && (error.status === 404 || error.status === 401)) saveState({});
      }
    }

    /** The visitor's open session: resumed by the server, or a new one. */
    ensureSession() {
      if (this.session) return Promise.resolve(this.session);
      if (this.refused) return Promise.reject(this.refused);
      if (!this.opening) {
        this.showNotice("");
        this.opening = this.openSession()
          .catch((error) => {
            this.unavailable(error);
            throw error;
          })
          .finally(() => (this.opening = null));
      }
      return this.opening;
    }

    async openSession() {
      this.useSession(await this.api("POST", "widget/v1/sessions", { body: sessionBody() }));
      return this.session;
    }

    unavailable(error) {
      if (!retryable(error)) {
        this.refuse(error);
        return;
      }
      console.warn("Glimpze widget:", error.message);
      this.showNotice("Chat is unavailable right now. Retrying…");
      clearTimeout(this.retryTimer);
      this.failures += 1;
      this.retryTimer = setTimeout(() => this.isOpen && !this.session && this.ensureSession().catch(() => {}), retryDelay(error, this.failures));
    }

    /** A refusal that no retry can change: say why, in the panel and the console, and stop every request. */
    refuse(error) {
      if (this.refused) return;
      this.refused = error;
      console.error(`Glimpze widget: chat is off on this page: ${error.message}${error.code ? ` (${error.code})` : ""}`);
      this.tokens.stop(error);
      this.closeStream();
      for (const timer of [this.retryTimer, this.pollTimer, this.hiddenTimer]) clearTimeout(timer);
      this.setStatus("");
      this.hideTyping();
      const here = error instanceof HttpError && error.code === "origin_not_allowed" ? " on this site" : "";
      this.showNotice(`Chat is not available${here}.`, error.message);
      this.ui.form.hidden = true;
      this.ui.ended.hidden = true;
      if (this.isOpen && this.host.shadowRoot.activeElement) this.ui.close.focus();
    }

    useSession(data) {
      this.showAgent(data.agent);
      if (this.session && this.session.id === data.id) {
        this.applyStatus(data.status);
        return;
      }
      this.closeStream();
      this.session = { id: data.id, status: null };
      if (data.id !== this.storedSession) this.seen = 0;
      this.storedSession = data.id;
      saveState({ session: data.id, seen: this.seen });
      this.lastSeq = 0;
      this.messages.clear();
      this.ui.log.replaceChildren();
      this.hideTyping();
      this.showNotice("");
      this.failures = 0;
      this.applyStatus(data.status);
      this.connect();
    }

    /** The header: the agent's team name, avatar and reply time, or the site's data-title. */
    showAgent(agent) {
      const ui = this.ui;
      agent = agent && typeof agent === "object" ? agent : {};
      const name = typeof agent.display_name === "string" && agent.display_name ? agent.display_name : config.title;
      ui.title.textContent = name;
      ui.replyTime.textContent = REPLY_TIMES[agent.reply_time] || "";
      ui.replyTime.hidden = !ui.replyTime.textContent;
      const initials = name.split(/\s+/).filter(Boolean).slice(0, 2).map((word) => word[0].toUpperCase()).join("");
      const avatar = httpsUrl(agent.avatar_url);
      ui.avatar.replaceChildren(initials);
      if (avatar) {
        // A site's img-src CSP or a dead link leaves the initials in place.
        const img = el("img", { src: avatar, alt: "", referrerpolicy: "no-referrer", decoding: "async" });
        img.addEventListener("load", () => ui.avatar.replaceChildren(img), { once: true });
      }
      ui.avatar.hidden = !(agent.display_name || avatar);
    }

    get closed() {
      return Boolean(this.session && this.session.status === "closed");
    }

    applyStatus(status) {
      const was = this.session.status;
      this.session.status = status;
      const closed = status === "closed";
      if (closed) this.hideTyping();
      const focusInside = this.host.shadowRoot.activeElement;
      this.ui.ended.hidden = !closed;
      this.ui.form.hidden = closed;
      if (closed && was !== null && was !== "closed") this.announce("This conversation has ended.");
      if (this.isOpen && was !== status) {
        if (closed && focusInside === this.ui.input) this.ui.newButton.focus();
        if (!closed && focusInside === this.ui.newButton) this.ui.input.focus();
      }
    }

    async startNew() {
      this.ui.newButton.disabled = true;
      try {
        const data = await this.api("POST", "widget/v1/sessions", { body: sessionBody() });
        this.useSession(data);
        this.ui.input.focus();
      } catch (error) {
        this.unavailable(error);
      } finally {
        this.ui.newButton.disabled = false;
      }
    }

    // Live updates

    connect() {
      clearTimeout(this.retryTimer);
      clearTimeout(this.pollTimer);
      if (!this.session || this.paused || this.refused) return;
      if (this.mode === "stream") this.openStream();
      else this.schedulePoll(0);
    }

    async openStream() {
      this.closeStream();
      let token;
      try {
        token = await this.tokens.get();
      } catch (error) {
        if (!retryable(error)) {
          this.refuse(error);
          return;
        }
        this.failures += 1;
        this.setStatus("Reconnecting…", 2000);
        this.retryTimer = setTimeout(() => this.connect(), retryDelay(error, this.failures));
        return;
      }
      if (!this.session || this.paused || this.mode !== "stream" || this.stream) return;
      const url = new URL(this.sessionPath("/stream"), apiBase);
      url.searchParams.set("token", token);
      if (this.lastSeq) url.searchParams.set("last_event_id", String(this.lastSeq));
      const attempt = { source: new EventSource(url.href), token, opened: false, sessionId: this.session.id };
      this.stream = attempt;
      attempt.source.onopen = () => {
        attempt.opened = true;
        this.failures = 0;
        this.suspect = 0;
        this.setStatus("");
      };
      for (const type of ["message", "done", "session", "typing"]) {
        attempt.source.addEventListener(type, (event) => this.stream === attempt && this.streamEvent(type, event));
      }
      attempt.source.onerror = () => {
        if (this.stream !== attempt) return;
        // The browser would retry by itself, with the same (possibly expired) token: this script
        // reconnects instead, with a valid token and the last event id.
        this.closeStream();
        this.streamFailed(attempt);
      };
    }

    closeStream() {
      if (this.stream) {
        this.stream.source.close();
        this.stream = null;
      }
    }

    streamEvent(type, event) {
      let data;
      try {
        data = JSON.parse(event.data);
      } catch {
        return;
      }
      // `typing` has no id of its own: lastEventId still names the event before it.
      if (type === "typing") return this.showTyping(data);
      const seq = Number(event.lastEventId) || 0;
      if (seq && seq <= this.lastSeq) return; // already applied from a poll
      this.apply(type, data);
      if (seq) this.lastSeq = seq;
      if (this.isOpen && !document.hidden) this.markSeen();
    }

    async streamFailed(attempt) {
      this.setStatus("Reconnecting…", 2000);
      const tokenExpired = this.tokens.expired;
      const answered = await this.pollOnce(); // catch up, and learn whether the server answers at all
      if (!this.session || this.session.id !== attempt.sessionId || this.stream || this.mode !== "stream" || this.refused) return;
      if (answered && !attempt.opened && !tokenExpired) this.suspect += 1;
      if (this.suspect >= STREAM_FAILURES_BEFORE_POLLING) {
        console.info("Glimpze widget: the event stream does not get through; polling instead.");
        this.usePolling(STREAM_RETRY_FROM_POLLING_MS);
        return;
      }
      if (answered && attempt.opened) this.failures = 0;
      else this.failures += 1;
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => this.connect(), answered && attempt.opened ? 0 : backoff(this.failures));
    }

    usePolling(retryStreamAfter) {
      this.closeStream();
      this.mode = "poll";
      this.streamRetryAt = "EventSource" in window ? Date.now() + retryStreamAfter : Infinity;
      this.schedulePoll(0);
    }

    schedulePoll(delay) {
      clearTimeout(this.pollTimer);
      if (!this.refused) this.pollTimer = setTimeout(() => this.pollTick(), delay);
    }

    async pollTick() {
      if (!this.session || this.mode !== "poll" || this.paused || this.refused) return;
      if (Date.now() >= this.streamRetryAt) {
        this.mode = "stream";
        this.suspect = 0;
        this.connect();
        return;
      }
      const answered = await this.pollOnce();
      if (this.mode !== "poll" || this.refused) return;
      this.failures = answered ? 0 : this.failures + 1;
      this.setStatus(answered ? "" : "Reconnecting…", answered ? 0 : 2000);
      const interval = document.hidden ? POLL_HIDDEN_MS : this.isOpen ? POLL_OPEN_MS : POLL_IDLE_MS;
      this.schedulePoll(answered ? interval : backoff(this.failures));
    }

    /** Everything after the last event applied; true when the server answered. */
    async pollOnce() {
      if (!this.session) return false;
      const sessionId = this.session.id;
      try {
        for (;;) {
          const page = await this.api("GET", `${this.sessionPath("/messages")}?after=${this.lastSeq}&limit=${POLL_LIMIT}`);
          if (!this.session || this.session.id !== sessionId) return true;
          for (const message of page.data) {
            this.apply("message", message);
            if (message.role === "assistant") this.apply("done", { message_id: message.id, ctas: message.ctas, cta: message.cta });
          }
          this.lastSeq = Math.max(this.lastSeq, page.next_after);
          if (page.status !== this.session.status) this.applyStatus(page.status);
          if (this.isOpen && !document.hidden) this.markSeen();
          if (page.data.length < POLL_LIMIT) return true;
        }
      } catch (error) {
        if (error instanceof HttpError && error.status === 404) this.forget();
        else if (!retryable(error)) this.refuse(error);
        return false;
      }
    }

    /** The session is gone for this visitor (another visitor signed in): start afresh. */
    forget() {
      this.closeStream();
      clearTimeout(this.pollTimer);
      this.session = null;
      this.storedSession = null;
      this.seen = 0;
      saveState({});
      this.messages.clear();
      this.ui.log.replaceChildren();
      this.hideTyping();
      this.ui.ended.hidden = true;
      this.ui.form.hidden = false;
      if (this.isOpen) this.ensureSession().catch(() => {});
    }

    tokenRenewed() {
      // A stream keeps the token it was opened with and ends when that expires: reopen it now,
      // from the last event seen, so nothing is missed.
      if (this.stream && this.stream.token !== this.tokens.token) {
        this.closeStream();
        this.connect();
      }
    }

    reconnectNow() {
      if (!this.session || this.paused) return;
      if (this.mode === "stream" && this.stream && this.stream.opened) return;
      this.failures = 0;
      this.connect();
    }

    visibilityChanged() {
      clearTimeout(this.hiddenTimer);
      if (document.hidden) {
        this.hiddenTimer = setTimeout(() => {
          this.paused = true;
          this.closeStream();
          clearTimeout(this.pollTimer);
        }, PAUSE_HIDDEN_AFTER_MS);
        return;
      }
      if (this.paused) {
        this.paused = false;
        this.connect();
      }
      if (this.isOpen) this.markSeen();
      if (this.tokens.token && this.tokens.expired) this.tokens.renew(); // timers sleep in background tabs
    }

    // Applying events

    apply(type, data) {
      if (!data || typeof data !== "object") return;
      if (type === "message") this.addMessage(data);
      else if (type === "done") this.addCards(data);
      else if (type === "session" && this.session && data.id === this.session.id) this.applyStatus(data.status);
    }

    addMessage(message) {
      if (typeof message.id !== "string" || typeof message.text !== "string" || this.messages.has(message.id)) return;
      const follow = this.atEnd() || message.role === "visitor";
      // Our own message, streamed before its POST answered: take over the pending bubble.
      const pending = message.role === "visitor" ? this.findPending(message.text) : null;
      const item = pending || this.messageItem(message);
      if (pending) this.settle(pending, message);
      this.insert(item, message.seq);
      this.messages.set(message.id, item);
      if (message.role !== "visitor") this.hideTyping(); // the message it announced is here
      if (message.role !== "visitor" && message.seq > this.seen) {
        if (!this.isOpen || document.hidden) {
          this.unread += 1;
          this.updateBadge();
        }
        if (serverNow() - Date.parse(message.created_at) < ANNOUNCE_WITHIN_MS) {
          this.announce(`${this.authorOf(message)}: ${message.text.slice(0, 500)}`);
        }
      }
      this.scrollToEnd(follow);
    }

    /** "Sam is typing…" for the time the signal says (the server renews it while typing goes on). */
    showTyping(signal) {
      const seconds = signal && signal.typing ? Number(signal.expires_in) : 0;
      if (!(seconds > 0) || this.closed) {
        this.hideTyping();
        return;
      }
      const who = typeof signal.author === "string" && signal.author ? `${signal.author} is typing…` : "Typing…";
      const shown = this.ui.typing.lastChild;
      if (!shown || shown.textContent !== who) {
        const dots = el("span", { class: "dots", "aria-hidden": "true" }, el("i"), el("i"), el("i"));
        const follow = this.atEnd();
        this.ui.typing.replaceChildren(dots, el("span", {}, who));
        this.scrollToEnd(follow);
      }
      clearTimeout(this.typingTimer);
      this.typingTimer = setTimeout(() => this.hideTyping(), Math.min(seconds * 1000, MAX_TYPING_MS));
    }

    hideTyping() {
      clearTimeout(this.typingTimer);
      this.ui.typing.replaceChildren();
    }

    authorOf(message) {
      if (message.role === "visitor") return "You";
      if (message.role === "assistant") return message.author || "Assistant";
      return message.author || "Agent";
    }

    messageItem(message) {
      const role = ["visitor", "agent", "assistant"].includes(message.role) ? message.role : "agent";
      const text = el("p", { class: "text", dir: "auto" });
      appendText(text, message.text);
      const who = el("span", { class: role === "visitor" ? "who sr" : "who" }, this.authorOf(message));
      const item = el("li", { class: `msg msg-${role}` }, el("div", { class: "bubble" }, who, text));
      item.dataset.seq = String(message.seq || "");
      const when = Date.parse(message.created_at);
      if (!Number.isNaN(when)) {
        const time = new Date(when).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
        item.append(el("div", { class: "meta" }, el("time", { datetime: message.created_at }, time)));
      }
      return item;
    }

    insert(item, seq) {
      // In stream order; bubbles still being sent stay last (their number comes with the answer).
      const items = Array.from(this.ui.log.children);
      let before = items.find((other) => !other.dataset.seq) || null;
      for (let i = items.length - 1; i >= 0; i -= 1) {
        const other = Number(items[i].dataset.seq);
        if (other && other > seq) before = items[i];
        else if (other) break;
      }
      this.ui.log.insertBefore(item, before);
    }

    addCards(done) {
      const item = this.messages.get(done.message_id);
      if (!item || item.querySelector(".cards")) return;
      const given = Array.isArray(done.ctas) && done.ctas.length ? done.ctas : done.cta ? [done.cta] : [];
      const cards = given.filter((card) => card && typeof card.label === "string" && httpUrl(card.url)).slice(0, MAX_CARDS);
      if (!cards.length) return;
      const follow = this.atEnd();
      const list = el("ul", { class: "cards", "aria-label": "Suggested links" });
      for (const card of cards) list.append(this.cardItem(card));
      item.append(list);
      this.scrollToEnd(follow);
    }

    cardItem(card) {
      const state = { id: card.id, url: httpUrl(card.url), ...signedAge(card.url) };
      const descId = `gz-d-${randomKey().slice(0, 8)}`;
      const description = card.description ? el("p", { class: "card-desc", id: descId }, card.description) : null;
      // The button says the card's own label, and its accessible name is exactly that text; the
      // description and "opens in a new tab" are its accessible description.
      const link = el(
        "a",
        {
          class: "card-open",
          href: state.url,
          target: "_blank",
          rel: "noopener",
          "aria-describedby": description ? `${descId} gz-new-tab` : "gz-new-tab",
        },
        el("span", { class: "card-title" }, card.label),
        icon("open", ICONS.open)
      );
      link.addEventListener("click", (event) => this.openCard(event, link, state));
      return el("li", { class: "card" }, description, link);
    }

    async openCard(event, link, state) {
      if (state.ageAtReceipt === null) return; // no signed context: the URL never expires
      const age = state.ageAtReceipt + (performance.now() - state.receivedAt);
      if (age <= RESIGN_AFTER_MS || !this.session) return; // the link opens as it is
      event.preventDefault();
      // The tab opens now, within the click (popup blockers allow only that), and goes on once the
      // fresh URL is known; cutting its opener does what rel="noopener" does for the link.
      const tab = window.open("", "_blank");
      if (tab) tab.opener = null;
      let url = state.url;
      try {
        const fresh = await this.api("GET", `widget/v1/ctas/${encodeURIComponent(state.id)}/url?session=${encodeURIComponent(this.session.id)}`);
        if (httpUrl(fresh.url)) {
          url = httpUrl(fresh.url);
          Object.assign(state, { url }, signedAge(url));
          link.href = url;
        }
      } catch (error) {
        console.warn("Glimpze widget: could not sign the card again; opening it as it was.", error);
      }
      if (tab) tab.location.href = url;
      else window.open(url, "_blank", "noopener");
    }

    // Sending

    submit() {
      const text = this.ui.input.value.trim();
      if (!text || this.closed) return;
      this.ui.input.value = "";
      this.fitInput();
      this.send(text, randomKey(), null);
    }

    async send(text, key, existing) {
      const item = existing || this.messageItem({ role: "visitor", text, seq: 0, created_at: "" });
      item.classList.add("msg-pending");
      item.classList.remove("msg-failed");
      item.dataset.pending = text;
      const retry = item.querySelector(".retry");
      if (retry) retry.remove();
      if (!existing) {
        item.dataset.seq = "";
        this.ui.log.append(item);
        this.scrollToEnd(true);
      }
      for (let attempt = 0; ; attempt += 1) {
        try {
          await this.ensureSession();
          const message = await this.api("POST", this.sessionPath("/messages"), { body: { text }, key });
          if (this.messages.has(message.id)) {
            if (this.messages.get(message.id) !== item) item.remove(); // the stream showed it already
          } else {
            this.settle(item, message);
            this.messages.set(message.id, item);
            this.insert(item, message.seq);
          }
          if (this.mode === "poll") this.schedulePoll(POLL_OPEN_MS);
          return;
        } catch (error) {
          if (error instanceof HttpError && error.code === "session_closed") {
            this.applyStatus("closed");
            this.fail(item, "Not sent: this conversation has ended.", null);
            return;
          }
          if (this.refused) {
            this.fail(item, "Not sent.", null);
            return;
          }
          if (!retryable(error) || attempt >= SEND_RETRIES_MS.length) {
            this.fail(item, "Not sent.", () => this.send(text, key, item)); // same key: never twice
            return;
          }
          await sleep(error instanceof HttpError && error.retryAfterMs !== null ? error.retryAfterMs : SEND_RETRIES_MS[attempt]);
        }
      }
    }

    findPending(text) {
      return Array.from(this.ui.log.children).find((item) => item.dataset.pending === text) || null;
    }

    settle(item, message) {
      delete item.dataset.pending;
      item.classList.remove("msg-pending", "msg-failed");
      item.dataset.seq = String(message.seq);
      const fresh = this.messageItem(message);
      item.replaceChildren(...fresh.childNodes);
    }

    fail(item, text, retry) {
      delete item.dataset.pending;
      item.classList.remove("msg-pending");
      item.classList.add("msg-failed");
      const note = el("div", { class: "meta" }, text);
      if (retry) {
        const button = el("button", { type: "button", class: "retry" }, "Retry");
        button.addEventListener("click", retry);
        note.append(" ", button);
      }
      item.append(note);
      this.announce(text);
    }
  }

  /** What a new session learns from the page: its URL (CTA rules match it) and language. */
  function sessionBody() {
    const body = {};
    const page = location.href.split("#")[0];
    body.page_url = page.length <= 2048 ? page : (location.origin + location.pathname).slice(0, 2048);
    const language = navigator.language;
    if (language && language.length <= 35 && LANGUAGE.test(language)) body.language = language;
    return body;
  }

  /** How old a card's signature was when it arrived (server time), and when that was (ours). */
  function signedAge(url) {
    let ts = NaN;
    try {
      ts = Number(new URL(url).searchParams.get("glimpze_ts"));
    } catch {
      // not a URL: the card is not shown anyway
    }
    if (!ts) return { ageAtReceipt: null, receivedAt: 0 };
    return { ageAtReceipt: Math.max(0, serverNow() - ts * 1000), receivedAt: performance.now() };
  }

  const start = () => new Widget();
  if (document.body) start();
  else document.addEventListener("DOMContentLoaded", start, { once: true });
})();
