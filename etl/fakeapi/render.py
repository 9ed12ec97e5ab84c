"""Renders one synthetic conversation straight to compact JSON text from pre-encoded parts."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from datetime import tzinfo
from typing import Any, Final, TypeVar

from etl.fakeapi import vocab
from etl.fakeapi.timefmt import US_PER_S, iso_us

T = TypeVar("T")
HOUR_US: Final = 3600 * US_PER_S
B: Final = ("false", "true")


def j(value: Any) -> str:
    """Compact JSON text of a value, UTF-8 kept raw."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _intent(i: tuple[int, str | None, bool]) -> dict[str, Any]:
    d: dict[str, Any] = {"type": "intent", "id": i[0]}
    if i[1] is not None:
        d["title"] = i[1]
    d["inherit_skill"] = i[2]
    return d


INTENT_J: Final = tuple(j(_intent(i)) for i in vocab.INTENTS)
BUTTON_J: Final = tuple(j(b) for b in vocab.BUTTONS)
CLICKED_J: Final = tuple(
    tuple(j({**b, "hidden": bool(b.get("hidden")), "source_url": u}) for u in vocab.SOURCE_URLS)
    for b in vocab.BUTTONS
)
CLICKABLE: Final = frozenset(
    i for i, b in enumerate(vocab.BUTTONS) if b["button_type"] == "action" and not b.get("hidden")
)
TEXT_J: Final = tuple(j(t) for t in vocab.ANSWER_TEXTS)
SSML_J: Final = tuple(j(t) for t in vocab.SSML_TEXTS)
IMAGE_J: Final = tuple(j(u) for u in vocab.IMAGE_URLS)
VIDEO_J: Final = tuple((j(u), j(t)) for u, t in vocab.VIDEOS)
JSON_J: Final = tuple(j(p) for p in vocab.JSON_PAYLOADS)
SOURCE_J: Final = tuple(j(u) for u in vocab.SOURCE_URLS)
DEVICE_J: Final = tuple(j(d) for d in vocab.DEVICES)
SENTIMENT_J: Final = tuple(j(s) for s in vocab.SENTIMENTS)
LANG_J: Final = tuple(j(s) for s in vocab.ACTION_LANGUAGES)
TRIGGER_J: Final = tuple(j(s) for s in vocab.SYSTEM_TRIGGERS)
LABELS_J: Final = tuple(j(list(vocab.LABELS[a:b])) for a in range(4) for b in range(a, a + 3))
FILTER_J: Final = tuple(j(list(v)) for v in vocab.FILTER_VALUES)
HUMAN_LINE_J: Final = tuple(j(t) for t in vocab.HUMAN_AGENT_LINES)
HUMAN_AGENT_J: Final = tuple(j(a) for a in vocab.HUMAN_AGENTS)
QUESTION_J: Final = tuple(
    (j(text), j(processed), j(list(words)), j(lang), j(words[0]))
    for text, processed, words, lang in vocab.QUESTIONS
)
TRANSFER_TEXT_J: Final = j("<p>Connecting you to a human agent…</p>")
CONTENT_KINDS: Final = ("text",) * 10 + ("link",) * 3 + ("image", "image", "json", "json")
CONTENT_KINDS_ALL: Final = (*CONTENT_KINDS, "video", "ssml", "carousel")
HUMAN_QUESTION: Final = 18  # index of "I want to talk to a human please"


def _user_infos() -> tuple[str, ...]:
    rng, out = random.Random(7), []
    for _ in range(16):
        info: dict[str, Any] = {}
        for key in rng.sample(vocab.USER_INFO_KEYS, rng.randint(1, 4)):
            value: Any = {
                "name": rng.choice(vocab.FIRST_NAMES),
                "customer_number": rng.randint(10_000, 99_999_999),
                "tags": rng.sample(["vip", "new", "b2b", "🎉"], 2),
                "address": {"city": "Tromsø", "zip": "9008", "lines": ["Storgata 1", None]},
                "consents": {"marketing": rng.random() < 0.5, "updated": "2023-12-01"},
            }.get(key, rng.choice(["retail", "enterprise", None]))
            info[key] = value
        out.append(j(info))
    return tuple(out)


USER_INFO_J: Final = _user_infos()


