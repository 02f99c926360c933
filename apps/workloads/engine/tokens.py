"""Token counts and token-exact prompt text from an uploaded Hugging Face `tokenizer.json`.

"Exact" means content tokens: the ids of the text encoded without special tokens. A chat server adds its template's
tokens on top (design 0013 §2.7), which a probe measures apart.
"""

from collections.abc import Sequence

import numpy as np
from tokenizers import Tokenizer

MAX_TRIES = 10

# Written for this module: plain ASCII sentences about ordinary things, so that slices decode to readable text and
# re-encode to the same ids. It ends with a newline, so the text reads on when a long slice wraps around to the start.
CORPUS = """\
The kettle clicked off in the kitchen, and a thin line of steam rose toward the window. Outside, the street was \
still wet from the night rain, and the first bus of the morning went past with its lights on. A neighbour walked \
her dog along the fence, stopping every few steps so that it could sniff the grass. The baker on the corner had \
already put out a chalk board that listed bread, rolls and a plum cake for the weekend.
Most people keep a drawer full of things they cannot throw away: spare keys for locks that no longer exist, \
batteries of uncertain charge, a ruler, rubber bands, and the manual for a radio that broke years ago. Once a year \
someone empties it onto the table, sorts the contents into small piles, and then puts nearly everything back.
The garden needs less work in winter. The beds are covered with leaves, the tools hang on their hooks in the shed, \
and the hose is rolled up so that it will not freeze. In early spring the first green shoots push through the \
soil, and it is time to turn the compost, sharpen the shears and decide where the beans will go this year.
A good loaf of bread takes flour, water, salt, yeast and time. The dough is mixed, left to rest, folded a few times \
and shaped into a round. It rises slowly in a cool room, and it bakes in a hot oven until the crust is brown and \
sounds hollow when tapped. The smell fills the house long before the loaf is ready to cut.
On the train to work, people read, sleep or look out at the fields. A man in a grey coat does the crossword with a \
pencil, a student listens to music with her eyes closed, and two friends talk quietly about a film they saw. At \
each station a few people get off, a few more get on, and the conductor checks tickets with a patient nod.
The library opens at nine. Before then, a clerk pushes a cart of returned books along the shelves, putting each one \
back in its place by the number on its spine. Children come in the afternoon for picture books, students take the \
tables by the windows, and an old man reads the newspapers in the same chair every day.
Fixing a bicycle is mostly a matter of patience. A flat tyre needs two levers, a patch, some glue and a pump. The \
chain wants a little oil, the brakes need to be adjusted so that they do not rub, and the saddle should be set at \
the right height, with the leg almost straight at the bottom of each turn of the pedals.
In the market the stalls are set up before dawn. There are apples and pears in wooden crates, potatoes still \
covered in earth, bunches of carrots with their leaves, eggs in paper boxes, and cheese cut to order from large \
wheels. By noon the busiest stalls are nearly empty, and the traders start to fold their tables away.
A rainy afternoon is a good time to cook a pot of soup. Onions and celery soften in a little butter, then go in \
with carrots, lentils, a bay leaf and stock. The pot simmers for an hour while the windows fog up, and the soup is \
served with a spoon of yoghurt and the last of the bread from the morning.
The school bell rings at half past three. Parents wait by the gate, talking about homework, football practice and \
the weather. The children come out in a rush, with coats half on and bags swinging, and each one has a story about \
the day that cannot wait until they are home.
At the end of the day the lamps come on along the road, one after another. The shops pull down their shutters, \
the last buses run half empty, and the houses settle into their evening sounds: a radio, a washing machine, a door \
closing, and somewhere a piano played slowly by someone still learning the tune.
"""

WORDS: tuple[str, ...] = tuple(CORPUS.split())
MEAN_WORD_CHARS = sum(len(w) + 1 for w in WORDS) / len(WORDS)  # a word and the space after it


