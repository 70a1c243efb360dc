"""doc_to_* functions of the score_toy task: the toy split's rows {id, video, question, options, answer, family}.

Videos are relative to the folder of the jsonl (artifacts/toy-bench), resolved against the working directory, as
the YAML's data_files path is. The prompt is the row's question as-is (score_lit.data.benchmarks.TOY_PROMPT: the
toy model answers with the digit token directly, no option list).
"""

import os

TOY_BENCH = "artifacts/toy-bench"


def doc_to_visual(doc):
    return [os.path.abspath(os.path.join(TOY_BENCH, doc["video"]))]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["question"]


def doc_to_choice(doc):
    return list(doc["options"])


def doc_to_target(doc):
    return list(doc["options"]).index(doc["answer"])
