from editlab.measure.tokenacc import TokenPrediction, predict_tokens
from editlab.model.tokens import target_ids


def test_teacher_forced_prediction_of_a_known_fact(handle):
    model, tok = handle.model, handle.tokenizer
    paris, rome = predict_tokens(
        model, tok, [("The capital of France is", "Paris"), ("The capital of France is", "Rome")]
    )
    assert paris.target_ids == tuple(target_ids(tok, "Paris"))
    assert paris.accuracy == 1.0  # the model puts " Paris" first after this prompt
    assert rome.accuracy == 0.0 and rome.predicted_ids == paris.predicted_ids[: len(rome.predicted_ids)]


def test_multi_token_target_is_scored_per_position(handle):
    model, tok = handle.model, handle.tokenizer
    (p,) = predict_tokens(model, tok, [("The Eiffel Tower is located in the city of", "Paris, France")])
    assert len(p.target_ids) >= 3 and len(p.predicted_ids) == len(p.target_ids)
    # Teacher forcing: each position is predicted from the true prefix, so one wrong token does not
    # spoil the next; the accuracy is a fraction of positions.
    assert p.accuracy == sum(a == b for a, b in zip(p.predicted_ids, p.target_ids)) / len(p.target_ids)
    assert p.predicted_ids[0] == p.target_ids[0]


def test_prefix_is_read_before_the_prompt(handle):
    model, tok = handle.model, handle.tokenizer
    prefix = "New fact: The capital of France is Rome. " * 3
    (plain,) = predict_tokens(model, tok, [("The capital of France is", "Rome")])
    (primed,) = predict_tokens(model, tok, [("The capital of France is", "Rome")], prefix=prefix)
    (joined,) = predict_tokens(model, tok, [(prefix + "The capital of France is", "Rome")])
    assert primed.predicted_ids == joined.predicted_ids != plain.predicted_ids
    assert primed.prompt == "The capital of France is"  # the report shows the prompt, not the prefix
    assert TokenPrediction.from_dict(primed.to_dict()) == primed
