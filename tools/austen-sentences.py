#!/usr/bin/env python3
"""austen-sentences.py AUSTEN_DIR — chapter 09's pretraining corpus from Jane Austen's six novels.

Reads AUSTEN_DIR/<book>.txt as austen-corpus.py writes them (one line of the book per line) and
writes AUSTEN_DIR/pretrain-train.txt and AUSTEN_DIR/pretrain-eval.txt in the format of
google-research/bert's create_pretraining_data.py (tfm's --corpus files): one sentence per line,
a blank line between documents. Standard library only; the output is a pure function of the six
books (no randomness, no dictionary order), so its SHA-256 is fixed.

A document is one chapter. The rules, in the order they are applied to a book:

  chapters   a chapter starts at a line "CHAPTER <n>" or "Chapter <n>", <n> a number or a Roman
             numeral ("CHAPTER 1", "Chapter 12", "CHAPTER XII"); chapters are counted from 1 in
             the order they appear in the book (Emma's numbering restarts in each volume, this
             count does not). Everything before the first heading (title page, Northanger
             Abbey's advertisement) is dropped, and so are the heading lines themselves.
  the end    a line "THE END" or "FINIS" (any case) ends the book, and so does Northanger
             Abbey's editorial "A NOTE ON THE TEXT": nothing after it is read.
  dropped    lines "VOLUME <n>" (Emma's volume headings); lines of asterisks ("* * * * *", a
             scene break), which end a paragraph; a paragraph that begins with "[" and ends with
             "]" (the transcribers' notes "[End volume one of this edition. ...]", and Emma's
             "[To Mrs. Weston.]"); the underscores of _italics_ (BERT's tokenizer would make each
             one a word-piece of its own).
  paragraphs a chapter's wrapped lines are joined with single spaces into paragraphs; a blank
             line ends a paragraph; runs of whitespace become one space.
  sentences  a paragraph is cut after ".", "!" or "?", with any closing quotes and brackets
             (" ' ) ]) and Austen's dashes ("--") that follow it, when whitespace and then an
             uppercase letter or an opening quote (" or ') come next. Not after the
             abbreviations Mr. Mrs. Dr. St. Messrs. nor after an initial (one uppercase letter
             other than "I" and a full stop: "F. C. Weston Churchill"). "Miss" is a word, not an
             abbreviation. The rule is simple on purpose: "Oh! Mr. Knightley" makes "Oh!" a
             sentence, "Mr. E. The man" stays one.

Held out for evaluation: every chapter whose number within its book (the count above, from 1) is
a multiple of 10, i.e. chapters 10, 20, 30, ... of each novel: a fixed set, so that every run
evaluates on the same text. All other chapters are the training set. Documents are written book
by book in the order of BOOKS, chapters in book order.

Prints, for each file, its documents, sentences and SHA-256. Each file is written to a temporary
name and renamed only when both are complete.
"""
import hashlib
import os
import re
import sys

BOOKS = ["sensesensibility", "prideprejudice", "mansfieldpark", "emma", "northangerabbey",
         "persuasion"]
EVAL_EVERY = 10

HEADING = re.compile(r"^\s*chapter\s+(?:[0-9]+|[ivxlc]+)\.?\s*$", re.IGNORECASE)
VOLUME = re.compile(r"^\s*volume\s+(?:[0-9]+|[ivxlc]+)\.?\s*$", re.IGNORECASE)
THE_END = re.compile(r"^\s*(?:the end|finis|a note on the text)\s*$", re.IGNORECASE)
SCENE_BREAK = re.compile(r"^\s*\*(?:\s*\*)*\s*$")
# A candidate end: the terminal mark, closing quotes/brackets, then whitespace; the lookahead asks
# for an uppercase letter or an opening quote. Group 1 is the word before the mark (for the
# abbreviation test), group 2 the mark and closers (kept with the sentence).
END = re.compile(r"""(\S*?)([.!?](?:["')\]]|--)*)\s+(?=[A-Z"'])""")
ABBREVIATIONS = {"Mr", "Mrs", "Dr", "St", "Messrs"}


def chapters(lines):
    """The chapters of a book: lists of lines, without the headings and what precedes the first."""
    out = None
    for line in lines:
        if THE_END.match(line):
            break
        if HEADING.match(line):
            out = [] if out is None else out
            out.append([])
        elif out is not None and not VOLUME.match(line):
            out[-1].append(line)
    return out or []


def paragraphs(lines):
    """Joins wrapped lines; a blank line or a scene break ends a paragraph."""
    paras, cur = [], []
    for line in lines + [""]:
        if line.strip() and not SCENE_BREAK.match(line):
            cur.append(line)
            continue
        if cur:
            text = " ".join(" ".join(cur).replace("_", "").split())
            if text and not (text.startswith("[") and text.endswith("]")):
                paras.append(text)
        cur = []
    return paras


def is_abbreviation(word):
    """Is `word` (what precedes a full stop, with any opening quote or bracket) an abbreviation?"""
    w = word.lstrip("\"'([")
    return w in ABBREVIATIONS or (len(w) == 1 and "A" <= w <= "Z" and w != "I")


def sentences(para):
    """Cuts a paragraph after each sentence end of the rule above."""
    out, start = [], 0
    for m in END.finditer(para):
        if m.group(2)[0] == "." and is_abbreviation(m.group(1)):
            continue
        out.append(para[start:m.end(2)])
        start = m.end()
    out.append(para[start:])
    return [s for s in out if s]


def main(argv):
    if len(argv) != 2:
        sys.exit(__doc__.splitlines()[0])
    adir = argv[1]
    docs = {"train": [], "eval": []}
    for book in BOOKS:
        path = os.path.join(adir, book + ".txt")
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().split("\n")
        except (OSError, UnicodeDecodeError) as e:
            sys.exit(f"austen-sentences: {path}: {e}")
        chs = chapters(lines)
        if not chs:
            sys.exit(f"austen-sentences: {path}: no chapter heading")
        for number, ch in enumerate(chs, start=1):
            sents = [s for p in paragraphs(ch) for s in sentences(p)]
            if not sents:
                sys.exit(f"austen-sentences: {path}: chapter {number} has no sentence")
            docs["eval" if number % EVAL_EVERY == 0 else "train"].append(sents)
    written = []
    for split in ("train", "eval"):
        path = os.path.join(adir, f"pretrain-{split}.txt")
        text = "\n".join("".join(s + "\n" for s in d) for d in docs[split]).encode("utf-8")
        with open(path + ".tmp", "wb") as f:
            f.write(text)
        written.append((path, split, text))
    for path, split, text in written:
        os.replace(path + ".tmp", path)
        n_sent = sum(len(d) for d in docs[split])
        print(f"{path}: {len(docs[split])} documents, {n_sent} sentences, "
              f"sha256 {hashlib.sha256(text).hexdigest()}")


if __name__ == "__main__":
    main(sys.argv)
