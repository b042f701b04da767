import json

import pytest

from editlab import Neighbor
from editlab.facts.datasets import (
    detect_format,
    from_facts,
    load_counterfact,
    load_dataset,
    load_facts,
    load_knowedit,
    load_zsre,
)
from tests.conftest import COUNTERFACT, SHARED, need_shared

ZSRE = SHARED / "editing" / "zsre-1k.json"

# Two records in the original ROME/MEMIT CounterFact schema (counterfact.json, case 0 and 1 abridged).
ROME_RECORDS = [
    {
        "case_id": 0,
        "pararel_idx": 2796,
        "requested_rewrite": {
            "prompt": "The mother tongue of {} is",
            "relation_id": "P103",
            "target_new": {"str": "English", "id": "Q1860"},
            "target_true": {"str": "French", "id": "Q150"},
            "subject": "Danielle Darrieux",
        },
        "paraphrase_prompts": [
            "Shayna does this and Yossel goes still and dies. Danielle Darrieux, a native",
            "An album was recorded for Capitol Nashville but never released. Danielle Darrieux spoke the language",
        ],
        "neighborhood_prompts": ["The mother tongue of Léon Blum is", "The native language of Montesquieu is"],
        "attribute_prompts": ["J.\u00a0R.\u00a0R. Tolkien is a native speaker of"],
        "generation_prompts": [
            "Danielle Darrieux's mother tongue is",
            "Where Danielle Darrieux is from, people speak the language of",
        ],
    },
    {
        "case_id": 1,
        "requested_rewrite": {
            "prompt": "The official religion of {} is",
            "relation_id": "P140",
            "target_new": {"str": "Islam"},
            "target_true": {"str": "Christianity"},
            "subject": "Edwin of Northumbria",
        },
        "paraphrase_prompts": ["Edwin of Northumbria is affiliated with the religion"],
        "neighborhood_prompts": ["Dom Pérignon follows the religion of"],
        "generation_prompts": [],
    },
]

# KnowEdit records as its README documents them: WikiData counterfact, ZsRE and WikiBio.
KNOWEDIT_RECORDS = [
    {
        "subject": "Frederic Piesch",
        "prompt": "The name of the position held by Frederic Piesch is",
        "target_new": "Archbishop of León, Mexico",
        "ground_truth": "mayor of Vienna",
        "portability": {
            "Subject_Aliasing": [
                {
                    "prompt": "The name of the position held by Frederic of Pieschen is",
                    "ground_truth": "Archbishop of León, Mexico",
                }
            ]
        },
        "locality": {
            "Relation_Specificity": [{"prompt": "The gender of Frederic Piesch is", "ground_truth": "male"}],
            "Forgetfulness": [
                {
                    "prompt": (
                        "The name of the position held by Frederic Piesch, which is not Archbishop of León, Mexico, is"
                    ),
                    "ground_truth": "mayor of Vienna",
                }
            ],
        },
    },
    {
        "subject": "Epaspidoceras",
        "target_new": "Noctuidae",
        "prompt": "Which family does Epaspidoceras belong to?",
        "ground_truth": ["Aspidoceratidae"],
        "rephrase_prompt": "What family are Epaspidoceras?",
        "locality": {
            "Relation_Specificity": [{"prompt": "The taxon rank of Epaspidoceras is", "ground_truth": ["genus"]}]
        },
        "portability": {
            "Reasoning": [
                {
                    "prompt": "What is the common name for the family Epaspidoceras belongs to?",
                    "ground_truth": [["Owlet moths", "owlet moth"]],
                }
            ]
        },
    },
    {
        "text": (
            "This is a Wikipedia passage about john russell reynolds. "
            "Sir John Russell Reynolds was a British neurologist."
        ),
        "labels": "He received general education from his father.",
        "concept": "john russell reynolds",
        "locality": {
            "Relation_Specificity": [
                {"prompt": "The field of work of john russell reynolds is", "ground_truth": ["medicine"]}
            ]
        },
    },
]


def write_json(tmp_path, name, records):
    path = tmp_path / name
    path.write_text(json.dumps(records))
    return path


# ---- the shared data files ----------------------------------------------------------------------
def test_counterfact_flat_file_loads_every_record_with_its_probes(counterfact_records):
    ds = load_counterfact(need_shared(COUNTERFACT))
    assert ds.format == "counterfact" and len(ds) == len(counterfact_records) == 10_000
    raw, fact = counterfact_records[0], ds.facts[0]
    assert (fact.subject, fact.prompt, fact.target_new, fact.target_true) == (
        raw["subject"],
        raw["prompt"],
        raw["target_new"],
        raw["ground_truth"],
    )
    assert fact.paraphrases == (raw["rephrase_prompt"],)
    assert fact.neighbors == (Neighbor(raw["locality_prompt"], raw["locality_ground_truth"]),)
    assert fact.case_id == raw["case_id"] == 0