class Builder:
    """Writes one conversation's messages as JSON text, advancing a private clock."""

    def __init__(
        self,
        rng: random.Random,
        msg_id: int,
        created_us: int,
        jumps: list[tuple[int, int, int]],
        tz: tzinfo,
        sessions: bool,
    ) -> None:
        self.rng = rng
        self.rand = rng.random
        self.msg_id = msg_id
        self.tz = tz
        self.t = created_us + 8_000 + int(self.rand() * 32_000)
        self.jumps = list(jumps)  # (at message index, min absolute us, add us)
        self.msgs: list[str] = []
        self.interactions: list[int] = []
        self.sessions = sessions
        self.session = self.new_session()
        self.human = False
        self.clickable: list[int] = []
        self.action: str | None = None
        self.intent: int | None = None
        self.last_ts = ""

    def ri(self, lo: int, hi: int) -> int:
        """Uniform int in [lo, hi] (much cheaper than Random.randint)."""
        return lo + int(self.rand() * (hi - lo + 1))

    def pick(self, seq: Sequence[T]) -> T:
        """Uniform choice (much cheaper than Random.choice)."""
        return seq[int(self.rand() * len(seq))]

    def new_session(self) -> str:
        return f"{self.rng.getrandbits(64):016x}-{self.rng.getrandbits(32):08x}"

    def advance(self, lo_s: float, hi_s: float) -> None:
        self.t += int(lo_s * US_PER_S) + int(self.rand() * (hi_s - lo_s) * US_PER_S)
        while self.jumps and len(self.msgs) >= self.jumps[0][0]:
            _, min_abs, add = self.jumps.pop(0)
            self.t = max(self.t + add, min_abs)
            if add >= HOUR_US:
                self.session = self.new_session()

    def head(self, kind: str) -> str:
        self.last_ts = ts = iso_us(self.t, self.tz)
        s = f'{{"id":{self.msg_id},"time":"{ts}","is_human_chat":{B[self.human]},"type":"{kind}"'
        self.msg_id += 1
        return f'{s},"session_id":"{self.session}"' if self.sessions else s

    def new_action(self, transfer: bool = False) -> str:
        extra = f',"x_version":{self.ri(1, 40)}' if self.rand() < 0.03 else ""
        return (
            f'{{"type":"action","action_type":"content","id":{self.ri(3000, 3400)},'
            f'"language":{self.pick(LANG_J)},"transfer_to_human":{B[transfer]}{extra}}}'
        )

    def contents(self, kinds: Sequence[str]) -> str:
        ct, parts = self.t + self.ri(1500, 5000), []
        for kind in kinds:
            ts = iso_us(ct, self.tz)
            if kind == "text":
                part = f'"text":{self.pick(TEXT_J)},"time":"{ts}"'
            elif kind == "image":
                part = f'"url":{self.pick(IMAGE_J)},"time":"{ts}"'
            elif kind == "video":
                url, vtype = self.pick(VIDEO_J)
                full = B[self.rand() < 0.2]
                part = f'"url":{url},"time":"{ts}","video_fullscreen":{full},"video_type":{vtype}'
            elif kind == "json":
                part = f'"time":"{ts}","json":{self.pick(JSON_J)}'
            elif kind == "ssml":
                part = f'"ssml":{self.pick(SSML_J)},"time":"{ts}"'
            elif kind == "link":
                k = self.ri(1, 6)
                first = self.ri(0, len(BUTTON_J) - k)
                self.clickable += [i for i in range(first, first + k) if i in CLICKABLE]
                part = f'"time":"{ts}","buttons":[{",".join(BUTTON_J[first : first + k])}]'
            else:  # carousel: an undocumented content type
                cards = ",".join(
                    f'{{"title":"Card {n} — «{self.pick(vocab.FIRST_NAMES)}»",'
                    f'"image_url":{self.pick(IMAGE_J)},"buttons":[{self.pick(BUTTON_J)}]}}'
                    for n in range(self.ri(2, 3))
                )
                part = f'"time":"{ts}","cards":[{cards}],"x_layout":"horizontal"'
            parts.append(f'{{"type":"{kind}",{part}}}')
            ct += self.ri(2000, 6000)
        return f"[{','.join(parts)}]"

    def content_kinds(self) -> list[str]:
        kinds = [self.pick(CONTENT_KINDS_ALL) for _ in range(self.ri(1, 3))]
        return ["text", *kinds] if kinds[0] != "text" and self.rand() < 0.7 else kinds

    def welcome(self) -> None:
        self.action = self.new_action()
        trigger = self.pick(TRIGGER_J)
        content = self.contents(["text"] * self.ri(1, 2))
        self.msgs.append(
            f'{self.head("answer")},"actions":{{"displayed":{self.action}}},'
            f'"system_action_trigger":{trigger},"content":{content}}}'
        )

    def question(self, which: int | None = None) -> None:
        self.advance(2, 75)
        text, processed, words, lang, word = QUESTION_J[
            self.ri(0, len(QUESTION_J) - 1) if which is None else which
        ]
        self.intent = intent = self.ri(0, len(INTENT_J) - 1)
        s = self.head("question")
        self.interactions.append(self.t)
        if self.rand() >= 0.03:  # very old conversations lack the analysis
            analysis = ""
            if not self.human:
                analysis = (
                    f'{{"processed":{processed},"translated":{processed},"winner":true,'
                    f'"intent":{INTENT_J[intent]}}}'
                )
                if self.rand() < 0.15:
                    analysis += (
                        f',{{"processed":{word},"translated":{word},"winner":false,'
                        f'"intent":{self.pick(INTENT_J)}}}'
                    )
            s += (
                f',"question":{{"type":"question_analysis","input":{text},'
                f'"predicted_language":{lang},"sentiment":{self.pick(SENTIMENT_J)},'
                f'"labels":{self.pick(LABELS_J)},"analysis":[{analysis}],'
                f'"important_words":{words}}}'
            )
        s += f',"source_url":{self.pick(SOURCE_J)},"device":{self.pick(DEVICE_J)}'
        if not self.human:
            s += f',"intents":{{"predicted":{INTENT_J[intent]}}}'
        if self.rand() < 0.2:
            s += f',"sent_filter_values":{self.pick(FILTER_J)}'
        if self.rand() < 0.05:
            s += ',"x_client":{"sdk":"web","version":"4.2.1","flags":["beta",null]}'
        self.msgs.append(s + "}")

    def answer(self, clicked: int | None = None, transfer: bool = False) -> None:
        self.advance(0.01, 1.5)
        s = self.head("answer")
        if clicked is not None:
            self.interactions.append(self.t)
            s += f',"button_clicked":{self.pick(CLICKED_J[clicked])}'
        came_from = ""
        if self.action is not None and (clicked is not None or self.rand() < 0.3):
            came_from = f'"came_from":{self.action},'
        self.action = self.new_action(transfer)
        s += f',"actions":{{{came_from}"displayed":{self.action}}}'
        if self.intent is not None:
            s += f',"intents":{{"came_from":{INTENT_J[self.intent]}}}'
        if transfer:
            ts = iso_us(self.t + self.ri(1500, 5000), self.tz)
            s += f',"content":[{{"type":"text","text":{TRANSFER_TEXT_J},"time":"{ts}"}}]'
        else:
            s += f',"content":{self.contents(self.content_kinds())}'
        if self.rand() < 0.1:
            s += f',"matched_filter":{{"id":{self.ri(1, 9)},"values":["private","norway"]}}'
            s += ',"sent_filter_values":["private"]'
        self.msgs.append(s + "}")

    def human_answer(self) -> None:
        self.advance(5, 120)
        ts = iso_us(self.t + self.ri(1500, 5000), self.tz)
        self.msgs.append(
            f'{self.head("answer")},"content":[{{"type":"text",'
            f'"text":{self.pick(HUMAN_LINE_J)},"time":"{ts}"}}],'
            f'"human_agent":{self.pick(HUMAN_AGENT_J)}}}'
        )

    def event(self) -> None:
        self.advance(1, 30)  # an undocumented message type; not an end-user interaction
        value = self.pick(("thumbs_up", "thumbs_down"))
        self.msgs.append(
            f'{self.head("event")},"event":{{"name":"feedback","value":"{value}"}},'
            f'"x_origin":"widget"}}'
        )

    def run(self, n_messages: int, silent: bool) -> None:
        """Write about n_messages messages: welcome, then question/answer turns and extras."""
        if n_messages > 2 or silent:
            self.welcome()
        if silent:
            return
        self.question()
        self.answer()
        while len(self.msgs) < n_messages:
            r = self.rand()
            if self.human:
                if r < 0.08:
                    break
                self.question() if r < 0.5 else self.human_answer()
            elif r < 0.05:
                self.question(HUMAN_QUESTION)
                self.answer(transfer=True)
                self.human = True
                self.session = self.new_session()
                self.human_answer()
            elif r < 0.1:
                self.event()
            elif r < 0.32 and self.clickable:
                self.advance(2, 40)
                self.answer(clicked=self.pick(self.clickable))
            else:
                self.question()
                self.answer()