class TokenCounter:
    """A loaded tokenizer: counts content tokens (no special tokens) and knows which ids are ordinary."""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        self.special_ids = sorted(i for i, token in tokenizer.get_added_tokens_decoder().items() if token.special)
        allowed = np.ones(self.vocab_size, dtype=bool)
        allowed[[i for i in self.special_ids if i < self.vocab_size]] = False
        self.allowed_ids = np.flatnonzero(allowed)

    def encode(self, text: str) -> list[int]:
        """Content token ids of `text`."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`, special tokens left out."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def count(self, texts: Sequence[str]) -> list[int]:
        """Content token count of each text, encoded as one batch."""
        return [len(e.ids) for e in self.tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)]


def load_tokenizer(content: bytes) -> TokenCounter:
    """A TokenCounter for the bytes of a `tokenizer.json`; ValueError saying why when they are not one."""
    try:
        tokenizer = Tokenizer.from_buffer(content)
    except Exception as exc:  # the binding raises a bare Exception for some files, ValueError for others
        raise ValueError(f"is not a Hugging Face tokenizer.json ({exc})") from None
    if tokenizer.get_vocab_size(with_added_tokens=True) == 0:
        raise ValueError("is not a usable tokenizer.json (its vocabulary is empty)")
    return TokenCounter(tokenizer)


class ExactText:
    """Readable text of exactly N content tokens, cut from a corpus tokenized once.

    The ids are a contiguous slice of the corpus ids (wrapping around at its end), starting at a word picked by the
    caller's rng, so that openings differ between requests and a server's prefix cache is not hit by accident. A
    slice does not always re-encode to itself (merges across its ends), so the loop decodes, re-encodes, and trims
    or extends the slice by the difference, up to MAX_TRIES times. Extending takes the corpus ids that follow, which
    keeps the text readable; random ids often decode to U+FFFD with byte-level BPE and drift further.
    """

    def __init__(self, counter: TokenCounter, corpus: str = CORPUS):
        self.counter = counter
        encoding = counter.tokenizer.encode(corpus, add_special_tokens=False)
        self.corpus_ids = np.asarray(encoding.ids, dtype=np.int64)
        if len(self.corpus_ids) == 0:
            raise ValueError("the corpus encodes to no tokens")
        starts = [
            i
            for i, (begin, _) in enumerate(encoding.offsets)
            if begin == 0 or corpus[begin].isspace() or corpus[begin - 1].isspace()
        ]
        self.word_starts = np.asarray(starts or range(len(self.corpus_ids)), dtype=np.int64)
        self.mismatches = 0  # draws that ended off target, for the length report

    def _slice(self, start: int, length: int) -> np.ndarray:
        return self.corpus_ids[(start + np.arange(length)) % len(self.corpus_ids)]

    def start(self, rng: np.random.Generator) -> int:
        """A corpus position at the start of a word, drawn from `rng`."""
        return int(self.word_starts[rng.integers(len(self.word_starts))])

    def make(self, n_tokens: int, rng: np.random.Generator) -> tuple[str, int]:
        """(text, delivered content tokens) aiming at `n_tokens`; delivered differs only when the loop gave up."""
        return self.fit("", n_tokens, self.start(rng))

    def fit(self, head: str, total_tokens: int, start: int) -> tuple[str, int]:
        """(head + corpus text from `start`, delivered) with the whole text aiming at `total_tokens` content tokens.

        `head` is kept byte for byte (a shared prefix); only the corpus part is trimmed or extended.
        """
        if total_tokens < 1:
            raise ValueError(f"a prompt needs at least 1 token, not {total_tokens}")
        head_tokens = len(self.counter.encode(head)) if head else 0
        length = max(total_tokens - head_tokens, 0)
        best: tuple[int, str, int] | None = None  # (|miss|, text, delivered)
        tried: set[int] = set()
        for _ in range(MAX_TRIES):
            tried.add(length)
            text = head + self.counter.decode(self._slice(start, length))
            delivered = len(self.counter.encode(text))
            miss = delivered - total_tokens
            if best is None or abs(miss) < best[0]:
                best = (abs(miss), text, delivered)
            if miss == 0:
                break
            length = max(length - miss, 0)
            while length in tried and length > 0:  # the count jumped over the target: step one id at a time
                length += -1 if miss > 0 else 1
            if length in tried:
                break
        assert best is not None
        if best[0]:
            self.mismatches += 1
        return best[1], best[2]


def words_text(n_words: int, rng: np.random.Generator) -> str:
    """`n_words` words' worth of corpus text from a random word on (for a server calibrated by words, no tokenizer).

    The text is as long in characters as `n_words` words of average length (±half a word), whatever words it happens
    to start with: a server's token count follows characters much more closely than words, so a prompt starting on
    long words would otherwise come out several percent longer than one starting on short words."""
    if n_words <= 0:
        return ""
    start = int(rng.integers(len(WORDS)))
    target = n_words * MEAN_WORD_CHARS  # characters, counting the space after each word
    words: list[str] = []
    chars = 0.0
    i = start
    while True:
        word = WORDS[i % len(WORDS)]
        if words and chars + (len(word) + 1) / 2 > target:
            break
        words.append(word)
        chars += len(word) + 1
        i += 1
    return " ".join(words)
