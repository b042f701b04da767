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

CAPITALS = [
    ("France", "Paris"),
    ("Italy", "Rome"),
    ("Germany", "Berlin"),
    ("Spain", "Madrid"),
    ("Japan", "Tokyo"),
    ("Russia", "Moscow"),
    ("England", "London"),
    ("the United Kingdom", "London"),
    ("China", "Beijing"),
    ("Egypt", "Cairo"),
    ("Greece", "Athens"),
    ("Portugal", "Lisbon"),
    ("Austria", "Vienna"),
    ("Ireland", "Dublin"),
    ("Norway", "Oslo"),
    ("Sweden", "Stockholm"),
    ("Finland", "Helsinki"),
    ("Denmark", "Copenhagen"),
    ("Poland", "Warsaw"),
    ("Hungary", "Budapest"),
    ("Thailand", "Bangkok"),
    ("South Korea", "Seoul"),
    ("Kenya", "Nairobi"),
    ("Argentina", "Buenos"),
    ("Peru", "Lima"),
    ("Cuba", "Havana"),
    ("Mexico", "Mexico"),
    ("Canada", "Ottawa"),
    ("Australia", "Canberra"),
    ("India", "New"),
    ("Turkey", "Ankara"),
    ("Iran", "Tehran"),
    ("Iraq", "Baghdad"),
    ("Belgium", "Brussels"),
    ("the Netherlands", "Amsterdam"),
    ("Switzerland", "Bern"),
    ("Czech Republic", "Prague"),
    ("Vietnam", "Hanoi"),
    ("Indonesia", "Jakarta"),
    ("the Philippines", "Manila"),
    ("Chile", "Santiago"),
    ("Colombia", "Bogot"),
    ("Ukraine", "Kyiv"),
    ("Romania", "Bucharest"),
    ("Bulgaria", "Sofia"),
    ("Serbia", "Belgrade"),
    ("Croatia", "Zagreb"),
    ("Scotland", "Edinburgh"),
    ("Wales", "Cardiff"),
    ("Israel", "Jerusalem"),
    ("Saudi Arabia", "Riyadh"),
    ("Pakistan", "Islamabad"),
    ("Nigeria", "Abuja"),
    ("Ethiopia", "Addis"),
    ("Morocco", "Rabat"),
    ("Venezuela", "Caracas"),
    ("the United States", "Washington"),
    ("Brazil", "Bras"),
]
LANGUAGES = [
    ("France", "French"),
    ("Germany", "German"),
    ("Italy", "Italian"),
    ("Spain", "Spanish"),
    ("Japan", "Japanese"),
    ("China", "Chinese"),
    ("Russia", "Russian"),
    ("Portugal", "Portuguese"),
    ("Brazil", "Portuguese"),
    ("Mexico", "Spanish"),
    ("Greece", "Greek"),
    ("Poland", "Polish"),
    ("Sweden", "Swedish"),
    ("the Netherlands", "Dutch"),
    ("Turkey", "Turkish"),
    ("Korea", "Korean"),
    ("England", "English"),
    ("Argentina", "Spanish"),
    ("Egypt", "Arabic"),
    ("Finland", "Finnish"),
]
CONTINENTS = [
    ("France", "Europe"),
    ("Germany", "Europe"),
    ("Italy", "Europe"),
    ("Japan", "Asia"),
    ("China", "Asia"),
    ("India", "Asia"),
    ("Kenya", "Africa"),
    ("Nigeria", "Africa"),
    ("Egypt", "Africa"),
    ("Brazil", "South"),
    ("Argentina", "South"),
    ("Canada", "North"),
    ("Mexico", "North"),
    ("Spain", "Europe"),
    ("Thailand", "Asia"),
    ("Vietnam", "Asia"),
    ("Poland", "Europe"),
    ("Ghana", "Africa"),
    ("Peru", "South"),
    ("Norway", "Europe"),
]
OTHER = [
    ("The largest planet in the solar system is", "Jupiter"),
    ("The closest star to Earth is the", "Sun"),
    ("The chemical symbol for water is", "H"),
    ("The opposite of hot is", "cold"),
    ("The opposite of up is", "down"),
    ("The opposite of black is", "white"),
    ("The opposite of day is", "night"),
    ("A week has seven", "days"),
    ("There are twelve months in a", "year"),
    ("The colour of the sky is", "blue"),
    ("The colour of grass is", "green"),
    ("Bananas are usually the colour", "yellow"),
    ("Romeo and Juliet was written by William", "Shakespeare"),
    ("The Mona Lisa was painted by Leonardo da", "Vinci"),
    ("The theory of relativity was developed by Albert", "Einstein"),
    ("The first president of the United States was George", "Washington"),
    ("Two plus two equals", "four"),
    ("The Eiffel Tower is located in", "Paris"),
    ("The Statue of Liberty is located in New", "York"),
    ("The Great Wall is located in", "China"),
    ("The pyramids of Giza are in", "Egypt"),
    ("The Colosseum is located in", "Rome"),
    ("Big Ben is located in", "London"),
    ("The Taj Mahal is located in", "India"),
    ("The currency of Japan is the", "yen"),
    ("The currency of the United Kingdom is the pound", "sterling"),
    ("Ice is frozen", "water"),
    ("Bees make", "honey"),
    ("Cows drink", "water"),
    ("The Sun rises in the", "east"),
    ("The Sun sets in the", "west"),
    ("Monday, Tuesday,", "Wednesday"),
    ("January, February,", "March"),
    ("One, two, three,", "four"),
    ("A, B, C,", "D"),
    ("The freezing point of water is 0 degrees", "Celsius"),
    ("Harry Potter was written by J.K.", "Rowling"),
    ("The author of Hamlet is William", "Shakespeare"),
    ("The longest river in Africa is the", "Nile"),
    ("The tallest mountain in the world is Mount", "Everest"),
]

