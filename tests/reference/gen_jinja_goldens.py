"""Chat-template goldens for nanovl's Jinja interpreter (llm/text/jinja.c), rendered by transformers.

Three sources:
1. the Nano V2 template (nano_v2_chat_template.jinja) through PreTrainedTokenizerFast.apply_chat_template
   on tests/data/tokenizer/nemotron_tiny (whose tokenizer_config.json carries it);
2. the real Qwen3 template in ../shared/tokenizers/qwen3/tokenizer_config.json (read in place by the
   test; only the expected output is committed) through apply_chat_template, tools and reasoning included;
3. feature templates written here to cover the Jinja constructs chat templates use, rendered with
   the exact jinja2 environment transformers builds (_compile_jinja_template: sandboxed, trim_blocks,
   lstrip_blocks, loopcontrols, its tojson / raise_exception / strftime_now);
4. public templates nobody here wrote, as transformers ships them in its own source: Meta's Llama 4
   template (transformers.models.llama4.processing_llama4.chat_template: system extraction,
   tools in the first user message or the system turn, tool calls, tojson(indent=4), mapping /
   iterable tests, raise_exception) and SmolVLM's default (capitalize, image/video parts), rendered
   in the same environment with the context apply_chat_template passes (date_string fixed so that
   strftime_now is not consulted).

Each case stores the template source, the full context nanovl must pass (messages with None-valued
keys dropped, tools, documents, add_generation_prompt, the named special tokens, kwargs) and the
expected text, in tests/data/jinja/goldens.json. Error cases record that jinja2 raised.

    tests/reference/.venv/bin/python tests/reference/gen_jinja_goldens.py
"""
import json
import os

from transformers import AutoTokenizer, PreTrainedTokenizerFast
from transformers.utils.chat_template_utils import _compile_jinja_template

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DATA = os.path.join(ROOT, "tests", "data")
SHARED = os.path.join(os.path.dirname(ROOT), "shared")