def test_seeded_subset_is_reproducible_in_file_order_and_seed_dependent(counterfact_records):
    a = load_dataset(need_shared(COUNTERFACT), n=20, seed=0)
    b = load_dataset(COUNTERFACT, n=20, seed=0)
    c = load_dataset(COUNTERFACT, n=20, seed=1)
    assert len(a) == 20 and a.facts == b.facts and a.records == b.records
    assert a.records != c.records
    assert list(a.records) == sorted(a.records)
    # Each fact is the record its number names.
    for number, fact in zip(a.records, a.facts):
        assert counterfact_records[number - 1]["case_id"] == fact.case_id
    assert load_dataset(COUNTERFACT, n=3, seed=None).records == (1, 2, 3)


def test_zsre_file_names_its_empty_targets_and_can_skip_them():
    path = need_shared(ZSRE)
    with pytest.raises(ValueError, match=r"zsre-1k\.json: record 535: missing or empty field 'alt'"):
        load_zsre(path)
    ds = load_zsre(path, skip_invalid=True)
    assert len(ds) == 998 and len(ds.skipped) == 2 and ds.skipped[1].startswith("record 724")
    raw = json.loads(path.read_text())[0]
    fact = ds.facts[0]
    assert (fact.prompt, fact.target_new, fact.target_true) == (raw["src"], raw["alt"], raw["answers"][0])
    assert fact.paraphrases == (raw["rephrase"],)
    assert fact.neighbors == (Neighbor(raw["loc"], raw["loc_ans"]),)
    assert detect_format(raw) == "zsre"


# ---- the other formats, written here in their own schemas -------------------------------------------------
def test_counterfact_rome_format(tmp_path):
    ds = load_counterfact(write_json(tmp_path, "counterfact.json", ROME_RECORDS))
    assert ds.format == "counterfact-rome" and len(ds) == 2
    f = ds.facts[0]
    assert f.prompt == "The mother tongue of Danielle Darrieux is" and f.template == "The mother tongue of {} is"
    assert (f.target_new, f.target_true, f.case_id) == ("English", "French", 0)
    assert len(f.paraphrases) == 2
    # Neighbourhood prompts share the true object in CounterFact.
    assert f.neighbors == (
        Neighbor("The mother tongue of Léon Blum is", "French"),
        Neighbor("The native language of Montesquieu is", "French"),
    )
    assert ds.generation_prompts[0][0] == "Danielle Darrieux's mother tongue is"
    assert ds.facts[1].neighbors == (Neighbor("Dom Pérignon follows the religion of", "Christianity"),)


def test_knowedit_records(tmp_path):
    ds = load_knowedit(write_json(tmp_path, "test_cf.json", KNOWEDIT_RECORDS))
    assert ds.format == "knowedit" and len(ds) == 3
    cf, zsre, bio = ds.facts
    assert cf.target_true == "mayor of Vienna"
    assert cf.neighbors == (
        Neighbor("The gender of Frederic Piesch is", "male"),
        Neighbor(
            "The name of the position held by Frederic Piesch, which is not Archbishop of León, Mexico, is",
            "mayor of Vienna",
        ),
    )
    assert ds.portability[0] == (
        Neighbor("The name of the position held by Frederic of Pieschen is", "Archbishop of León, Mexico"),
    )
    assert zsre.target_true == "Aspidoceratidae" and zsre.paraphrases == ("What family are Epaspidoceras?",)
    assert ds.portability[1] == (
        Neighbor("What is the common name for the family Epaspidoceras belongs to?", "Owlet moths"),
    )
    assert (bio.subject, bio.target_new, bio.target_true) == (
        "john russell reynolds",
        "He received general education from his father.",
        None,
    )
    assert load_dataset(tmp_path / "test_cf.json").format == "knowedit"


def test_user_facts_from_csv_and_jsonl(tmp_path):
    csv_path = tmp_path / "mine.csv"
    csv_path.write_text(
        "subject,prompt,target_new,target_true,paraphrases,neighbors,notes\n"
        "Eiffel Tower,The Eiffel Tower is located in the city of,Rome,Paris,"
        "The Eiffel Tower stands in|People visit the Eiffel Tower in,The Louvre is located in the city of=>Paris,x\n"
        "Danielle Darrieux,{}'s mother tongue is,English,,,,\n"
    )
    ds = load_facts(csv_path)
    a, b = ds.facts
    assert a.paraphrases == ("The Eiffel Tower stands in", "People visit the Eiffel Tower in")
    assert a.neighbors == (Neighbor("The Louvre is located in the city of", "Paris"),)
    assert (a.target_true, a.case_id) == ("Paris", 0)
    assert b.prompt == "Danielle Darrieux's mother tongue is" and b.target_true is None and b.neighbors == ()
    jl = tmp_path / "mine.jsonl"
    jl.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {
                    "subject": "Eiffel Tower",
                    "prompt": "The Eiffel Tower is in",
                    "target_new": "Rome",
                    "target_true": "Paris",
                    "paraphrases": ["The Eiffel Tower stands in"],
                    "neighbors": [{"prompt": "The Louvre is in", "answer": "Paris"}],
                    "case_id": "e1",
                },
            ]
        )
        + "\n"
    )
    (f,) = load_dataset(jl).facts
    assert f.case_id == "e1" and f.neighbors == (Neighbor("The Louvre is in", "Paris"),)
    assert from_facts([f]).facts == (f,)