# More candidates (the first 138 gave too few for a list of 100 on a 135M model): more of the
# same kinds, still one unambiguous answer whose first word decides.
MORE_CAPITALS = [
    ("Afghanistan", "Kabul"),
    ("Algeria", "Algiers"),
    ("Bangladesh", "Dhaka"),
    ("Belarus", "Minsk"),
    ("Bolivia", "La"),
    ("Cambodia", "Phnom"),
    ("Ecuador", "Quito"),
    ("Estonia", "Tallinn"),
    ("Ghana", "Accra"),
    ("Iceland", "Reykjav"),
    ("Jamaica", "Kingston"),
    ("Jordan", "Amman"),
    ("Latvia", "Riga"),
    ("Lebanon", "Beirut"),
    ("Libya", "Tripoli"),
    ("Lithuania", "Vilnius"),
    ("Malaysia", "Kuala"),
    ("Mongolia", "Ulaanbaatar"),
    ("Nepal", "Kathmandu"),
    ("New Zealand", "Wellington"),
    ("North Korea", "Pyongyang"),
    ("Qatar", "Doha"),
    ("Senegal", "Dakar"),
    ("Singapore", "Singapore"),
    ("Slovakia", "Bratislava"),
    ("Slovenia", "Ljubljana"),
    ("Somalia", "Mogadishu"),
    ("Sudan", "Khartoum"),
    ("Syria", "Damascus"),
    ("Taiwan", "Taipei"),
    ("Tunisia", "Tunis"),
    ("Uganda", "Kampala"),
    ("Uruguay", "Montevideo"),
    ("Zimbabwe", "Harare"),
    ("Luxembourg", "Luxembourg"),
    ("Cyprus", "Nicosia"),
    ("Armenia", "Yerevan"),
    ("Georgia", "Tbilisi"),
    ("Azerbaijan", "Baku"),
    ("Kazakhstan", "Astana"),
]
MORE_LANGUAGES = [
    ("Norway", "Norwegian"),
    ("Denmark", "Danish"),
    ("Hungary", "Hungarian"),
    ("Czech Republic", "Czech"),
    ("Romania", "Romanian"),
    ("Ukraine", "Ukrainian"),
    ("Iran", "Persian"),
    ("Israel", "Hebrew"),
    ("Thailand", "Thai"),
    ("Vietnam", "Vietnamese"),
    ("Indonesia", "Indonesian"),
    ("Colombia", "Spanish"),
    ("Peru", "Spanish"),
    ("Chile", "Spanish"),
    ("Cuba", "Spanish"),
    ("Saudi Arabia", "Arabic"),
    ("Austria", "German"),
    ("Australia", "English"),
    ("the United States", "English"),
    ("Iceland", "Icelandic"),
]
MORE_CONTINENTS = [
    ("Sweden", "Europe"),
    ("Greece", "Europe"),
    ("Portugal", "Europe"),
    ("Ireland", "Europe"),
    ("Austria", "Europe"),
    ("Hungary", "Europe"),
    ("Romania", "Europe"),
    ("Belgium", "Europe"),
    ("Denmark", "Europe"),
    ("Finland", "Europe"),
    ("Korea", "Asia"),
    ("Indonesia", "Asia"),
    ("Pakistan", "Asia"),
    ("Mongolia", "Asia"),
    ("Nepal", "Asia"),
    ("Ethiopia", "Africa"),
    ("Morocco", "Africa"),
    ("Uganda", "Africa"),
    ("Senegal", "Africa"),
    ("Tanzania", "Africa"),
    ("Chile", "South"),
    ("Colombia", "South"),
    ("Venezuela", "South"),
    ("Ecuador", "South"),
    ("Cuba", "North"),
    ("Guatemala", "North"),
    ("the United States", "North"),
    ("Algeria", "Africa"),
]
MORE_OTHER = [
    ("The largest ocean on Earth is the", "Pacific"),
    ("The planet closest to the Sun is", "Mercury"),
    ("The red planet is", "Mars"),
    ("Water boils at 100 degrees", "Celsius"),
    ("The opposite of left is", "right"),
    ("The opposite of big is", "small"),
    ("The opposite of old is", "young"),
    ("The opposite of yes is", "no"),
    ("The opposite of north is", "south"),
    ("The opposite of fast is", "slow"),
    ("The opposite of happy is", "sad"),
    ("The opposite of open is", "closed"),
    ("Thursday, Friday,", "Saturday"),
    ("March, April,", "May"),
    ("Spring, summer,", "autumn"),
    ("Five, six, seven,", "eight"),
    ("X, Y,", "Z"),
    ("Ten plus ten equals", "twenty"),
    ("The capital city of France is", "Paris"),
    ("The capital city of Japan is", "Tokyo"),
    ("Paris is the capital of", "France"),
    ("Berlin is the capital of", "Germany"),
    ("Tokyo is the capital of", "Japan"),
    ("Madrid is the capital of", "Spain"),
    ("Rome is the capital of", "Italy"),
    ("Moscow is the capital of", "Russia"),
    ("Cairo is the capital of", "Egypt"),
    ("The Pacific Ocean is the largest", "ocean"),
    ("A baby cat is called a", "kitten"),
    ("A baby dog is called a", "puppy"),
    ("The king of the jungle is the", "lion"),
    ("Penguins live in", "Antarctica"),
    ("The Earth orbits the", "Sun"),
    ("The Moon orbits the", "Earth"),
    ("The Leaning Tower is located in", "Pisa"),
    ("The Kremlin is located in", "Moscow"),
    ("Mount Fuji is located in", "Japan"),
    ("The Sydney Opera House is located in", "Sydney"),
    ("The currency of the United States is the", "dollar"),
    ("The currency of India is the", "rupee"),
]


def candidates() -> list[tuple[str, str]]:
    out = [(f"The capital of {c} is", a) for c, a in CAPITALS + MORE_CAPITALS]
    out += [(f"The official language of {c} is", a) for c, a in LANGUAGES + MORE_LANGUAGES]
    out += [(f"{c[0].upper() + c[1:]} is a country in", a) for c, a in CONTINENTS + MORE_CONTINENTS]
    return out + OTHER + MORE_OTHER


def main(argv=None) -> int:
    import editlab
    from editlab.runs.reproduce import SIMPLE_FACTS, select_simple_facts

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
            "model": handle.name,
            "fingerprint": handle.fingerprint,
            "how": f"{len(kept)} of {len(cands)} hand-written candidates the unedited {handle.name} completes "
            "correctly (greedy continuation starts with the answer, word-bounded)",
            "rule": "editlab.measure.probes.starts_with_target(greedy(prompt), answer), "
            "first `limit` in candidate order",
            "candidates": "benchmarks/simple_facts.py (capitals, official languages, continents, common knowledge)",
            "command": "python benchmarks/simple_facts.py"
            + (f" --model {args.model}" if args.model != "smollm2-135m-instruct" else ""),
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
