"""Pick the retention facts of ``editlab reproduce muting``: simple facts the unedited model gets right.

Probes the unedited default model (greedy, word-bounded match of the answer at the start of the
continuation) on the hand-written candidates below and writes the first 100 it completes correctly,
with the provenance (model, fingerprint, rule, date, command) and the rejected candidates, to
editlab/data/simple_facts.json.

    python benchmarks/simple_facts.py [--model smollm2-135m-instruct] [--limit 100]
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CAPITALS = [("France", "Paris"), ("Italy", "Rome"), ("Germany", "Berlin"), ("Spain", "Madrid"), ("Japan", "Tokyo"),
            ("Russia", "Moscow"), ("England", "London"), ("the United Kingdom", "London"), ("China", "Beijing"),
            ("Egypt", "Cairo"), ("Greece", "Athens"), ("Portugal", "Lisbon"), ("Austria", "Vienna"),
            ("Ireland", "Dublin"), ("Norway", "Oslo"), ("Sweden", "Stockholm"), ("Finland", "Helsinki"),
            ("Denmark", "Copenhagen"), ("Poland", "Warsaw"), ("Hungary", "Budapest"), ("Thailand", "Bangkok"),
            ("South Korea", "Seoul"), ("Kenya", "Nairobi"), ("Argentina", "Buenos"), ("Peru", "Lima"),
            ("Cuba", "Havana"), ("Mexico", "Mexico"), ("Canada", "Ottawa"), ("Australia", "Canberra"),
            ("India", "New"), ("Turkey", "Ankara"), ("Iran", "Tehran"), ("Iraq", "Baghdad"), ("Belgium", "Brussels"),
            ("the Netherlands", "Amsterdam"), ("Switzerland", "Bern"), ("Czech Republic", "Prague"),
            ("Vietnam", "Hanoi"), ("Indonesia", "Jakarta"), ("the Philippines", "Manila"), ("Chile", "Santiago"),
            ("Colombia", "Bogot"), ("Ukraine", "Kyiv"), ("Romania", "Bucharest"), ("Bulgaria", "Sofia"),
            ("Serbia", "Belgrade"), ("Croatia", "Zagreb"), ("Scotland", "Edinburgh"), ("Wales", "Cardiff"),
            ("Israel", "Jerusalem"), ("Saudi Arabia", "Riyadh"), ("Pakistan", "Islamabad"), ("Nigeria", "Abuja"),
            ("Ethiopia", "Addis"), ("Morocco", "Rabat"), ("Venezuela", "Caracas"), ("the United States", "Washington"),
            ("Brazil", "Bras")]
LANGUAGES = [("France", "French"), ("Germany", "German"), ("Italy", "Italian"), ("Spain", "Spanish"),
             ("Japan", "Japanese"), ("China", "Chinese"), ("Russia", "Russian"), ("Portugal", "Portuguese"),
             ("Brazil", "Portuguese"), ("Mexico", "Spanish"), ("Greece", "Greek"), ("Poland", "Polish"),
             ("Sweden", "Swedish"), ("the Netherlands", "Dutch"), ("Turkey", "Turkish"), ("Korea", "Korean"),
             ("England", "English"), ("Argentina", "Spanish"), ("Egypt", "Arabic"), ("Finland", "Finnish")]
CONTINENTS = [("France", "Europe"), ("Germany", "Europe"), ("Italy", "Europe"), ("Japan", "Asia"),
              ("China", "Asia"), ("India", "Asia"), ("Kenya", "Africa"), ("Nigeria", "Africa"), ("Egypt", "Africa"),
              ("Brazil", "South"), ("Argentina", "South"), ("Canada", "North"), ("Mexico", "North"),
              ("Spain", "Europe"), ("Thailand", "Asia"), ("Vietnam", "Asia"), ("Poland", "Europe"),
              ("Ghana", "Africa"), ("Peru", "South"), ("Norway", "Europe")]
OTHER = [("The largest planet in the solar system is", "Jupiter"), ("The closest star to Earth is the", "Sun"),
         ("The chemical symbol for water is", "H"), ("The opposite of hot is", "cold"),
         ("The opposite of up is", "down"), ("The opposite of black is", "white"), ("The opposite of day is", "night"),
         ("A week has seven", "days"), ("There are twelve months in a", "year"), ("The colour of the sky is", "blue"),
         ("The colour of grass is", "green"), ("Bananas are usually the colour", "yellow"),
         ("Romeo and Juliet was written by William", "Shakespeare"), ("The Mona Lisa was painted by Leonardo da", "Vinci"),
         ("The theory of relativity was developed by Albert", "Einstein"), ("The first president of the United States was George", "Washington"),
         ("Two plus two equals", "four"), ("The Eiffel Tower is located in", "Paris"),
         ("The Statue of Liberty is located in New", "York"), ("The Great Wall is located in", "China"),
         ("The pyramids of Giza are in", "Egypt"), ("The Colosseum is located in", "Rome"),
         ("Big Ben is located in", "London"), ("The Taj Mahal is located in", "India"),
         ("The currency of Japan is the", "yen"), ("The currency of the United Kingdom is the pound", "sterling"),
         ("Ice is frozen", "water"), ("Bees make", "honey"), ("Cows drink", "water"), ("The Sun rises in the", "east"),
         ("The Sun sets in the", "west"), ("Monday, Tuesday,", "Wednesday"), ("January, February,", "March"),
         ("One, two, three,", "four"), ("A, B, C,", "D"), ("The freezing point of water is 0 degrees", "Celsius"),
         ("Harry Potter was written by J.K.", "Rowling"), ("The author of Hamlet is William", "Shakespeare"),
         ("The longest river in Africa is the", "Nile"), ("The tallest mountain in the world is Mount", "Everest")]


def candidates() -> list[tuple[str, str]]:
    out = [(f"The capital of {c} is", a) for c, a in CAPITALS]
    out += [(f"The official language of {c} is", a) for c, a in LANGUAGES]
    out += [(f"{c[0].upper() + c[1:]} is a country in", a) for c, a in CONTINENTS]
    return out + OTHER


def main(argv=None) -> int:
    import editlab
    from editlab.reproduce import SIMPLE_FACTS, select_simple_facts

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--out", default=str(SIMPLE_FACTS))
    args = p.parse_args(argv)
    handle = editlab.load_model(args.model)
    cands = candidates()
    kept, rejected = select_simple_facts(handle, cands, limit=args.limit)
    doc = {
        "provenance": {
            "model": handle.name, "fingerprint": handle.fingerprint,
            "how": f"{len(kept)} of {len(cands)} hand-written candidates the unedited {handle.name} completes "
                   "correctly (greedy continuation starts with the answer, word-bounded)",
            "rule": "editlab.probes.starts_with_target(greedy(prompt), answer), first `limit` in candidate order",
            "candidates": "benchmarks/simple_facts.py (capitals, official languages, continents, common knowledge)",
            "command": "python benchmarks/simple_facts.py" + (f" --model {args.model}" if args.model != "smollm2-135m-instruct" else ""),
            "date": datetime.date.today().isoformat(),
        },
        "facts": [{"prompt": k["prompt"], "answer": k["answer"], "greedy": k["greedy"]} for k in kept],
        "rejected": rejected,
    }
    Path(args.out).write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"kept {len(kept)} of {len(cands)} candidates -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
