"""Prompt caching as OpenAI does it: how much of a request's prompt was seen before, so the
answer's usage can say so in `prompt_tokens_details.cached_tokens`.

OpenAI caches prompts on its own (no marker needed): a request whose prompt starts with a
prefix the same model processed recently is billed that prefix at the cached rate. The
rules it documents, and this cache follows:

- only prompts of 1,024 tokens or more are cached, and the cached part grows in steps of
  128 tokens (1,024, 1,152, 1,280, ...): `cached_tokens` is 0 or one of these;
- the match is an exact prefix: one character that differs ends it;
- the cache is per model;
- tools and a structured-output schema come before the messages ("the structured output
  schema serves as a prefix to the system message"): requests with other tools or another
  `response_format` share nothing, whatever their messages. They are the cache's
  `preamble`, not counted as tokens (the simulator's `prompt_tokens` counts message text).

Tokens are counted as the simulator counts `prompt_tokens`: four characters of the
prompt's text per token (`CHARS_PER_TOKEN`; the prompt is the messages' text parts joined,
`calls.CallInfo.prompt`). Images and documents are counted apart and never cached here,
which can only under-state the cached part.

A prefix counts as seen once a request carrying it was taken (its prompt is processed
first, before the answer is written), not when its answer ends; a request the simulator
refused (an injected 429 or 500) processed nothing and leaves nothing. The cache keeps a
digest of each prefix at every 128-token step, at most `max_entries` of them (the oldest
used go first); it has no time limit (a provider keeps a prefix for minutes, longer than a
test or a bench workload).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

__all__ = [
    "CACHE_STEP_TOKENS",
    "CHARS_PER_TOKEN",
    "MIN_CACHED_TOKENS",
    "PromptCache",
    "cacheable_tokens",
]

#: The shortest prefix OpenAI caches.
MIN_CACHED_TOKENS = 1024
#: The cached part grows in steps of this many tokens.
CACHE_STEP_TOKENS = 128
#: The simulator's token rule (the same as for `prompt_tokens`).
CHARS_PER_TOKEN = 4
#: Prefix digests kept (16 bytes each, plus the dict's own): a few tens of MiB at most.
MAX_ENTRIES = 200_000


def cacheable_tokens(tokens: int) -> int:
    """The longest cacheable length at most `tokens`: 0 below 1,024, else 1,024 + a whole
    number of 128-token steps."""
    if tokens < MIN_CACHED_TOKENS:
        return 0
    steps = (tokens - MIN_CACHED_TOKENS) // CACHE_STEP_TOKENS
    return MIN_CACHED_TOKENS + steps * CACHE_STEP_TOKENS


class PromptCache:
    """The prefixes seen so far, per model and preamble (tools and response schema)."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._seen: OrderedDict[bytes, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def clear(self) -> None:
        self._seen.clear()

    def take(self, model: str, preamble: str, prompt: str) -> int:
        """The cached tokens of a request for `model` whose prompt text is `prompt`: the
        longest prefix, at a 128-token step from 1,024 on, that an earlier request for the
        same model and preamble carried. Remembers this request's prefixes for later ones."""
        digest = hashlib.blake2b(digest_size=16)
        # The separators keep "ab" + "c" apart from "a" + "bc".
        digest.update(f"{model}\x00{preamble}\x00".encode())
        keys: list[bytes] = []
        cached = 0
        start = 0
        length = cacheable_tokens(len(prompt) // CHARS_PER_TOKEN)
        for tokens in range(MIN_CACHED_TOKENS, length + 1, CACHE_STEP_TOKENS):
            end = tokens * CHARS_PER_TOKEN
            digest.update(prompt[start:end].encode())
            start = end
            key = digest.digest()  # does not finish the digest: the next step goes on
            keys.append(key)
            if key in self._seen:
                cached = tokens
        for key in keys:
            self._seen[key] = None
            self._seen.move_to_end(key)
        while len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)
        return cached
