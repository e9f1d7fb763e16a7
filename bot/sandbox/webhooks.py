"""Interaction callbacks (``/interactions/{id}/{token}/callback``) and the interaction webhook
(followups, ``@original``), with the 3-second acknowledgement and 15-minute token windows.

Interaction responses are webhooks: unlike a bot's channel messages they keep their embeds and files
where the bot lacks EMBED_LINKS or ATTACH_FILES (discord-api-docs change log 2022-06-29, "Changes to Bot
Permissions for Interactions and Webhooks": only MENTION_EVERYONE, SEND_TTS_MESSAGES and
USE_EXTERNAL_EMOJIS follow the bot's permissions there; ATTACH_FILES and EMBED_LINKS are not affected)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .interactions import (
    ALLOWED_CALLBACKS,
    APPLICATION_COMMAND,
    AUTOCOMPLETE_RESULT,
    CHANNEL_MESSAGE,
    DEFERRED_CHANNEL_MESSAGE,
    DEFERRED_UPDATE,
    MODAL,
    UPDATE_MESSAGE,
    InteractionRecord,
)
from .limits import ApiError, FormErrors, empty_message, validate_message
from .messages import apply_edit, attach_uploads, edit_leaves_empty, fill_message
from .router import Call, Router
from .state import Message, MessageFlag, Payload

if TYPE_CHECKING:
    from .server import DiscordSandbox


class WebhookApi:
    def __init__(self, sandbox: DiscordSandbox, router: Router) -> None:
        self.sb = sandbox
        r, w = router.add, "/webhooks/{app_id}/{token}"
        r("POST", "/interactions/{interaction_id}/{token}/callback", self.callback, auth=False)
        r("POST", w, self.followup, auth=False)
        r("GET", f"{w}/messages/{{message_id}}", self.get_message, auth=False)
        r("PATCH", f"{w}/messages/{{message_id}}", self.edit_message, auth=False)
        r("DELETE", f"{w}/messages/{{message_id}}", self.delete_message, auth=False)

    # -- helpers -----------------------------------------------------------------------------------
    def response_message(
        self, rec: InteractionRecord, payload: Payload, uploads: list[Any], *, flags: int, followup: bool
    ) -> Message:
        channel = self.sb.channels[rec.channel_id]
        bot = self.sb.users[rec.application_id]
        meta = {
            "id": str(rec.id),
            "type": rec.type,
            "user": rec.user.payload(),
            "authorizing_integration_owners": rec.payload.get("authorizing_integration_owners", {}),
        }
        if rec.source_message is not None:
            meta["interacted_message_id"] = str(rec.source_message.id)
        if followup and rec.original is not None:
            meta["original_response_message_id"] = str(rec.original.id)
        kind = 0 if followup else (20 if rec.type == APPLICATION_COMMAND else 19)
        return self.sb.new_message(
            channel,
            bot,
            payload,
            uploads,
            type=kind,
            flags=flags,
            webhook_id=rec.application_id,
            application_id=rec.application_id,
            interaction_metadata=meta,
            interaction_id=rec.id,
        )

    def by_token(self, call: Call) -> InteractionRecord:
        rec = self.sb.interaction_by_token(call.params["token"])
        if rec is None or str(rec.application_id) != call.params["app_id"]:
            raise ApiError(404, 10015, "Unknown Webhook")
        age = time.monotonic() - rec.dispatched_at
        if age > self.sb.followup_ttl:
            raise ApiError(
                401,
                50027,
                "Invalid Webhook Token",
                detail=f"interaction token used {age:.0f}s after creation (valid {self.sb.followup_ttl:g}s)",
            )
        return rec

    def target(self, call: Call, rec: InteractionRecord) -> Message:
        ident = call.params["message_id"]
        msg = rec.original if ident == "@original" else next((m for m in rec.messages if str(m.id) == ident), None)
        if msg is None or msg.deleted:
            raise ApiError(404, 10008, "Unknown Message")
        return msg

    @staticmethod
    def callback_response(rec: InteractionRecord, ctype: int, message: Message | None) -> Payload:
        inner: Payload = {"id": str(rec.id), "type": rec.type}
        if message is not None:
            inner.update(
                response_message_id=str(message.id),
                response_message_loading=message.loading,
                response_message_ephemeral=message.ephemeral,
            )
        data: Payload = {"interaction": inner}
        if message is not None and ctype in (CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, UPDATE_MESSAGE):
            data["resource"] = {"type": ctype, "message": message.payload()}
        elif ctype in (DEFERRED_UPDATE, AUTOCOMPLETE_RESULT, MODAL):
            data["resource"] = {"type": ctype}
        return data

    # -- routes ----------------------------------------------------------------------------------
    async def callback(self, call: Call) -> Any:
        rec = self.sb.interactions.get(call.id("interaction_id"))
        if rec is None or rec.token != call.params["token"]:
            raise ApiError(404, 10062, "Unknown interaction")
        payload, uploads = await self.sb.read_body(call.request)
        delay = time.monotonic() - rec.dispatched_at
        ctype = payload.get("type")
        if rec.acknowledged:
            raise ApiError(
                400,
                40060,
                "Interaction has already been acknowledged.",
                detail=f"second callback (type {ctype}) for {rec.describe()}",
            )
        if rec.failed:
            raise ApiError(404, 10062, "Unknown interaction", detail=f"{rec.describe()}")
        if delay > self.sb.interaction_ack_timeout:
            rec.failed = f"acknowledged too late ({delay:.2f}s)"
            self.sb.notify()
            raise ApiError(
                404,
                10062,
                "Unknown interaction",
                kind="late_interaction_ack",
                detail=f"callback {delay:.2f}s after INTERACTION_CREATE for {rec.name or rec.id} "
                f"(limit {self.sb.interaction_ack_timeout:g}s)",
            )
        if ctype not in ALLOWED_CALLBACKS.get(rec.type, set()):
            raise ApiError(
                400,
                50035,
                "Invalid Form Body",
                errors={
                    "type": {
                        "_errors": [
                            {
                                "code": "INTERACTION_RESPONSE_TYPE_INVALID",
                                "message": f"Callback type {ctype} is not valid for interaction type {rec.type}",
                            }
                        ]
                    }
                },
            )
        data = payload.get("data") or {}
        message: Message | None = None
        if ctype == CHANNEL_MESSAGE:
            validate_message(data, len(uploads), interaction=True)
            flags = int(data.get("flags") or 0) & (MessageFlag.EPHEMERAL | MessageFlag.SUPPRESS_NOTIFICATIONS)
            message = rec.original = self.response_message(rec, data, uploads, flags=flags, followup=False)
            self.sb.publish(message)
        elif ctype == DEFERRED_CHANNEL_MESSAGE:
            self.check_deferred_flags(data)
            flags = MessageFlag.LOADING | (int(data.get("flags") or 0) & MessageFlag.EPHEMERAL)
            message = rec.original = self.response_message(rec, {}, [], flags=flags, followup=False)
            self.sb.publish(message)
        elif ctype in (DEFERRED_UPDATE, UPDATE_MESSAGE):
            message = rec.original = rec.source_message
            if ctype == UPDATE_MESSAGE and message is not None:
                validate_message(
                    data, len(uploads), existing_attachments=len(message.attachments), creating=False, interaction=True
                )
                apply_edit(message, data, uploads, self.sb.file_store(message.channel_id), self.sb.users.get)
                message.edited_at = self.sb.now()
                self.sb.edited(message)
        elif ctype == AUTOCOMPLETE_RESULT:
            choices = data.get("choices") or []
            if len(choices) > 25:
                errors = FormErrors()
                errors.max_length(("data", "choices"), 25)
                errors.raise_if_any()
            rec.choices = choices
        elif ctype == MODAL:
            self.check_modal(data)
            rec.modal = data
        rec.callback_type, rec.callback_delay = ctype, delay
        self.sb.notify()
        if call.request.query.get("with_response") in ("1", "true", "True"):
            return self.callback_response(rec, ctype, message)
        return None

    @staticmethod
    def check_deferred_flags(data: Payload) -> None:
        """ "If you create a callback with the type DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE the only valid
        message flag you may use is EPHEMERAL" (receiving-and-responding, Interaction Callback Data)."""
        flags = data.get("flags")
        if flags is not None and (not isinstance(flags, int) or flags & ~MessageFlag.EPHEMERAL):
            errors = FormErrors()
            errors.add(("data", "flags"), "MESSAGE_FLAGS_INVALID", "Only the EPHEMERAL flag may be set on a deferred response")
            errors.raise_if_any()

    @staticmethod
    def check_modal(data: Payload) -> None:
        errors = FormErrors()
        for key, limit in (("custom_id", 100), ("title", 45)):
            value = data.get(key)
            if not isinstance(value, str) or not value:
                errors.add(("data", key), "BASE_TYPE_REQUIRED", "This field is required")
            elif len(value) > limit:
                errors.max_length(("data", key), limit)
        components = data.get("components")
        if not isinstance(components, list) or not 1 <= len(components) <= 5:
            errors.add(("data", "components"), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length.")
        errors.raise_if_any()

    async def followup(self, call: Call) -> Any:
        rec = self.by_token(call)
        payload, uploads = await self.sb.read_body(call.request)
        if not rec.acknowledged:
            raise ApiError(
                404,
                10015,
                "Unknown Webhook",
                kind="followup_before_ack",
                detail=f"followup before the interaction was acknowledged: {rec.describe()}",
            )
        validate_message(payload, len(uploads), interaction=True)
        original = rec.original
        if rec.callback_type == DEFERRED_CHANNEL_MESSAGE and original is not None and original.loading:
            # The first followup after a deferral replaces the "thinking" message; its flags are ignored.
            # Discord documents this as kept "for backwards compatibility" and deprecated.
            self.sb.record_deprecation(
                "followup_finishes_deferral",
                f"{rec.describe()} was finished with POST /webhooks/{{app_id}}/{{token}}; "
                "use PATCH /webhooks/{app_id}/{token}/messages/@original (edit_original_response)",
                "POST /webhooks/{app_id}/{token}",
            )
            attachments = attach_uploads(payload, uploads, self.sb.file_store(original.channel_id))
            fill_message(original, {**payload, "flags": 0}, attachments, self.sb.users.get)
            original.flags &= ~MessageFlag.LOADING
            msg = original
            self.sb.edited(msg)
        else:
            flags = int(payload.get("flags") or 0) & (MessageFlag.EPHEMERAL | MessageFlag.SUPPRESS_NOTIFICATIONS)
            msg = self.response_message(rec, payload, uploads, flags=flags, followup=True)
            rec.followups.append(msg)
            self.sb.publish(msg)
        rec.updated = True
        self.sb.notify()
        if call.request.query.get("wait") in ("1", "true", "True"):
            return msg.payload()
        return None

    async def get_message(self, call: Call) -> Any:
        rec = self.by_token(call)
        return self.target(call, rec).payload()

    async def edit_message(self, call: Call) -> Any:
        rec = self.by_token(call)
        msg = self.target(call, rec)
        payload, uploads = await self.sb.read_body(call.request)
        validate_message(payload, len(uploads), existing_attachments=len(msg.attachments), creating=False, interaction=True)
        if edit_leaves_empty(msg, payload, len(uploads)):
            raise empty_message(
                f"editing {'the original response' if msg is rec.original else 'a followup'} would leave it empty"
            )
        apply_edit(msg, payload, uploads, self.sb.file_store(msg.channel_id), self.sb.users.get)
        if msg.loading:
            msg.flags &= ~MessageFlag.LOADING
        else:
            msg.edited_at = self.sb.now()
        rec.updated = True
        self.sb.edited(msg)
        return msg.payload()

    async def delete_message(self, call: Call) -> Any:
        rec = self.by_token(call)
        msg = self.target(call, rec)
        rec.updated = True
        self.sb.deleted(msg)
