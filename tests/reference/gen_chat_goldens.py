"""Chat-template goldens: transformers' apply_chat_template (jinja2) with the Nano V2 template
(nano_v2_chat_template.jinja, also written into tests/data/tokenizer/nemotron_tiny/
tokenizer_config.json) over single/multi-turn, think on/off, image and video messages.
The template is this project's own transcription of the Nano V2 chat template, so these goldens
check the built-in renderer against jinja2 running that transcription, not against NVIDIA's file;
templates written elsewhere are checked by gen_jinja_goldens.py / test_jinja.
Writes tests/data/tokenizer/chat_goldens.json: messages (JSON), add_generation_prompt, rendered
text, and its token ids (add_special_tokens=False, media markers tokenized as text here).

    tests/reference/.venv/bin/python tests/reference/gen_chat_goldens.py
"""
import json
import os

from transformers import PreTrainedTokenizerFast

HERE = os.path.dirname(os.path.abspath(__file__))
TOKDIR = os.path.join(os.path.dirname(HERE), "data", "tokenizer", "nemotron_tiny")

CASES = [
    [{"role": "user", "content": "What is the total?"}],
    [{"role": "system", "content": "/no_think"}, {"role": "user", "content": "Summarize."}],
    [{"role": "system", "content": "You are helpful. /think"}, {"role": "user", "content": "  Why?  "}],
    [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Transcribe the handwritten text in this image exactly as written."}]}],
    [{"role": "system", "content": "/no_think"},
     {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Compare the two pages."}]}],
    [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens in this video?"}]}],
    [{"role": "user", "content": "Hi /no_think"}, {"role": "assistant", "content": "<think>\nhmm\n</think>\nHello! How can I help?"},
     {"role": "user", "content": "Tell me more. /think"}],
    [{"role": "system", "content": ""}, {"role": "user", "content": "First"}, {"role": "assistant", "content": "One"},
     {"role": "user", "content": "Second"}, {"role": "assistant", "content": "Two"}, {"role": "user", "content": "Third"}],
    # the switch in a user message (issue 20 item 7): alone, overriding the system's, inside a
    # multimodal text part, and from an earlier turn
    [{"role": "user", "content": "What is the total? /no_think"}],
    [{"role": "system", "content": "You are helpful. /think"}, {"role": "user", "content": "Be brief /no_think"}],
    [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe it. /no_think"}]}],
    [{"role": "user", "content": "/no_think First"}, {"role": "assistant", "content": "One"},
     {"role": "user", "content": "Second"}],
]


def main():
    tmpl = open(os.path.join(HERE, "nano_v2_chat_template.jinja")).read()
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "<SPECIAL_12>",
           "unk_token": "<unk>", "chat_template": tmpl, "model_max_length": 131072}
    json.dump(cfg, open(os.path.join(TOKDIR, "tokenizer_config.json"), "w"), indent=2)
    tok = PreTrainedTokenizerFast.from_pretrained(TOKDIR)
    out = []
    for msgs in CASES:
        for gen in (True, False):
            text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
            ids = tok(text, add_special_tokens=False)["input_ids"]
            out.append({"messages": msgs, "add_generation_prompt": gen, "text": text, "ids": ids})
    json.dump({"generator": "tests/reference/gen_chat_goldens.py", "cases": out},
              open(os.path.join(os.path.dirname(TOKDIR), "chat_goldens.json"), "w"), indent=1, ensure_ascii=False)
    print(len(out), "renderings;", repr(out[6]["text"]))


if __name__ == "__main__":
    main()
