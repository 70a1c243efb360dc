"""doc_to_* and process_results of the score_toy_gen task (score_toy_gen.yaml): rows {id, video, question, options,
answer, family} of artifacts/toy-bench/test.jsonl; videos relative to that folder, resolved against the working
directory. The prompt is laid out as lmms-eval's videomme_doc_to_text lays out Video-MME's."""

import os

TOY_BENCH = "artifacts/toy-bench"
DEFAULT_KWARGS = {
    "pre_prompt": "Select the best answer to the following multiple-choice question based on the video. "
    "Respond with only the digit of the correct option.",
    "post_prompt": "Answer with the option's digit directly.",
}


def doc_to_visual(doc):
    return [os.path.abspath(os.path.join(TOY_BENCH, doc["video"]))]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    kw = lmms_eval_specific_kwargs or DEFAULT_KWARGS
    options = "\n".join(str(o) for o in doc["options"])
    return f"{kw['pre_prompt']}\n{doc['question']}\n{options}\n{kw['post_prompt']}"


def process_results(doc, results):
    from lmms_eval.tasks._task_utils.mcq_extract import extract_mcq_answer

    pred = extract_mcq_answer(results[0], choices=[str(o) for o in doc["options"]])
    return {"acc": float(pred == str(doc["answer"]))}
