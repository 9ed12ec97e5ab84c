"""Fixed pools (intents, actions, buttons, texts) the synthetic conversations are drawn from."""

from __future__ import annotations

from typing import Any, Final

JsonDict = dict[str, Any]

# (id, title or None when the intent has no title, inherit_skill)
INTENTS: Final[tuple[tuple[int, str | None, bool], ...]] = (
    (1001, "Opening hours", True),
    (1002, "Reset password", False),
    (1003, "Change address", True),
    (1004, "Order status", True),
    (1005, "Refund", False),
    (1006, "Talk to a human", False),
    (1007, "Åpningstider og «helligdager»", True),
    (1008, "営業時間", True),
    (1009, "ساعات العمل", False),
    (1010, "Invoice \\ billing", True),
    (1011, 'Product "Pro" plan', True),
    (1012, None, False),
    (1013, "Delivery 🚚", True),
    (1014, "All content", True),
    (1015, None, True),
    (1016, "Cancel subscription", False),
)

ACTION_LANGUAGES: Final[tuple[str, ...]] = ("en-US", "en-US", "en-US", "nb-NO", "sv-SE", "ja-JP")

SYSTEM_TRIGGERS: Final[tuple[str, ...]] = ("welcome_action", "welcome_action", "proactive_action")

SENTIMENTS: Final[tuple[str, ...]] = ("neutral", "neutral", "neutral", "positive", "negative")

LABELS: Final[tuple[str, ...]] = (
    "Perfect Match",
    "Perfect Match",
    "Good Match",
    "Weak Match",
    "Out of scope",
    "Small talk",
)

DEVICES: Final[tuple[str, ...]] = ("desktop", "desktop", "mobile", "mobile", "tablet")

QUALITY_LABELS: Final[tuple[str | None, ...]] = (
    None,
    None,
    "good",
    "good",
    "bad",
    "needs_improvement",
)

SOURCE_URLS: Final[tuple[str, ...]] = (
    "https://www.example.com/",
    "https://www.example.com/support/contact?ref=chat&lang=en",
    "https://www.example.no/kundeservice/åpningstider",
    "https://shop.example.com/cart#checkout",
    "https://www.example.com/search?q=%22refund%22&page=2",
)

# (user input, processed, important words, predicted language)
QUESTIONS: Final[tuple[tuple[str, str, tuple[str, ...], str], ...]] = (
    ("How do I reset my password?", "how reset password", ("password", "reset"), "en-US"),
    ("Show me all content.", "show myself everyth content", ("content", "everyth"), "en-US"),
    ("When are you open on Saturday?", "when open saturday", ("open", "saturday"), "en-US"),
    ("Hvordan endrer jeg adressen min? 🏠", "endr adress", ("adress", "endr"), "nb-NO"),
    ("Hvor er pakken min?? 📦📦", "hvor pakk", ("pakk",), "nb-NO"),
    ("我的订单在哪里？", "订单 哪里", ("订单",), "zh-CN"),
    ("注文をキャンセルしたいです", "注文 キャンセル", ("注文", "キャンセル"), "ja-JP"),
    ("أين طلبي؟ أريد استرداد المبلغ", "طلب استرداد", ("استرداد",), "ar"),
    ("שלום, אני צריך עזרה עם החשבון", "עזרה חשבון", ("חשבון",), "he"),
    ('He said "cancel it" and hung up', "he said cancel hung", ("cancel",), "en-US"),
    ("My file C:\\Users\\kari\\invoice.pdf won't open", "file invoic open", ("invoic",), "en-US"),
    (
        "Emoji test 😀👍🏽🇳🇴 family: 👨\u200d👩\u200d👧\u200d👦",
        "emoji test famili",
        ("emoji",),
        "en-US",
    ),
    ("first line\nsecond line\tand a tab", "first line second line tab", ("line",), "en-US"),
    ("Ωμέγα ünïcödé straße café\u0301", "ωμεγα unicod strass cafe", ("unicod",), "de-DE"),
    ("<script>alert('x')</script> is this safe?", "script alert safe", ("safe",), "en-US"),
    ("'; DROP TABLE conversations; --", "drop tabl convers", ("tabl",), "en-US"),
    ("zero\u200bwidth and line\u2028separator", "zero width line separ", ("width",), "en-US"),
    ("refund", "refund", ("refund",), "en-US"),
    ("I want to talk to a human please", "want talk human pleas", ("human",), "en-US"),
    (
        "Kan jeg få faktura på e-post? Kundenr. 12345678",
        "faktura epost kundenr",
        ("faktura",),
        "nb-NO",
    ),
)

HUMAN_AGENT_LINES: Final[tuple[str, ...]] = (
    "<p>Hi, my name is Kari. How can I help?</p>",
    "<p>Let me check that for you 🙂</p>",
    "<p>I've updated your address. Anything else?</p>",
    "<p>Thanks for waiting! Your refund is on its way.</p>",
)

