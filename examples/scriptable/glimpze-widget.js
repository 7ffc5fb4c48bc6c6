// Glimpze widget for Scriptable (iOS): draws one feed's widget natively on the home screen.
//
// Set up (details: docs/displays.md, "Phone home screens"):
//   1. In Scriptable, make a new script and paste this file into it.
//   2. On the home screen, add a Scriptable widget (small, medium or large), edit it: Script = this
//      script, Parameter = the feed's JSON link from Glimpze's dashboard (the feed's page, "Widget
//      links", JSON): https://glimpze.example.com/w/fd_….json?token=gzr_…
//   3. Tapping the widget opens the feed in Glimpze's dashboard.
//
// The data path (parameter → request → widget model → refresh hint) is plain functions, exported when
// this file runs outside Scriptable (node), so tests/test_scriptable.py runs it against a real server.

"use strict";

const STATES = {
  success: { label: "Success", symbol: "checkmark.circle.fill", light: "#15803D", dark: "#22C55E" },
  warning: { label: "Warning", symbol: "exclamationmark.triangle.fill", light: "#B45309", dark: "#F59E0B" },
  info: { label: "Info", symbol: "info.circle.fill", light: "#1D4ED8", dark: "#60A5FA" },
  error: { label: "Error", symbol: "xmark.octagon.fill", light: "#B91C1C", dark: "#F87171" },
  neutral: { label: "", symbol: "circle", light: "#6B7280", dark: "#9CA3AF" },
};
const APPROVALS = {
  pending: ["Pending", "warning"],
  deferred: ["Deferred", "info"],
  approved: ["Approved", "success"],
  rejected: ["Rejected", "error"],
};
const TRENDS = { up: "▲", down: "▼", flat: "▶" };
const SOON_MINUTES = 5; // something needs attention: ask iOS to refresh sooner
const USUAL_MINUTES = 15; // iOS rarely refreshes widgets more often than this anyway