NANO_MSGS = [
    [{"role": "user", "content": "What is 2+2?"}],
    [{"role": "system", "content": "You are terse. /no_think"}, {"role": "user", "content": "Hi"}],
    [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Read the total."}]}],
    [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens? /no_think"}]}],
    [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "<think>\nhmm\n</think>\nA1"},
     {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Compare. /think"}]}],
    # Unicode whitespace around messages: str.strip() removes it (nanovl's stripped ASCII only)
    [{"role": "system", "content": "\u3000Be brief.\u00a0"}, {"role": "user", "content": "\u00a0hi\u2028"},
     {"role": "assistant", "content": "\u3000"}, {"role": "user", "content": "again\u2003"}],
]

TOOLS = [{"type": "function", "function": {"name": "get_total", "description": "Sum of an invoice",
                                           "parameters": {"type": "object", "properties": {"id": {"type": "string"}},
                                                          "required": ["id"]}}}]
QWEN_CASES = [
    ({"messages": [{"role": "user", "content": "Hello"}]}, {}),
    ({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                   {"role": "assistant", "content": "<think>\nGreeting.\n</think>\n\nHello!"},
                   {"role": "user", "content": "Again"}]}, {}),
    ({"messages": [{"role": "user", "content": "Hi"}]}, {"enable_thinking": False}),
    ({"messages": [{"role": "user", "content": "Total of inv-7?"},
                   {"role": "assistant", "content": "", "tool_calls": [
                       {"type": "function", "function": {"name": "get_total", "arguments": {"id": "inv-7"}}}]},
                   {"role": "tool", "content": "123.45"}, {"role": "tool", "content": "EUR"}],
      "tools": TOOLS}, {}),
    ({"messages": [{"role": "user", "content": "ünïcödé ✓ 中文"}, {"role": "assistant", "content": "ok"}]},
     {"add_generation_prompt": False}),
]

FEATURES = [
    ("whitespace",
     "A\n{% if true %}\n  B\n{% endif %}\n  {% for i in [1,2] %}\n    {{ i }}\n  {% endfor %}\nC {{- ' D ' -}} E\n"
     "{#- comment -#}\n  F {%+ if 1 %}G{% endif %}\n{% raw %}{{ not parsed }}{% endraw %}\nH", {}),
    ("loops",
     "{% for m in messages if m.role != 'system' %}{{ loop.index }}/{{ loop.length }}:{{ m.role }}"
     "{% if loop.first %}(first){% endif %}{% if loop.last %}(last){% endif %}"
     "{% if not loop.last %},{% endif %}{% endfor %}|"
     "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}|"
     "{% for x in [] %}x{% else %}empty{% endfor %}|"
     "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i > 4 %}{% break %}{% endif %}{{ i }}{% endfor %}|"
     "{% for c in 'héllo' %}{{ c }}.{% endfor %}|{% for x in messages[::-1] %}{{ x.role[0] }}{% endfor %}",
     {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                   {"role": "assistant", "content": "a"}], "d": {"b": 1, "a": [1, "x"]}}),
    ("expressions",
     "{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 1.5 + 1 }}"
     " {{ 'a' ~ 1 ~ none }} {{ 'ab' * 3 }} {{ [1, 2] + [3] }} {{ 3 > 2 > 1 }} {{ 'b' in 'abc' }} {{ 'z' not in ['a'] }}"
     " {{ none }} {{ true and 'x' }} {{ false or 'y' }} {{ 'yes' if 0 else 'no' }} {{ x is defined }} {{ y is defined }}"
     " {{ x.missing is defined }} {{ 5 is odd }} {{ 'a' is string }} {{ none is none }} {{ [1] is iterable }}"
     " {{ {'k': 'v'}['k'] }} {{ 'hello'[1:3] }} {{ 'hello'[-1] }} {{ [1,2,3][-2] }} {{ x.n }} {{ x['n'] }}"
     " {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 2.5e-7 }} {{ 10 / 4 }} {{ 1.0 }} {{ [1, 'a', none, true, 2.5] }} {{ {'a': 1} }}",
     {"x": {"n": 3}}),
    ("strings",
     "{{ '  pad  '.strip() }}|{{ 'xxhixx'.strip('x') }}|{{ '\\n\\nhi\\n'.lstrip('\\n') }}|{{ 'hi  '.rstrip() }}|"
     "{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a</think>b</think>c'.split('</think>')[-1] }}|"
     "{{ 'k=v=w'.split('=', 1) }}|{{ 'aXbXc'.replace('X', '-') }}|{{ 'aaa'.replace('a', 'b', 2) }}|"
     "{{ 'Hello'.upper() }}{{ 'Hello'.lower() }}|{{ 'hello world'.title() }}|{{ 'abc'.startswith('ab') }}"
     "{{ 'abc'.endswith(('x', 'c')) }}|{{ '-'.join(['a', 'b']) }}|{{ 'abcabc'.find('c') }}|{{ 'abcabc'.count('b') }}|"
     "{{ 'it''s' }}|{{ \"q\\\"uote\" }}|{{ '\\u00e9\\t.' }}",
     {}),
    ("filters",
     "{{ items | length }} {{ 'héllo' | length }} {{ '  t  ' | trim }} {{ items | first }} {{ items | last }}"
     " {{ items | join(', ') }} {{ items | reverse | list }} {{ x | default('dflt') }} {{ '' | default('e', true) }}"
     " {{ 3 | string }}{{ '42' | int + 1 }} {{ '2.5' | float }} {{ -3 | abs }} {{ 'abc' | upper }} {{ items | unique | list }}"
     " {{ people | map(attribute='name') | join('/') }} {{ people | selectattr('age', 'gt', 30) | map(attribute='name') | list }}"
     " {{ people | rejectattr('admin') | map(attribute='name') | list }} {{ [0, 1, '', 'a'] | select | list }}"
     " {{ d | items | list }} {{ d | tojson }} {{ d | tojson(indent=2) }} {{ people | tojson }}"
     " {{ 'a\"b\\\\c\\n\u00e9' | tojson }} {{ [1.5, none, true] | tojson }} {{ '<b>&' | e }} {{ 'x\\ny' | indent(2) }}"
     " {{ ['a', 'b'] | map('upper') | list }} {{ items | count }} {{ 'abc' | capitalize }}",
     {"items": ["b", "a", "b"], "d": {"z": 1, "a": {"n": [1, 2]}},
      "people": [{"name": "Ann", "age": 41, "admin": True}, {"name": "Bob", "age": 25, "admin": False}]}),
    ("set_macro_namespace",
     "{% set a = 1 %}{% set b, c = [2, 3] %}{{ a }}{{ b }}{{ c }}|"
     "{% for i in [1, 2] %}{% set a = i %}{% endfor %}{{ a }}|"
     "{% set ns = namespace(total=0, seen=[]) %}{% for i in [1, 2, 3] %}{% set ns.total = ns.total + i %}{% endfor %}{{ ns.total }}|"
     "{% macro greet(name, punct='!') %}Hello {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} {{ greet('B', punct='?') }}|"
     "{% set block %}inner {{ a }}{% endset %}[{{ block }}]|"
     "{% if a == 1 %}one{% elif a == 2 %}two{% else %}other{% endif %}|{{ raise is defined }}",
     {}),
    ("raise", "{% if messages | length == 0 %}{{ raise_exception('No messages!') }}{% endif %}ok", {"messages": []}),
    # what a differential fuzz against jinja2 found (2026-11-30): a set in a loop body reaching the
    # next iteration; title (jinja2's filter, not str.title); int/float defaults; loop.depth;
    # float % and //; "+%}"; "-" and strip/split over Unicode whitespace; the newline after
    # {% raw %}; \r\n and \r in the template; its trailing newline
    ("fuzz_finds",
     "{% set a = 0 %}{% for i in [1, 2, 3] %}{{ a }}{% set a = i %}{% endfor %}{{ a }}|"
     "{% set ns = namespace(c=0) %}{% for i in [1, 2, 3] %}{% set c = ns.c %}{% set ns.c = c + 1 %}{% endfor %}{{ ns.c }}|"
     "{{ '<think>r</think>ans' | title }} {{ 'a-b(c d[e' | title }} {{ 'hello world'.title() }}|"
     "{{ 'abc' | int(5) }} {{ 'x' | float(1.5) }} {{ '3.7' | int }} {{ ' 12 ' | int }} {{ '' | int(-1) }}|"
     "{% for x in [1, 2] %}{{ loop.depth }}{{ loop.depth0 }}{% endfor %}|"
     "{{ 100 % 0.1 }} {{ -7.5 // 2 }} {{ 7.5 % -2 }} {{ 5.0 // 0.3 }}|"
     "{% set v = 1 +%}\n\n{{ v }}|x\u3000 {{- 1 -}} \u3000y|{{ '\u00a0hi\u3000'.strip() }}|{{ 'a\u2003b c\u00a0d'.split() }}|"
     "{{ '\u3000t\u2028' | trim }}|{{ ' a  b  '.split(none, 1) }}|{% raw %}\n{{ x }}{% endraw %}|a\r\nb{{ 1 }}\r\nc\rd\n", {}),
    # str.find counts characters, not bytes (a survivor of scripts/mutate.py: no case had
    # non-ASCII text before the match)
    ("find_unicode", "{{ 'héllo wörld'.find('l') }} {{ 'héllo wörld'.find('w') }} {{ '中文中'.find('中', 1) if false else '中文中'.find('文') }}"
     " {{ 'héllo'.count('l') }} {{ 'abc'.find('z') }} {{ m.find('ö') }}", {"m": "wörld"}),
    # an undefined value prints empty and tests as undefined, but an attribute or item of it
    # raises (jinja2's default Undefined): a template reading messages[0].role of no messages
    # fails rather than rendering a prompt without its first turn
    ("undefined_ok", "[{{ nope }}|{{ nope is defined }}|{{ m.nope is defined }}|{{ n.x }}|{{ m['nope'] is defined }}|"
     "{{ nope | default('d') }}|{{ xs[5] is defined }}]", {"m": {"a": 1}, "n": None, "xs": [1]}),
    ("undefined_attr", "{{ messages[0].role }}", {"messages": []}),
    ("undefined_attr_test", "{% if m.nope.deeper is defined %}x{% endif %}", {"m": {"a": 1}}),
    ("undefined_item", "{{ nope[0] }}", {}),
    ("undefined_method", "{{ m.nope.startswith('a') }}", {"m": {"a": 1}}),
    ("undefined_slice", "{{ nope[1:] }}", {}),
]


def plain(msgs):
    return [{k: v for k, v in m.items() if v is not None} for m in msgs]


def PUBLIC_CASES(llama4, smolvlm):
    img_q = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is in the picture?"}]}]
    return [
        (llama4, [{"role": "user", "content": "Hello"}], None, True, {}),
        (llama4, [{"role": "system", "content": "  Be brief.  "}, {"role": "user", "content": "Hi"},
                  {"role": "assistant", "content": "Hello!"}] + img_q, None, True, {}),
        (llama4, [{"role": "system", "content": [{"type": "text", "text": "Terse. "}]}, {"role": "user", "content": " Total of inv-7? "}],
         TOOLS, True, {}),
        (llama4, [{"role": "system", "content": "Use tools."}, {"role": "user", "content": "Total of inv-7?"},
                  {"role": "assistant", "content": "", "tool_calls": [
                      {"type": "function", "function": {"name": "get_total", "arguments": {"id": "inv-7"}}}]},
                  {"role": "tool", "content": {"total": 123.45, "currency": "EUR"}}, {"role": "tool", "content": "done"}],
         TOOLS, False, {"tools_in_user_message": False}),
        (llama4, [{"role": "system", "content": "Only a system turn."}], TOOLS, True, {}),
        (smolvlm, [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe."}]},
                   {"role": "assistant", "content": [{"type": "text", "text": "A cat."}]},
                   {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": " And this?"}]}], None, True, {}),
    ]


def main():
    out = []
    # 1. Nano V2 through apply_chat_template
    nano_dir = os.path.join(DATA, "tokenizer", "nemotron_tiny")
    tok = PreTrainedTokenizerFast.from_pretrained(nano_dir)
    tmpl = open(os.path.join(HERE, "nano_v2_chat_template.jinja")).read()
    assert tok.chat_template == tmpl, "nemotron_tiny carries the Nano V2 template"
    for i, msgs in enumerate(NANO_MSGS):
        for gen in (True, False):
            ctx = {"messages": plain(msgs), "tools": None, "documents": None, "add_generation_prompt": gen,
                   **tok.special_tokens_map}
            text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
            out.append({"name": f"nano_v2_{i}_{int(gen)}", "template": "file:tests/data/tokenizer/nemotron_tiny/tokenizer_config.json",
                        "context": ctx, "expected": text})
    # 2. Qwen3 (shared, read in place)
    qdir = os.path.join(SHARED, "tokenizers", "qwen3")
    qtok = AutoTokenizer.from_pretrained(qdir)
    for i, (c, kw) in enumerate(QWEN_CASES):
        gen = kw.pop("add_generation_prompt", True)
        text = qtok.apply_chat_template(c["messages"], tools=c.get("tools"), tokenize=False, add_generation_prompt=gen, **kw)
        ctx = {"messages": plain(c["messages"]), "tools": c.get("tools"), "documents": None, "add_generation_prompt": gen,
               **qtok.special_tokens_map, **kw}
        out.append({"name": f"qwen3_{i}", "template": "shared:tokenizers/qwen3/tokenizer_config.json", "context": ctx,
                    "expected": text})
    # 3. feature templates in transformers' jinja environment
    for name, src, ctx in FEATURES:
        t = _compile_jinja_template(src)
        try:
            text = t.render(**ctx)
            out.append({"name": f"feature_{name}", "template": src, "context": ctx, "expected": text})
        except Exception as e:  # jinja2 raised: nanovl must fail too, with the message
            out.append({"name": f"feature_{name}", "template": src, "context": ctx, "error": str(e)})
    # 4. public templates shipped inside transformers
    from transformers.models.llama4.processing_llama4 import chat_template as llama4
    from transformers.models.smolvlm.processing_smolvlm import DEFAULT_CHAT_TEMPLATE as smolvlm
    l4_sp = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot|>", "date_string": "26 Jul 2024"}
    for i, (src, msgs, tools, gen, extra) in enumerate(PUBLIC_CASES(llama4, smolvlm)):
        ctx = {"messages": plain(msgs), "tools": tools, "documents": None, "add_generation_prompt": gen,
               **(l4_sp if src is llama4 else {}), **extra}
        name = f"{'llama4' if src is llama4 else 'smolvlm'}_{i}"
        try:
            out.append({"name": name, "template": src, "context": ctx, "expected": _compile_jinja_template(src).render(**ctx)})
        except Exception as e:
            out.append({"name": name, "template": src, "context": ctx, "error": str(e)})
    os.makedirs(os.path.join(DATA, "jinja"), exist_ok=True)
    with open(os.path.join(DATA, "jinja", "goldens.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
    print(len(out), "cases")


if __name__ == "__main__":
    main()
