"""Caption repair (builders/captions/repair.py: clean_caption) per caption, with the colour words read once
against the baseline that read vocabulary.json for every caption (the cache cleared before each call).

Both run in this process on the same captions (released-style defects over the pets and aircraft classes)
and must give the same repaired text. Prints ms per caption for each and the ratio.
Usage: .venv/bin/python perf/caption_repair_bench.py [--rounds 200]
"""

from __future__ import annotations

import argparse
import time

from builders.captions import repair
from builders.captions.attributes import load_vocabulary
from builders.captions.repair import Unrepairable, clean_caption, domain_checker
from builders.taxonomy import build_taxonomy

PETS = build_taxonomy("oxford_pets", ["Abyssinian", "Bengal", "Great Pyrenees", "Scottish Terrier", "Basset Hound",
                                      "Beagle", "Shiba Inu", "Saint Bernard", "Maine Coon", "Siamese", "Birman"])
AIRCRAFT = build_taxonomy("fgvc_aircraft", ["707-320", "737-200", "737-400", "767-300", "A320", "A340-500",
                                            "A380", "DH-82", "Boeing 717", "737-800", "Il-76"])
CAPTIONS = [
    (PETS, "Great Pyrenees", "A white great pyrenees near some sgreat pyreneestered toys."),
    (PETS, "Bengal", "A Bengal is perched on a Bengal tree."),
    (PETS, "Basset Hound", "A brown beagle stands on a field; the beagle looks up."),
    (PETS, "Scottish Terrier", "A black terrier scottish terrier sits on a red rug."),
    (PETS, "Beagle", "A brown dog sits on green grass near a cat tree."),
    (AIRCRAFT, "737-400", 'A 737-400 airplane with the word "West737-400 airplane" on its tail.'),
    (AIRCRAFT, "A340-500", "An Emirates Airbus A380-800 is flying."),
    (AIRCRAFT, "DH-82", "A yellow biDH-82 airplane on a field."),
]


def run(rounds: int, reread: bool) -> tuple[float, list[str]]:
    vocabulary = load_vocabulary()
    prepared = [(taxonomy, category, text, domain_checker(taxonomy.domain, taxonomy.categories, vocabulary),
                 vocabulary.nouns_for(taxonomy.domain), vocabulary.compounds_for(taxonomy.domain))
                for taxonomy, category, text in CAPTIONS]
    out: list[str] = []
    start = time.perf_counter()
    for _ in range(rounds):
        out = []
        for taxonomy, category, text, checker, nouns, compounds in prepared:
            if reread:
                repair._colour_words.cache_clear()  # the baseline: vocabulary.json read for this caption
            try:
                out.append(clean_caption(text, category, taxonomy, checker, nouns, compounds, released=True).caption)
            except Unrepairable as reason:
                out.append(f"refused: {reason}")
    return (time.perf_counter() - start) / (rounds * len(prepared)) * 1000, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    run(2, reread=False)  # warm the checkers' caches and wordfreq's dictionary
    cached, fast = run(args.rounds, reread=False)
    baseline, slow = run(args.rounds, reread=True)
    assert fast == slow, "the cached colour words changed a repair"
    print(f"clean_caption: {cached:.3f} ms/caption with the colour words read once, "
          f"{baseline:.3f} ms/caption reading vocabulary.json per caption; ratio {baseline / cached:.2f}x")


if __name__ == "__main__":
    main()
