"""Publishing in other servers' dialects (DESIGN §10): what ntfy and Gotify messages share.

A message in a dialect (ntfy.py, gotify.py) is mapped to a `status` event, or for ntfy an image
attachment to a `custom` event, and goes through `Ingest.submit` as one more `Submission` kind:
the same limits, idempotency, event log, webhooks, pushes and quiet hours as any event. What it
changes is the credential (a feed's write key in the dialect's places; for ntfy also a project
API key, which may create a feed for an unknown topic when `[ntfy] auto_create` is on), the
answer (the dialect's message object, 200) and the error shape (the web layer's).

`Publishers.feed()` finds the feed a credential and a topic name, behind the failed-authentication
limiter: a write key publishes to its own feed only, named by its id or its topic; an API key to
any feed of its project by id or topic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from glimpze.accounts.keys import Keys
from glimpze.config import Config
from glimpze.errors import Conflict, FieldError, InvalidWriteKey, NotFound, ValidationFailed
from glimpze.feeds.events import Accepted, NewEvent
from glimpze.feeds.feeds import Feeds, FeedState
from glimpze.feeds.idempotency import body_digest
from glimpze.feeds.limits import AuthFailureLimiter
from glimpze.feeds.media import MediaFile
from glimpze.feeds.schemas import IngestEvent, Intent, decode_event
from glimpze.feeds.uploads import Upload
from glimpze.push.buttons import Button
from glimpze.validation import failed

# Most severe first: a message whose signs disagree shows the worst.
SEVERITY = ("error", "warning", "info", "success")


def most_severe(statuses: list[str]) -> str | None:
    """The most severe of `statuses`, or None for none."""
    return min(statuses, key=SEVERITY.index) if statuses else None


@dataclass(slots=True)
class DialectSubmission:
    """A message in a dialect, mapped to an event: a `Submission` for `Ingest.submit`.

    `event` is the mapped event as JSON (checked by `decode`, after the replay check, as ingest
    does); `paths` renames its field paths to the dialect's names in errors; `answer_of` draws the
    dialect's answer once the event is stored. An image attachment is an `upload` instead."""

    event: bytes
    schema_type: str
    answer_of: Callable[[NewEvent], bytes]
    paths: dict[str, str] = field(default_factory=dict)
    buttons: list[Button] = field(default_factory=list)
    upload: Upload | None = None
    source: dict[str, Any] | None = None  # an upload's metadata.source
    push: bool = False  # an upload's intent.send_push
    media: list[MediaFile] = field(default_factory=list)

    def digest(self) -> str:
        return self.upload.digest() if self.upload is not None else body_digest(self.event)

    async def decode(self) -> IngestEvent:
        if self.upload is not None:
            try:
                decoded: IngestEvent = await self.upload.decode()
            except ValidationFailed as exc:
                raise self._renamed(exc) from None
            self.media = self.upload.media
            decoded.metadata, decoded.intent = {"source": self.source or {}}, Intent(send_push=self.push)
            return decoded
        try:
            return decode_event(self.event, self.schema_type)
        except ValidationFailed as exc:
            raise self._renamed(exc) from None

    def answer(self, new: NewEvent, accepted: Accepted) -> tuple[int, bytes]:
        return 200, self.answer_of(new)

    def _renamed(self, exc: ValidationFailed) -> ValidationFailed:
        errors = [FieldError(self._path(e.path), e.message) for e in exc.errors]
        renamed = failed(errors)
        return type(exc)(renamed.detail, errors=renamed.errors, headers=exc.headers, extra=exc.extra)

    def _path(self, path: str) -> str:
        for prefix, name in self.paths.items():
            if path == prefix or path.startswith(prefix + ".") or path.startswith(prefix + "["):
                return name + path[len(prefix) :]
        return path


def status_event(title: str, status: str, message: str, source: dict[str, Any], push: bool) -> bytes:
    """The JSON of the `status` event a dialect's message becomes."""
    return msgspec.json.encode(
        {
            "schema_type": "status",
            "content": {"title": title, "status": status, "message": message},
            "metadata": {"source": source},
            "intent": {"update_widget": True, "send_push": push},
        }
    )


def refused(errors: list[FieldError]) -> None:
    """Raise one 422 for the features a dialect's message asks for that Glimpze does not offer."""
    if errors:
        raise failed(errors)


class Publishers:
    """Finds the feed a dialect's credential publishes to (see the module docstring)."""

    def __init__(self, config: Config, feeds: Feeds, keys: Keys, auth_failures: AuthFailureLimiter) -> None:
        self.auto_create = config.ntfy.auto_create
        self.feeds = feeds
        self.keys = keys
        self.auth_failures = auth_failures

    async def feed(self, secret: str | None, topic: str | None, client: str, how: str) -> FeedState:
        """The feed `secret` may publish to under `topic` (None: the write key's own feed); `how`
        says where a dialect takes its credential, for the 401's detail."""
        return await self.auth_failures.guard(client, lambda: self._feed(secret, topic, how))

    async def _feed(self, secret: str | None, topic: str | None, how: str) -> FeedState:
        if not secret:
            raise _unauthorized(f"Send the feed's write key (gzw_…) {how}.")
        if secret.startswith("gzp_") and topic is not None:
            principal = await self.keys.authenticate(secret)
            return await self._topic_feed(principal.project_id, topic)
        feed_id = await self.feeds.of_key(secret)
        if feed_id is None:
            raise _unauthorized(
                "This is not the write key of any feed (write keys start with 'gzw_'; it may have been rotated)."
            )
        feed = await self.feeds.authenticate(feed_id, secret)
        if topic is not None and topic not in (feed.id, feed.topic):
            named = f"its id {feed.id!r}" + (f" or its topic {feed.topic!r}" if feed.topic else "")
            raise NotFound(
                f"The topic {topic!r} does not name this write key's feed: publish to {named}, "
                'or set the feed\'s topic (PATCH /v1/feeds/{id} with {"topic": …}).'
            )
        return feed

    async def _topic_feed(self, project_id: str, topic: str) -> FeedState:
        feed_id = await self.feeds.of_topic(project_id, topic)
        if feed_id is None and self.auto_create:
            try:
                feed_id = (await self.feeds.create(project_id, topic, "status", None, topic)).id
            except Conflict:  # created by a publish running at the same time
                feed_id = await self.feeds.of_topic(project_id, topic)
            except ValidationFailed as exc:
                raise ValidationFailed.at("topic", exc.errors[0].message if exc.errors else exc.detail) from None
        if feed_id is None:
            raise NotFound(
                f"No feed of this project has the id or topic {topic!r}. Set a feed's topic, or turn on "
                "[ntfy] auto_create to create a status feed for a new topic."
            )
        return self.feeds.state(await self.feeds.row(project_id, feed_id))


def _unauthorized(detail: str) -> InvalidWriteKey:
    return InvalidWriteKey(detail, headers={"WWW-Authenticate": 'Bearer realm="glimpze"'})
