"""User and model text shown as text: never as Markdown, HTML or a link.

Why: Streamlit renders `st.markdown`, `st.caption`, `st.error`, `st.warning`, `st.info` and
`st.success` as Markdown, so a prompt, a typed path or a value from a shared link that reaches
them can draw headings and live links (`?prompt=## Session expired [log in again](http://...)`).
Prompts and generated text go to `st.code` or to HTML built with every character escaped
(`st.html`, which does not parse Markdown). Messages that quote user input (errors naming a path, a
link's bad value) go through `plain`, which escapes every ASCII punctuation character: CommonMark
then shows each literally, so no heading, list, emphasis, link, autolink, HTML tag or formula can
start, whatever the message quotes.
"""

from __future__ import annotations

import re
import string

_PUNCTUATION = re.compile("([" + re.escape(string.punctuation) + "])")


def plain(text: str) -> str:
    """`text` for a Markdown element (st.error, st.caption, ...) so that it shows exactly as written."""
    return _PUNCTUATION.sub(r"\\\1", str(text))


def unescaped(markdown: str) -> str:
    """What `plain` escaped, as shown (for tests that read an element's Markdown source)."""
    return re.sub(r"\\([" + re.escape(string.punctuation) + "])", r"\1", markdown)