# ---- malformed files: the first bad record, by number, and what is wrong --------------------------------------
def test_missing_field_names_file_record_and_field(tmp_path):
    records = [
        {
            "subject": "A",
            "prompt": "A is in",
            "target_new": "X",
            "ground_truth": "Y",
            "locality_prompt": "B is in",
            "locality_ground_truth": "Y",
            "rephrase_prompt": "A lies in",
        }
        for _ in range(4)
    ]
    del records[2]["target_new"]
    records[3]["prompt"] = "nothing here"  # also bad, but record 3 comes first
    with pytest.raises(ValueError, match=r"^cf\.json: record 3: missing or empty field 'target_new'"):
        load_counterfact(write_json(tmp_path, "cf.json", records))


def test_subject_not_in_prompt_reports_csv_line(tmp_path):
    path = tmp_path / "facts.csv"
    path.write_text("subject,prompt,target_new\nParis,Paris is the capital of,Italy\nRome,The city is in,France\n")
    with pytest.raises(ValueError, match=r"facts\.csv: record 2 \(line 3\): Fact\.subject 'Rome' does not occur"):
        load_facts(path)


def test_broken_jsonl_line_is_named(tmp_path):
    path = tmp_path / "facts.jsonl"
    good = json.dumps({"subject": "A", "prompt": "A is in", "target_new": "X"})
    path.write_text(f"{good}\n\n{good}\n{{\"subject\": \"A\",\n")
    with pytest.raises(ValueError, match=r"facts\.jsonl: record 3 \(line 4\): not valid JSON"):
        load_dataset(path)


def test_rome_record_without_placeholder_or_target(tmp_path):
    bad = json.loads(json.dumps(ROME_RECORDS))
    bad[1]["requested_rewrite"]["prompt"] = "The official religion of Edwin of Northumbria is"
    with pytest.raises(ValueError, match=r"record 2: requested_rewrite\.prompt .* has no '\{\}' placeholder"):
        load_counterfact(write_json(tmp_path, "cf.json", bad))
    bad = json.loads(json.dumps(ROME_RECORDS))
    bad[0]["requested_rewrite"]["target_new"] = {"id": "Q1860"}
    with pytest.raises(ValueError, match=r"record 1: requested_rewrite\.target_new\.str is missing"):
        load_counterfact(write_json(tmp_path, "cf.json", bad))


def test_knowedit_bad_locality_entry(tmp_path):
    bad = json.loads(json.dumps(KNOWEDIT_RECORDS))
    bad[1]["locality"]["Relation_Specificity"][0]["ground_truth"] = []
    with pytest.raises(
        ValueError, match=r"record 2: locality\.Relation_Specificity\[1\]\.ground_truth is an empty list"
    ):
        load_knowedit(write_json(tmp_path, "k.json", bad))


def test_unknown_and_empty_files(tmp_path):
    with pytest.raises(ValueError, match=r"x\.json: record 1: cannot tell the dataset format .*supported: counterfact"):
        load_dataset(write_json(tmp_path, "x.json", [{"question": "?", "answer": "!"}]))
    with pytest.raises(ValueError, match="holds no records"):
        load_dataset(write_json(tmp_path, "e.json", []))
    with pytest.raises(ValueError, match=r"expected a JSON list"):
        load_dataset(write_json(tmp_path, "o.json", {"subject": "A"}))
    with pytest.raises(FileNotFoundError):
        load_dataset(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="unknown dataset format 'csv'"):
        load_dataset(write_json(tmp_path, "y.json", ROME_RECORDS), format="csv")
    with pytest.raises(ValueError, match="not CounterFact"):
        load_counterfact(write_json(tmp_path, "z.json", KNOWEDIT_RECORDS))


@pytest.mark.parametrize(
    "name,text,words",
    [
        ("wide.csv", ",".join("c" * 1000 + str(i) for i in range(3)) + "\n1,2,3\n", "cannot tell the dataset format"),
        (
            "k.json",
            json.dumps([{"subject": "A", "prompt": "A is", "target_new": "B", "locality": {"k" * 5000: "not a list"}}]),
            "should be a list",
        ),
        (
            "k.json",
            json.dumps([{"subject": "A", "prompt": "A is", "target_new": [{"a": "x" * 5000}], "locality": {}}]),
            "should be a non-empty string",
        ),
        (
            "r.json",
            json.dumps(
                [
                    {
                        "requested_rewrite": {
                            "prompt": "p" * 100_000,
                            "subject": "A",
                            "target_new": {"str": "B"},
                            "target_true": {"str": "C"},
                        }
                    }
                ]
            ),
            "placeholder",
        ),
    ],
    ids=["csv-header", "knowedit-kind", "knowedit-answer", "rome-prompt"],
)
def test_a_long_field_name_or_value_is_quoted_short(tmp_path, name, text, words):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match=words) as e:
        load_dataset(path)
    assert len(str(e.value)) <= 2000, len(str(e.value))