HUMAN_AGENTS: Final[tuple[JsonDict, ...]] = (
    {"id": 501, "name": "Kari Nordmann", "email": "kari@example.com"},
    {"id": 502, "name": 'Ola "Ole" O\'Neil', "email": "ola@example.com"},
    {"id": 503, "name": "陈伟", "department": {"id": 7, "name": "Billing"}},
)

ANSWER_TEXTS: Final[tuple[str, ...]] = (
    "<p>Hi!</p>",
    "<p>What can I help you with?</p>",
    "<p>Here's all kinds of content:</p>",
    '<p>You can reset your password <a href="https://www.example.com/reset?step=1&amp;'
    'src=chat" target="_blank">here</a>.</p>',
    "<p>We are open <strong>08:00–16:00</strong> on weekdays.</p><p>Closed on Sundays.</p>",
    "<ul><li>Step one</li><li>Step two</li><li>Step «three»</li></ul>",
    "<p>Vi har åpent mandag–fredag. Ha en fin dag! ☀️</p>",
    "<p>ご注文はキャンセルされました。</p>",
    '<p>Path: <code>C:\\temp\\"quoted"</code> &lt;not a tag&gt;</p>',
    "<p>مرحبا! كيف يمكنني مساعدتك؟</p>",
    "<p>Sorry, I didn't understand that. Could you rephrase?</p>",
    "<p>Your order <b>#10042</b> was shipped on Monday.</p>\n<p>Track it below.</p>",
)

SSML_TEXTS: Final[tuple[str, ...]] = (
    '<speak>Hello! <break time="300ms"/> How can I help?</speak>',
    '<speak><prosody rate="slow">Your order has shipped.</prosody></speak>',
    '<speak>Vi har åpent <say-as interpret-as="time">08:00</say-as>.</speak>',
)

IMAGE_URLS: Final[tuple[str, ...]] = (
    "https://cdn.example.com/img/welcome.png",
    "https://cdn.example.com/img/opening%20hours.jpg?v=3",
    "https://cdn.example.com/img/åpent.webp",
)

VIDEOS: Final[tuple[tuple[str, str], ...]] = (
    ("https://vimeo.com/123456789", "vimeo"),
    ("https://www.youtube.com/watch?v=dQw4w9WgXcQ", "youtube"),
    ("https://cdn.example.com/video/howto.mp4", "source"),
)

# "big" is above 2**53 (exact only as an integer, not a float) and below 2**63: integers beyond
# 64 bits are hostile input, tested on their own, and would push every window onto the slow parser.
JSON_PAYLOADS: Final[tuple[Any, ...]] = (
    {"some": "json"},
    {"order": {"id": 10042, "items": [{"sku": "A-1", "qty": 2, "price": 19.9}], "paid": True}},
    [1, 2.5, None, "three", {"four": [4, [4.0]]}],
    {"deep": {"a": {"b": {"c": {"d": {"e": ["f", {"g": None}]}}}}}},
    'just a string with "quotes" and \\ backslash',
    42,
    {"unicode": "日本語 😀", "empty": {}, "list": [], "bool": False, "big": 9007199254740993},
)


def _button(
    bid: int, kind: str, text: str, url: str | None = None, hidden: bool | None = None
) -> JsonDict:
    b: JsonDict = {"type": "button", "id": bid, "button_type": kind}
    if hidden is not None:
        b["hidden"] = hidden
    b["text"] = text
    if url is not None:
        b["url"] = url
    return b


BUTTONS: Final[tuple[JsonDict, ...]] = (
    _button(7, "action", "Action buttons"),
    _button(8, "url", "Boost.AI", "https://www.frankenthalerfoundation.org"),
    _button(9, "action", "Hidden button", hidden=True),
    _button(10, "action", "Api arrays"),
    _button(11, "action", "Named api arrays"),
    _button(12, "action", "JSON"),
    _button(13, "action", "More buttons"),
    _button(14, "action", "Yes 👍", hidden=False),
    _button(15, "action", "No 👎", hidden=False),
    _button(16, "url", "Read more «here»", "https://www.example.no/artikkel?id=7&lang=nb"),
    _button(17, "action", "Snakk med et menneske"),
    _button(18, "action", "Track order"),
    _button(19, "url", "Contact us", "https://www.example.com/contact#form"),
    _button(20, "action", "Internal routing", hidden=True),
    {**_button(21, "action", "Start survey"), "attributes": {"data-track": "survey", "n": 1}},
    {
        **_button(22, "url", "Download PDF", "https://cdn.example.com/terms.pdf"),
        "attributes": {"target": "_blank", "rel": ["noopener", "noreferrer"]},
    },
    _button(23, "action", "注文を追跡"),
    _button(24, "action", "مساعدة"),
)

USER_INFO_KEYS: Final[tuple[str, ...]] = (
    "name",
    "customer_number",
    "segment",
    "tags",
    "address",
    "consents",
)

FIRST_NAMES: Final[tuple[str, ...]] = ("Kari", "Ola", "Åse", "Jürgen", "Zoë", "美咲", "Fatima")

FILTER_VALUES: Final[tuple[tuple[str, ...], ...]] = (
    ("private",),
    ("business",),
    ("private", "norway"),
    ("business", "sweden", "premium"),
)