/** The widget parameter (the feed's JSON link) as {base, feedId, url}; throws a readable Error. */
function parseParameter(text) {
  const value = String(text || "").trim();
  const match = /^(https?:\/\/[^/?#]+(?:\/[^?#]*)?)\/w\/([A-Za-z0-9_]+)\.json\?(?:.*&)?token=(gzr_[A-Za-z0-9]+)/.exec(value);
  if (!match) {
    throw new Error("Set the widget's Parameter to the feed's JSON link from Glimpze: https://…/w/fd_….json?token=gzr_…");
  }
  const [, base, feedId, token] = match;
  return { base, feedId, url: `${base}/w/${feedId}.json?token=${token}` };
}

/** The one request the widget makes: GET the feed's widget document. */
function request(config) {
  return { url: config.url, method: "GET", headers: { Accept: "application/json" } };
}

/** What the widget shows, from `/w/{feed_id}.json`: title, main value, detail, state, when, where a tap goes. */
function model(doc, config, now) {
  const event = doc.event;
  const content = (event && event.content) || {};
  const shown = {
    title: content.title || doc.name,
    name: doc.name,
    value: "",
    detail: "",
    state: "neutral",
    waiting: 0,
    image: null,
    updatedAt: event ? event.received_at : null,
    updated: event ? ago(event.received_at, now) : "No data yet",
    openUrl: `${config.base}/feeds/${doc.feed_id}`,
  };
  if (!event) {
    shown.detail = "Waiting for the first event";
  } else if (doc.schema_type === "summary") {
    shown.value = String(content.primary_value ?? "");
    shown.detail = String(content.secondary_value ?? "");
  } else if (doc.schema_type === "status") {
    shown.state = STATES[content.status] ? content.status : "neutral";
    shown.value = STATES[shown.state].label;
    shown.detail = String(content.message ?? "");
  } else if (doc.schema_type === "counter") {
    shown.value = `${content.count}${content.unit ? ` ${content.unit}` : ""}`;
    const trend = content.trend ? `${TRENDS[content.trend] || ""} ${content.trendValue || ""}`.trim() : "";
    shown.detail = [trend, content.subtitle].filter(Boolean).join(" · ");
    shown.state = { positive: "success", negative: "error" }[content.trendSemantic] || "neutral";
  } else if (doc.schema_type === "approval") {
    const approval = doc.approval || { state: "pending", waiting: 1 };
    const [label, state] = APPROVALS[approval.state] || APPROVALS.pending;
    shown.value = label;
    shown.state = state;
    shown.detail = String(content.description ?? "");
    shown.waiting = approval.waiting;
  } else if (doc.schema_type === "custom") {
    shown.image = (content.medium || content.small || content.large || {}).image_url || null;
  }
  shown.refreshAfter = refreshAfter(doc, shown, now).toISOString();
  return shown;
}

/** When to ask iOS for the next refresh: sooner while something waits for a person or is failing. */
function refreshAfter(doc, shown, now) {
  const urgent = shown.waiting > 0 || shown.state === "error" || shown.state === "warning";
  return new Date(now.getTime() + (urgent ? SOON_MINUTES : USUAL_MINUTES) * 60 * 1000);
}

/** "just now", "12 min ago", "3 h ago", "2 d ago": so a stale value is never mistaken for a fresh one. */
function ago(iso, now) {
  const seconds = Math.max(0, (now.getTime() - Date.parse(iso)) / 1000);
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

/** Parameter → request → model. `fetchJson(req)` answers {status, body}; errors become a readable model. */
async function load(parameter, fetchJson, now = new Date()) {
  let config;
  try {
    config = parseParameter(parameter);
  } catch (error) {
    return failure(error.message, null, now);
  }
  const { status, body } = await fetchJson(request(config));
  if (status !== 200) {
    const why = (body && (body.detail || body.title)) || `The server answered ${status}.`;
    return failure(why, config, now);
  }
  return model(body, config, now);
}

function failure(message, config, now) {
  return {
    title: "Glimpze",
    name: "Glimpze",
    value: "",
    detail: message,
    state: "error",
    waiting: 0,
    image: null,
    updatedAt: null,
    updated: "",
    openUrl: config ? config.base : null,
    refreshAfter: new Date(now.getTime() + USUAL_MINUTES * 60 * 1000).toISOString(),
    failed: true,
  };
}

// Drawing, in Scriptable only (ListWidget, Color, Font, SFSymbol are its classes).

/** A state's colour, for light and dark mode. */
function colour(state) {
  const entry = STATES[state] || STATES.neutral;
  return Color.dynamic(new Color(entry.light), new Color(entry.dark));
}

async function draw(shown, family) {
  const widget = new ListWidget();
  const text = Color.dynamic(new Color("#111827"), new Color("#F3F4F6"));
  const muted = Color.dynamic(new Color("#6B7280"), new Color("#9CA3AF"));
  widget.backgroundColor = Color.dynamic(new Color("#FFFFFF"), new Color("#0F1115"));
  widget.setPadding(14, 14, 14, 14);
  if (shown.openUrl) widget.url = shown.openUrl;
  widget.refreshAfterDate = new Date(shown.refreshAfter);
  const large = family === "large";

  const head = widget.addStack();
  head.centerAlignContent();
  if (shown.state !== "neutral") {
    const icon = head.addImage(SFSymbol.named(STATES[shown.state].symbol).image);
    icon.imageSize = new Size(14, 14);
    icon.tintColor = colour(shown.state);
    head.addSpacer(5);
  }
  const title = head.addText(shown.title);
  title.font = Font.semiboldSystemFont(large ? 16 : 13);
  title.textColor = muted;
  title.lineLimit = 2; // a long title wraps before it is cut
  widget.addSpacer(large ? 10 : 6);

  if (shown.image) {
    const image = await new Request(shown.image).loadImage();
    const picture = widget.addImage(image);
    picture.centerAlignImage();
  }
  if (shown.value) {
    const value = widget.addText(shown.value);
    value.font = Font.boldSystemFont(large ? 40 : family === "medium" ? 32 : 26);
    value.textColor = shown.state === "neutral" ? text : colour(shown.state);
    value.minimumScaleFactor = 0.5;
    value.lineLimit = 1;
  }
  if (shown.detail) {
    widget.addSpacer(4);
    const detail = widget.addText(shown.detail);
    detail.font = Font.systemFont(large ? 15 : 12);
    detail.textColor = text;
    detail.lineLimit = large ? 6 : family === "medium" ? 3 : 2;
  }
  if (shown.waiting > 1) {
    const waiting = widget.addText(`${shown.waiting} waiting`);
    waiting.font = Font.mediumSystemFont(12);
    waiting.textColor = muted;
  }
  widget.addSpacer();
  const when = widget.addText(shown.updated);
  when.font = Font.systemFont(11);
  when.textColor = muted;
  return widget;
}

async function main() {
  const family = config.widgetFamily || "medium";
  const shown = await load(args.widgetParameter, async (req) => {
    const call = new Request(req.url);
    call.method = req.method;
    call.headers = req.headers;
    let body = null;
    try {
      body = await call.loadJSON();
    } catch (error) {
      body = { detail: "The answer was not JSON: is the Parameter a Glimpze JSON link?" };
    }
    return { status: call.response.statusCode, body };
  });
  const widget = await draw(shown, family);
  if (config.runsInWidget) {
    Script.setWidget(widget);
  } else if (family === "small") {
    await widget.presentSmall();
  } else if (family === "large") {
    await widget.presentLarge();
  } else {
    await widget.presentMedium();
  }
  Script.complete();
}

if (typeof ListWidget === "undefined") {
  module.exports = { parseParameter, request, model, refreshAfter, ago, load };
} else {
  main();
}
